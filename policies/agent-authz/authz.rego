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
package chaperone.authz

import data.chaperone.elevation
import data.chaperone.guards.payment
import data.chaperone.guards.protected_branch
import data.chaperone.lib.grants
import data.chaperone.lib.permissions

default decision := {"allowed": false, "reason": "no_permission", "rule": "default_deny"}

decision := registry_denial if {
	registry_denial
} else := allowed if {
	allowed
} else := held if {
	held
} else := near_miss if {
	near_miss
}

# What the library's functions see of the request.
request := {
	"agent": input.agent.id,
	"method": input.attributes.request.http.method,
	"segments": input.parsed_path,
	"query": object.get(input, "parsed_query", {}),
	"purpose": object.get(input.agent, "purpose", null),
	"now_ns": object.get(input, "now_ns", 0),
}

# Verified grants; none when chaperone passes none.
presented := input.grants if {
	is_array(input.grants)
} else := []

agent := data.chaperone.registry.agents[input.agent.id]

deny(reason, rule) := {"allowed": false, "reason": reason, "rule": rule}

# 1. The registry.

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
	# As chaperone: a request without a purpose passes, one with an unlisted purpose not.
	is_string(request.purpose)
	is_array(agent.purposes)
	not request.purpose in agent.purposes
}

owned if {
	is_string(agent.owner)
	agent.owner != ""
}

# 2. What covers the request, best first.

standing := [p | some p in agent.permissions; permissions.covers(p, request)]

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
# To add a guard: a package with hold(request, presented), and one line here.
hold_set contains h if h := protected_branch.hold(request, presented)

hold_set contains h if h := payment.hold(request, presented)

holds := [h | some h in hold_set]

lifted(h) if count(h.grants) > 0

lifted(h) if {
	h.break_glass
	count(active_break_glass) > 0
}

unlifted := [h | some h in holds; not lifted(h)]

hold_grants := [jti | some h in holds; some jti in h.grants]

allowed := finish(basis) if {
	coverage
	count(unlifted) == 0
	basis := allow_basis
}

allow_basis := coverage if {
	count(holds) == 0
} else := {
	"reason": "break_glass",
	"rule": sprintf("break_glass:%s", [active_break_glass[0]]),
	"grants": array.concat(coverage.grants, hold_grants),
} if {
	some h in holds
	count(h.grants) == 0
} else := {
	"reason": holds[0].approved,
	"rule": holds[0].rule,
	"grants": array.concat(coverage.grants, hold_grants),
}

finish(basis) := {"allowed": true, "reason": basis.reason, "rule": basis.rule} if {
	count(basis.grants) == 0
}

finish(basis) := {"allowed": true, "reason": basis.reason, "rule": basis.rule, "grants_used": sort({jti | some jti in basis.grants})} if {
	count(basis.grants) > 0
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

purpose_misses := [p |
	some p in agent.permissions
	permissions.targets(p, request)
	not permissions.serves(p, request.purpose)
]

near_miss := break_glass_problem if {
	break_glass_problem
} else := maintenance_problem if {
	maintenance_problem
} else := deny("purpose_not_permitted", sprintf("permission:%v", [purpose_misses[0].name])) if {
	count(purpose_misses) > 0
} else := deny("no_matching_grant", "grant.unmatched") if {
	count(presented) > 0
}
