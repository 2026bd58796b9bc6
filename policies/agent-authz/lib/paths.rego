# Path templates, matched segment by segment against input.parsed_path (percent-decoded,
# empty segments dropped). No glob, no regex: a split and a few comparisons.
#
#   /tickets/{id}/comments    literal segments match exactly (case-sensitive);
#                             {id} matches exactly one segment
#   /files/{path...}          a last {name...} matches one or more remaining segments
#   /                         the root, no segment at all
#
# A path with a "." or ".." segment matches no template: an upstream may resolve them.
# Templates are canonical: a leading "/", no empty segment, no trailing "/" (except the
# root), placeholders named with letters, digits, "_" or "-", names not repeated, literal
# segments without braces and other than "." or "..". valid() checks exactly that, and
# chaperone.lint runs it on every template in the data (chaperone test fails otherwise).
# matches() runs per request and per permission, so it trusts the template to be
# canonical and only compares: a part starting with "{" is taken for a placeholder.
# Empty and trailing segments still never match; a repeated name is not checked there,
# only params() refuses it. The comparison is chaperone's builtin chaperone.path_matches
# (README, "Rego builtins"): written in Rego, matching the agent's permissions took about a
# quarter of an allowed request's time in the plugin.
package chaperone.lib.paths

matches(template, segments) if chaperone.path_matches(template, segments)

# A template with no placeholder names one path exactly.
exact(template) if {
	is_string(template)
	not contains(template, "{")
}

# Segments of a canonical template: "/tickets/{id}" gives ["tickets", "{id}"].
parts(template) := [] if {
	template == "/"
} else := array.slice(ps, 1, count(ps)) if {
	is_string(template)
	ps := split(template, "/")
	ps[0] == ""
}

# "{id}" gives "id".
placeholder(part) := name if {
	startswith(part, "{")
	endswith(part, "}")
	not endswith(part, "...}")
	name := substring(part, 1, count(part) - 2)
	identifier(name)
}

# "{path...}" gives "path".
rest_placeholder(part) := name if {
	startswith(part, "{")
	endswith(part, "...}")
	name := substring(part, 1, count(part) - 5)
	identifier(name)
}

identifier(name) if {
	name != ""
	trim(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-") == ""
}

literal(part) if {
	part != ""
	not contains(part, "{")
	not contains(part, "}")
	not part in {".", ".."}
}

# Canonical, as described at the top.
valid(template) if {
	ps := parts(template)
	unique_names(ps)
	last := count(ps) - 1
	every i, part in ps {
		well_formed_part(part, i, last)
	}
}

well_formed_part(part, _, _) if literal(part)

well_formed_part(part, _, _) if placeholder(part)

well_formed_part(part, i, last) if {
	i == last
	rest_placeholder(part)
}

unique_names(ps) if {
	named := named_parts(ps)
	count(named) == count({name | some [_, name, _] in named})
}

# [index, name, rest] of each placeholder among the parts, rest true for {name...}. Only a
# part starting with "{" ("{" <= part < "|") can be one: the others cost no call.
named_parts(ps) := [[i, name, rest] |
	some i, part in ps
	part >= "{"
	part < "|"
	[name, rest] := placeholder_name(part)
]

# placeholder and rest_placeholder at once, for a part starting with "{": "{id}" gives
# ["id", false], "{path...}" gives ["path", true].
placeholder_name(part) := [name, rest] if {
	inner := trim_suffix(part, "}")
	inner != part
	core := trim_suffix(inner, "...")
	rest := core != inner
	name := trim_prefix(core, "{")
	name != ""
	trim(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-") == ""
}

# The values a matching path gives the placeholders: {"id": "42"}; a {name...} gets the
# remaining segments joined with "/". Undefined when the path does not match, or when the
# template repeats a name.
params(template, segments) := {name: bound(segments, i, rest) | some [i, name, rest] in named} if {
	matches(template, segments)
	named := named_parts(parts(template))
	count(named) == count({name | some [_, name, _] in named})
}

bound(segments, i, false) := segments[i]

bound(segments, i, true) := concat("/", array.slice(segments, i, count(segments)))
