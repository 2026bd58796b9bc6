# The decision, at data.chaperone.authz.decision. Deny by default.
#
# Every result is {"allowed": bool, "reason": "...", "rule": "..."}, plus
# "grants_used": [jti, ...] when the decision relied on grants. Reasons and rules are
# listed in policies/README.md; they are stable, dashboards and alerts key on them.
#
# In order:
#   1. the registry (chaperone checks it too, but lets flagged unregistered agents through);
#   2. allow when something covers the request (a standing permission, an agent_http
#      grant, an active break-glass entry, an active maintenance window) and no guard
#      holds it, or every hold is lifted;
#   3. deny with the first hold nothing lifted;
#   4. deny with the nearest miss (a defective break-glass or maintenance entry, a
#      permission for another purpose, grants that did not match);
#   5. otherwise no_permission.
#
# complete_decision takes these steps. The decision runs on every request, and regorus's
# interpreter charges for every rule, function call, builtin call and data lookup, so
# decision first settles the common cases in one rule body: a standing permission that no
# guard holds back, and a request nothing so much as aims at. It answers only when its
# answer is the one of complete_decision (authz_test, and core/tests/shipped_library.rs
# over some 13,000 requests, check both agree); any other request takes the steps.
package chaperone.authz

import data.chaperone.elevation
import data.chaperone.guards.payment
import data.chaperone.guards.protected_branch
import data.chaperone.lib.grants
import data.chaperone.lib.paths
import data.chaperone.lib.permissions

# No default: complete_decision has one, so decision is always defined (and a default
# would be processed on every request).
decision := settled(aimed) if {
	# The registry lets the agent act, as registry_ok: a non-empty owner not offboarded,
	# status absent or active, a purpose among the entry's purposes when it lists some
	# (a purpose neither a string nor null is left to the full steps).
	registry := data.chaperone.registry
	entry := registry.agents[input.agent.id]
	entry.owner != ""
	not entry.status != "active"
	not registry.owners[entry.owner].status == "offboarded"
	purpose := input.agent.purpose
	not [purpose != null, purpose in entry.purposes] == [true, false]

	# A path of one or more segments (the root takes the full steps), and the agent's
	# permissions for its method and path, whatever their purposes, in data order: aimed
	# below, from the builtin behind paths.matches (nothing matches a "." or ".." segment).
	segments := input.parsed_path
	segments[0]
	aimed := chaperone.entries_matching(entry.permissions, input.attributes.request.http.method, segments)
} else := complete_decision

# The common cases, given the permissions aimed at the request (the bodies exclude each
# other; the denial, the cheapest to reach, comes first). Undefined otherwise.
#
# The first two answers do not depend on the clock: they read the registry, the request and
# whether any break-glass or maintenance entry names the request at all, never whether one
# is active. So they carry cache_seconds, and chaperone gives the same answer to the same
# request (by everything the bundle reads of the input, the clock aside) for that long
# without evaluating. Data reaches a gateway only in a new configuration, which forgets
# every remembered answer, so the figure bounds memory, not staleness.
settled(aimed) := {"allowed": false, "reason": "no_permission", "rule": "default_deny", "cache_seconds": remembered_seconds} if {
	# Nothing aims at the request: no permission, no grant, no break-glass or maintenance
	# entry of the agent for this method and path.
	aimed == []
	input.grants == []
	agent_id := input.agent.id
	method := input.attributes.request.http.method
	segments := input.parsed_path
	[id |
		some id, entry in data.chaperone.break_glass
		entry.agent == agent_id
		some q in entry.permissions
		method in q.methods
		paths.matches(q.path, segments)
	] == []
	[id |
		some id, entry in data.chaperone.maintenance
		agent_id in entry.agents
		some q in entry.permissions
		method in q.methods
		paths.matches(q.path, segments)
	] == []
} else := {"allowed": true, "reason": "permitted", "rule": sprintf("permission:%v", [p.name]), "cache_seconds": remembered_seconds} if {
	# The first permission aimed at the request serves its purpose (permissions.serves)
	# and no guard watches the request: that permission is the answer.
	p := aimed[0]
	not [p.purposes != [], input.agent.purpose in p.purposes] == [true, false]
	[input.parsed_query, input.now_ns] # a complete request (the full steps need every key)

	# The endpoints of every guard (a new guard adds its own here).
	method := input.attributes.request.http.method
	segments := input.parsed_path
	chaperone.entries_matching(data.chaperone.protected_branches.endpoints, method, segments) == []
	chaperone.entries_matching(data.chaperone.payments.endpoints, method, segments) == []
} else := {"allowed": true, "reason": "permitted", "rule": sprintf("permission:%v", [p.name])} if {
	# A guard watches the request but holds nothing back (an ordinary branch, a payment
	# within the threshold): the same answer.
	p := aimed[0]
	not [p.purposes != [], input.agent.purpose in p.purposes] == [true, false]
	[input.parsed_query, input.now_ns]
	count(hold_set) == 0
}

remembered_seconds := 60

# Steps 1 to 5, for every request.
default complete_decision := {"allowed": false, "reason": "no_permission", "rule": "default_deny"}

complete_decision := registry_denial if {
	not registry_ok
	registry_denial
} else := allowed if {
	allowed
} else := held if {
	held
} else := near_miss if {
	near_miss
}

# What the library's functions see of the request. chaperone always sends these keys.
request := {
	"agent": input.agent.id,
	"method": input.attributes.request.http.method,
	"segments": input.parsed_path,
	"query": input.parsed_query,
	"purpose": input.agent.purpose,
	"now_ns": input.now_ns,
}

# Verified grants; none when chaperone passes none.
presented := input.grants if {
	is_array(input.grants)
} else := []

agent := data.chaperone.registry.agents[input.agent.id]

deny(reason, rule) := {"allowed": false, "reason": reason, "rule": rule}

# 1. The registry. aimed (below) is defined exactly when the registry lets the agent act;
# registry_denial says why it does not.

registry_ok if aimed

# As chaperone: a request without a purpose passes, one with an unlisted purpose not.
purpose_unlisted if {
	is_string(input.agent.purpose)
	not input.agent.purpose in object.get(agent, "purposes", [input.agent.purpose])
}

registry_denial := deny("agent_unregistered", "registry.agent") if {
	not agent
} else := deny("agent_suspended", "registry.status") if {
	agent.status == "suspended"
} else := deny("agent_decommissioned", "registry.status") if {
	agent.status == "decommissioned"
} else := deny("agent_inactive", "registry.status") if {
	object.get(agent, "status", "active") != "active"
} else := deny("owner_missing", "registry.owner") if {
	not owned
} else := deny("owner_offboarded", "registry.owner") if {
	data.chaperone.registry.owners[agent.owner].status == "offboarded"
} else := deny("purpose_not_allowed", "registry.purposes") if {
	purpose_unlisted
}

owned if {
	is_string(agent.owner)
	agent.owner != ""
}

# 2. What covers the request, best first.

# The agent's permissions whose methods and path match the request, whatever their
# purposes, in data order. Defined only when the registry lets the agent act (the same
# checks as chaperone's, read once: registry_denial explains a failure); empty when the
# request lacks one of the keys chaperone always sends.
aimed := [p |
	[input.agent.id, input.parsed_query, input.agent.purpose, input.now_ns]
	method := input.attributes.request.http.method
	segments := input.parsed_path
	some p in entry.permissions
	method in p.methods
	paths.matches(p.path, segments)
] if {
	registry := data.chaperone.registry
	entry := registry.agents[input.agent.id]
	entry.owner != ""
	object.get(entry, "status", "active") == "active"
	not registry.owners[entry.owner].status == "offboarded"

	# not purpose_unlisted, without a second lookup of the entry
	not [is_string(input.agent.purpose), input.agent.purpose in object.get(entry, "purposes", [input.agent.purpose])] == [true, false]
}

standing := [p | some p in aimed; permissions.serves(p, request.purpose)]

http_grants := grants.covering(presented, request)

break_glass := elevation.break_glass(request)

active_break_glass := [c.id | some c in break_glass; c.state == "active"]

maintenance := elevation.maintenance(request)

active_maintenance := [c.id | some c in maintenance; c.state == "active"]

coverage := {"reason": "permitted", "rule": sprintf("permission:%v", [standing[0].name]), "grants": []} if {
	count(standing) > 0
} else := {"reason": "granted", "rule": "grant.agent_http", "grants": [http_grants[0]]} if {
	count(http_grants) > 0
} else := {"reason": "break_glass", "rule": sprintf("break_glass:%s", [active_break_glass[0]]), "grants": []} if {
	count(active_break_glass) > 0
} else := {"reason": "maintenance_window", "rule": sprintf("maintenance:%s", [active_maintenance[0]]), "grants": []} if {
	count(active_maintenance) > 0
}

# Guards that hold this request back. A hold is
#   {"rule", "denied": reason, "approved": reason, "grants": [jti] lifting it, "break_glass": bool}
# To add a guard: a package with hold(request, presented), one line here, and a check of
# its endpoints in settled above (a request no guard endpoint matches skips the guards).
hold_set contains h if h := protected_branch.hold(request, presented)

hold_set contains h if h := payment.hold(request, presented)

lifted(h) if h.grants != []

lifted(h) if {
	h.break_glass
	active_break_glass != []
}

unlifted := [h | some h in hold_set; not lifted(h)]

# Covered, nothing held (the common case is decided above, before this).
allowed := {"allowed": true, "reason": c.reason, "rule": c.rule} if {
	c := coverage
	registry_ok
	count(hold_set) == 0
	c.grants == []
} else := {"allowed": true, "reason": c.reason, "rule": c.rule, "grants_used": c.grants} if {
	c := coverage
	registry_ok
	count(hold_set) == 0
} else := finish(lifted_basis) if {
	coverage
	registry_ok
	unlifted == []
}

# Every hold is lifted: by break-glass when one of them had no grant, else by grants.
lifted_basis := {
	"reason": "break_glass",
	"rule": sprintf("break_glass:%s", [active_break_glass[0]]),
	"grants": array.concat(coverage.grants, hold_grants),
} if {
	some h in hold_set
	h.grants == []
} else := {
	"reason": first_hold.approved,
	"rule": first_hold.rule,
	"grants": array.concat(coverage.grants, hold_grants),
}

first_hold := [h | some h in hold_set][0]

hold_grants := [jti | some h in hold_set; some jti in h.grants]

finish(basis) := {"allowed": true, "reason": basis.reason, "rule": basis.rule} if {
	basis.grants == []
}

finish(basis) := {"allowed": true, "reason": basis.reason, "rule": basis.rule, "grants_used": sort({jti | some jti in basis.grants})} if {
	basis.grants != []
}

# 3. Covered but held. When break-glass could have lifted the hold, its defect is the answer.

held := break_glass_problem if {
	coverage
	h := unlifted[0]
	h.break_glass
	break_glass_problem
} else := deny(h.denied, h.rule) if {
	coverage
	h := unlifted[0]
}

# 4. The nearest miss.

# The first defective candidate (in id order) speaks for all.
break_glass_problem := deny(concat("_", ["break_glass", c.state]), sprintf("break_glass:%s", [c.id])) if {
	c := [x | some x in break_glass; x.state != "active"][0]
}

maintenance_problem := deny(concat("_", ["maintenance", c.state]), sprintf("maintenance:%s", [c.id])) if {
	c := [x | some x in maintenance; x.state != "active"][0]
}

purpose_misses := [p | some p in aimed; not permissions.serves(p, request.purpose)]

near_miss := break_glass_problem if {
	break_glass_problem
} else := maintenance_problem if {
	maintenance_problem
} else := deny("purpose_not_permitted", sprintf("permission:%v", [purpose_misses[0].name])) if {
	count(purpose_misses) > 0
} else := deny("no_matching_grant", "grant.unmatched") if {
	count(presented) > 0
}
