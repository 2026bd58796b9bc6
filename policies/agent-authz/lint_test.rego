# Checks of the policy data, for CI: data.chaperone.lint.problems is a set of messages,
# empty when the data is well-formed. A defect found here would otherwise show up only as
# a request denied (or a permission that silently matches nothing). The tests at the end
# run it on the shipped data.
#
# The decision never reads this package, so it lives in a test file: `chaperone test` loads
# it, `chaperone bundle` leaves it out, and gateways never carry it (every module of the
# bundle costs something on every request).
package chaperone.lint

import data.chaperone.elevation
import data.chaperone.lib.decimal
import data.chaperone.lib.paths
import data.chaperone.lib.permissions
import data.chaperone.lib.windows

agents := data.chaperone.registry.agents

problems contains "registry.agents: missing or not an object" if not is_object(agents)

problems contains sprintf("registry.agents.%s.owner: needs a non-empty string", [id]) if {
	some id, agent in agents
	not non_empty(object.get(agent, "owner", null))
}

problems contains sprintf("registry.agents.%s.status: %v is not active, suspended or decommissioned", [id, status]) if {
	some id, agent in agents
	status := object.get(agent, "status", "active")
	not status in {"active", "suspended", "decommissioned"}
}

problems contains sprintf("registry.agents.%s.purposes: needs a list of strings", [id]) if {
	some id, agent in agents
	not strings(object.get(agent, "purposes", []))
}

problems contains sprintf("registry.agents.%s.permissions: needs a list", [id]) if {
	some id, agent in agents
	not is_array(object.get(agent, "permissions", []))
}

problems contains sprintf("registry.agents.%s.permissions[%d]: %s", [id, i, why]) if {
	some id, agent in agents
	some i, permission in object.get(agent, "permissions", [])
	some why in permission_problems(permission)
}

problems contains sprintf("registry.agents.%s.permissions: name %v used twice", [id, name]) if {
	some id, agent in agents
	ps := object.get(agent, "permissions", [])
	is_array(ps)
	some i, j
	i < j
	name := ps[i].name
	ps[j].name == name
}

problems contains sprintf("registry.owners.%s.status: %v is not active or offboarded", [owner, status]) if {
	some owner, entry in data.chaperone.registry.owners
	status := object.get(entry, "status", "active")
	not status in {"active", "offboarded"}
}

problems contains sprintf("approvers.%s.kind: %v is not human or service", [who, kind]) if {
	some who, entry in data.chaperone.approvers
	kind := object.get(entry, "kind", null)
	not kind in {"human", "service"}
}

problems contains sprintf("settings.%s: needs a positive number of seconds", [key]) if {
	some key in ["break_glass_max_seconds", "maintenance_max_seconds"]
	value := data.chaperone.settings[key]
	not positive(value)
}

# Protected branches.

problems contains sprintf("protected_branches.endpoints[%d]: %s", [i, why]) if {
	some i, endpoint in data.chaperone.protected_branches.endpoints
	some why in endpoint_problems(endpoint)
}

problems contains sprintf("protected_branches.endpoints[%d].path: needs a {branch} placeholder", [i]) if {
	some i, endpoint in data.chaperone.protected_branches.endpoints
	paths.valid(endpoint.path)
	not "branch" in {name | some part in paths.parts(endpoint.path); name := paths.placeholder(part)}
}

problems contains sprintf("protected_branches.%s: needs a list of strings", [key]) if {
	is_object(data.chaperone.protected_branches)
	some key in ["names", "prefixes"]
	not strings(object.get(data.chaperone.protected_branches, key, []))
}

# Payments.

problems contains sprintf("payments.endpoints[%d]: %s", [i, why]) if {
	some i, endpoint in data.chaperone.payments.endpoints
	some why in endpoint_problems(endpoint)
}

problems contains sprintf("payments.thresholds.%s.%s: %v is not a currency code with a decimal amount", [agent, currency, amount]) if {
	some agent, limits in data.chaperone.payments.thresholds
	some currency, amount in limits
	not threshold_ok(currency, amount)
}

problems contains sprintf("payments.thresholds.%s: not a registered agent", [agent]) if {
	some agent, _ in data.chaperone.payments.thresholds
	not agents[agent]
}

# Break-glass and maintenance windows.

problems contains sprintf("break_glass.%s.agent: %v is not a registered agent", [id, entry.agent]) if {
	some id, entry in data.chaperone.break_glass
	not agents[entry.agent]
}

problems contains sprintf("break_glass.%s.%s: needs a non-empty string", [id, key]) if {
	some id, entry in data.chaperone.break_glass
	some key in ["reason", "approver"]
	not text(object.get(entry, key, null))
}

problems contains sprintf("break_glass.%s: %s", [id, why]) if {
	some id, entry in data.chaperone.break_glass
	some why in window_problems(entry, elevation.break_glass_max_seconds)
}

problems contains sprintf("break_glass.%s.permissions[%d]: %s", [id, i, why]) if {
	some id, entry in data.chaperone.break_glass
	some i, permission in entry.permissions
	some why in permission_problems(permission)
}

problems contains sprintf("maintenance.%s.agents: %v is not a registered agent", [id, agent]) if {
	some id, entry in data.chaperone.maintenance
	some agent in entry.agents
	not agents[agent]
}

problems contains sprintf("maintenance.%s: %s", [id, why]) if {
	some id, entry in data.chaperone.maintenance
	some why in window_problems(entry, elevation.maintenance_max_seconds)
}

problems contains sprintf("maintenance.%s.permissions[%d]: %s", [id, i, why]) if {
	some id, entry in data.chaperone.maintenance
	some i, permission in entry.permissions
	some why in permission_problems(permission)
}

# data.chaperone[kind] would make every package under chaperone a dependency: spelt out.
problems contains sprintf("break_glass.%s: needs a non-empty list of permissions", [id]) if {
	some id, entry in data.chaperone.break_glass
	not non_empty_list(object.get(entry, "permissions", null))
}

problems contains sprintf("maintenance.%s: needs a non-empty list of permissions", [id]) if {
	some id, entry in data.chaperone.maintenance
	not non_empty_list(object.get(entry, "permissions", null))
}

problems contains sprintf("maintenance.%s.agents: needs a non-empty list", [id]) if {
	some id, entry in data.chaperone.maintenance
	not non_empty_list(object.get(entry, "agents", null))
}

# Helpers.

permission_problems(p) := {"not an object"} if not is_object(p)

permission_problems(p) := {message | some key, message in permission_messages; permission_defect(key, p)} if {
	is_object(p)
}

permission_messages := {
	"name": "name: needs a non-empty string",
	"methods": "methods: needs a non-empty list of upper-case methods",
	"path": "path: not a valid template",
	"purposes": "purposes: needs a list of strings",
}

permission_defect("name", p) if not non_empty(object.get(p, "name", null))

permission_defect("methods", p) if not methods_ok(object.get(p, "methods", null))

permission_defect("path", p) if not paths.valid(object.get(p, "path", null))

permission_defect("purposes", p) if not strings(object.get(p, "purposes", []))

endpoint_problems(e) := {"not an object"} if not is_object(e)

endpoint_problems(e) := {message | some key, message in permission_messages; key in {"methods", "path"}; permission_defect(key, e)} if {
	is_object(e)
}

window_problems(entry, _) := {"not an object"} if not is_object(entry)

window_problems(entry, max_seconds) := {why |
	some why in ["start, end: need RFC 3339 timestamps, start before end", sprintf("window longer than %v seconds", [max_seconds])]
	window_defect(why, entry, max_seconds)
} if {
	is_object(entry)
}

window_defect(why, entry, _) if {
	startswith(why, "start")
	not windows.span(entry)
}

window_defect(why, entry, max_seconds) if {
	startswith(why, "window")
	windows.longer_than(windows.span(entry), max_seconds)
}

methods_ok(methods) if {
	non_empty_list(methods)
	every method in methods {
		non_empty(method)
		method == upper(method)
	}
}

threshold_ok(currency, amount) if {
	count(currency) == 3
	trim(currency, "ABCDEFGHIJKLMNOPQRSTUVWXYZ") == ""
	decimal.thousandths(amount)
}

non_empty(value) if {
	is_string(value)
	value != ""
}

text(value) if {
	is_string(value)
	trim_space(value) != ""
}

strings(values) if {
	is_array(values)
	every value in values {
		is_string(value)
	}
}

non_empty_list(values) if {
	is_array(values)
	count(values) > 0
}

positive(value) if {
	is_number(value)
	value > 0
}

# Tests.

test_shipped_data_has_no_problems if {
	count(problems) == 0
}

# One defect of each kind, and the message naming it.
bad_registry := {
	"agents": {
		"a": {"owner": "", "status": "paused", "purposes": "support", "permissions": [
			{"name": "p", "methods": ["get"], "path": "tickets/{id}"},
			{"name": "p", "methods": ["GET"], "path": "/x/{rest...}/y"},
			"read everything",
		]},
		"b": {"owner": "olga@example.com", "permissions": {}},
	},
	"owners": {"zed@example.com": {"status": "gone"}},
}

test_registry_problems if {
	ps := problems with data.chaperone.registry as bad_registry
	ps == {
		"registry.agents.a.owner: needs a non-empty string",
		"registry.agents.a.status: paused is not active, suspended or decommissioned",
		"registry.agents.a.purposes: needs a list of strings",
		"registry.agents.a.permissions[0]: methods: needs a non-empty list of upper-case methods",
		"registry.agents.a.permissions[0]: path: not a valid template",
		"registry.agents.a.permissions[1]: path: not a valid template",
		"registry.agents.a.permissions[2]: not an object",
		"registry.agents.a.permissions: name p used twice",
		"registry.agents.b.permissions: needs a list",
		"registry.owners.zed@example.com.status: gone is not active or offboarded",

		# The shipped data refers to agents this registry lacks.
		"maintenance.search-reindex-2026-12.agents: support-bot is not a registered agent",
		"payments.thresholds.finance-agent: not a registered agent",
	}
}

test_window_problems if {
	entries := {
		"no-reason": {"agent": "support-bot", "reason": " ", "approver": "erin@example.com", "start": "2026-11-24T10:00:00Z", "end": "2026-11-24T10:10:00Z", "permissions": [{"name": "x", "methods": ["GET"], "path": "/x"}]},
		"too-long": {"agent": "ghost", "reason": "r", "approver": "erin@example.com", "start": "2026-11-24T10:00:00Z", "end": "2026-11-24T12:00:00Z", "permissions": []},
		"bad-date": {"agent": "support-bot", "reason": "r", "approver": "erin@example.com", "start": "2026-11-31T10:00:00Z", "end": "2026-12-01T10:00:00Z", "permissions": [{"name": "x", "methods": ["GET"], "path": "/x"}]},
	}
	ps := problems with data.chaperone.break_glass as entries
	ps == {
		"break_glass.no-reason.reason: needs a non-empty string",
		"break_glass.too-long.agent: ghost is not a registered agent",
		"break_glass.too-long: window longer than 1800 seconds",
		"break_glass.too-long: needs a non-empty list of permissions",
		"break_glass.bad-date: start, end: need RFC 3339 timestamps, start before end",
	}
}

test_maintenance_problems if {
	entries := {"m": {"agents": ["ghost"], "start": "2026-11-24T10:00:00Z", "end": "2026-11-25T10:00:00Z", "permissions": [{"name": "x", "methods": ["GET"], "path": "/x"}]}}
	ps := problems with data.chaperone.maintenance as entries
	ps == {
		"maintenance.m.agents: ghost is not a registered agent",
		"maintenance.m: window longer than 14400 seconds",
	}
}

test_guard_problems if {
	ps := problems
		with data.chaperone.protected_branches as {"endpoints": [{"methods": ["POST"], "path": "/repos/{owner}/{repo}/commits"}], "names": "main"}
		with data.chaperone.payments as {"endpoints": [{"methods": ["POST"], "path": "payments"}], "thresholds": {"finance-agent": {"euro": "1000", "USD": "1,000"}, "ghost": {}}}
		with data.chaperone.approvers as {"erin@example.com": {"kind": "person"}}
	ps == {
		"protected_branches.endpoints[0].path: needs a {branch} placeholder",
		"protected_branches.names: needs a list of strings",
		"payments.endpoints[0]: path: not a valid template",
		"payments.thresholds.finance-agent.euro: 1000 is not a currency code with a decimal amount",
		"payments.thresholds.finance-agent.USD: 1,000 is not a currency code with a decimal amount",
		"payments.thresholds.ghost: not a registered agent",
		"approvers.erin@example.com.kind: person is not human or service",
	}
}

test_settings_problems if {
	ps := problems with data.chaperone.settings as {"break_glass_max_seconds": "30m", "maintenance_max_seconds": 0}
	ps == {
		"settings.break_glass_max_seconds: needs a positive number of seconds",
		"settings.maintenance_max_seconds: needs a positive number of seconds",
	}
}
