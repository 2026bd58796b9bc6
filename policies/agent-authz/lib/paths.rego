# Path templates, matched segment by segment against input.parsed_path (percent-decoded,
# empty segments dropped). No glob: a few string comparisons per permission.
#
#   /tickets/{id}/comments    literal segments match exactly (case-sensitive);
#                             {id} matches exactly one segment
#   /files/{path...}          a last {name...} matches one or more remaining segments
#
# A placeholder never matches "." or "..": an upstream may resolve them. A malformed
# template (no leading "/", a stray brace, {name...} before the end, a repeated name)
# matches nothing.
package chaperone.lib.paths

# Segments of a template; empty ones are dropped, as chaperone drops them from paths.
parts(template) := [part | some part in split(template, "/"); part != ""] if {
	is_string(template)
	startswith(template, "/")
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
	not contains(part, "{")
	not contains(part, "}")
}

# What a placeholder may stand for.
variable(segment) if not segment in {".", ".."}

segment_matches(part, segment) if {
	literal(part)
	part == segment
}

segment_matches(part, segment) if {
	placeholder(part)
	variable(segment)
}

# The template without a trailing {name...}.
matches(template, segments) if {
	ps := parts(template)
	unique_names(ps)
	count(ps) == count(segments)
	every i, part in ps {
		segment_matches(part, segments[i])
	}
}

# The template ending in {name...}: the fixed part, then at least one segment.
matches(template, segments) if {
	ps := parts(template)
	unique_names(ps)
	last := count(ps) - 1
	rest_placeholder(ps[last])
	count(segments) > last
	every i, part in array.slice(ps, 0, last) {
		segment_matches(part, segments[i])
	}
	every segment in array.slice(segments, last, count(segments)) {
		variable(segment)
	}
}

# A template with no placeholder names one path exactly.
exact(template) if {
	ps := parts(template)
	every part in ps {
		literal(part)
	}
}

# Well-formed: every part literal or {name}, a {name...} only last, names unique.
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
	names := [name | some part in ps; name := part_name(part)]
	count(names) == count({name | some name in names})
}

part_name(part) := placeholder(part)

part_name(part) := rest_placeholder(part)

# The values a matching path gives the placeholders: {"id": "42"}; a {name...} gets the
# remaining segments joined with "/". Undefined when the path does not match.
params(template, segments) := {name: value |
	some i, part in parts(template)
	[name, value] := binding(part, i, segments)
} if {
	matches(template, segments)
}

binding(part, i, segments) := [name, segments[i]] if name := placeholder(part)

binding(part, i, segments) := [name, concat("/", array.slice(segments, i, count(segments)))] if {
	name := rest_placeholder(part)
}
