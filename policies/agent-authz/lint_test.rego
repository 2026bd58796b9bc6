package chaperone.lint_test

import data.chaperone.lint

test_shipped_data_has_no_problems if {
	count(lint.problems) == 0
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
	ps := lint.problems with data.chaperone.registry as bad_registry
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
	ps := lint.problems with data.chaperone.break_glass as entries
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
	ps := lint.problems with data.chaperone.maintenance as entries
	ps == {
		"maintenance.m.agents: ghost is not a registered agent",
		"maintenance.m: window longer than 14400 seconds",
	}
}

test_guard_problems if {
	ps := lint.problems
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
	ps := lint.problems with data.chaperone.settings as {"break_glass_max_seconds": "30m", "maintenance_max_seconds": 0}
	ps == {
		"settings.break_glass_max_seconds: needs a positive number of seconds",
		"settings.maintenance_max_seconds: needs a positive number of seconds",
	}
}
