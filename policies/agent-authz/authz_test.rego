package chaperone.authz_test

import data.chaperone.authz

# 2026-11-24T10:00:00Z
now := 1795514400000000000

# A request as chaperone presents it: path without query, no purpose, no grants.
req(agent, method, segments) := {
	"attributes": {"request": {"http": {"method": method, "path": concat("/", array.concat([""], segments)), "host": "api.test", "scheme": "https", "headers": {}}}},
	"parsed_path": segments,
	"parsed_query": {},
	"agent": {"id": agent, "issuer": "https://idp.test", "owner": null, "purpose": null, "task": null, "registered": true, "claims": {}},
	"grants": [],
	"now_ns": now,
}

with_purpose(i, purpose) := object.union(i, {"agent": object.union(i.agent, {"purpose": purpose})})

with_grants(i, grants) := object.union(i, {"grants": grants})

grant(jti, details) := {
	"jti": jti, "issuer": "https://grants.test", "approver": "erin@example.com", "task": null, "reason": "test",
	"authorization_details": details,
	"not_before_ns": now - 60000000000, "expires_at_ns": now + 240000000000, "remaining_seconds": 240,
}

registry := {
	"agents": {
		"bot": {"owner": "olga@example.com", "purposes": ["support", "triage"], "permissions": [
			{"name": "tickets.read", "methods": ["GET"], "path": "/tickets/{id}"},
			{"name": "tickets.any", "methods": ["GET", "HEAD"], "path": "/tickets/{rest...}"},
			{"name": "tickets.close", "methods": ["POST"], "path": "/tickets/{id}/close", "purposes": ["support"]},
		]},
		"paused-bot": {"owner": "olga@example.com", "status": "suspended", "permissions": []},
		"old-bot": {"owner": "olga@example.com", "status": "decommissioned", "permissions": []},
		"odd-bot": {"owner": "olga@example.com", "status": "sleeping", "permissions": []},
		"orphan-bot": {"owner": "", "permissions": []},
		"bob-bot": {"owner": "bob@example.com", "permissions": [{"name": "all", "methods": ["GET"], "path": "/{rest...}"}]},
	},
	"owners": {"bob@example.com": {"status": "offboarded"}},
}

decide(i) := d if {
	d := authz.decision with input as i with data.chaperone.registry as registry
}

test_standing_permission_allows_and_names_the_permission if {
	decide(req("bot", "GET", ["tickets", "7"])) == {"allowed": true, "reason": "permitted", "rule": "permission:tickets.read", "cache_seconds": 60}
}

test_first_permission_in_data_order_is_named if {
	decide(req("bot", "GET", ["tickets", "7", "history"])).rule == "permission:tickets.any"
	decide(req("bot", "HEAD", ["tickets", "7"])).rule == "permission:tickets.any"
}

test_wrong_method_is_denied if {
	decide(req("bot", "DELETE", ["tickets", "7"])) == {"allowed": false, "reason": "no_permission", "rule": "default_deny", "cache_seconds": 60}
}

test_wrong_path_is_denied if {
	decide(req("bot", "GET", ["users", "7"])) == {"allowed": false, "reason": "no_permission", "rule": "default_deny", "cache_seconds": 60}
	decide(req("bot", "GET", ["tickets"])).reason == "no_permission"
	decide(req("bot", "GET", [])).reason == "no_permission"
}

test_permission_for_another_purpose if {
	close := req("bot", "POST", ["tickets", "7", "close"])
	decide(with_purpose(close, "support")).rule == "permission:tickets.close"
	decide(with_purpose(close, "triage")) == {"allowed": false, "reason": "purpose_not_permitted", "rule": "permission:tickets.close"}
	decide(close).reason == "purpose_not_permitted"
}

test_unregistered_agent if {
	decide(req("shadow", "GET", ["tickets", "7"])) == {"allowed": false, "reason": "agent_unregistered", "rule": "registry.agent"}
}

test_agent_status if {
	decide(req("paused-bot", "GET", ["x"])) == {"allowed": false, "reason": "agent_suspended", "rule": "registry.status"}
	decide(req("old-bot", "GET", ["x"])) == {"allowed": false, "reason": "agent_decommissioned", "rule": "registry.status"}
	decide(req("odd-bot", "GET", ["x"])) == {"allowed": false, "reason": "agent_inactive", "rule": "registry.status"}
}

test_owner if {
	decide(req("orphan-bot", "GET", ["x"])) == {"allowed": false, "reason": "owner_missing", "rule": "registry.owner"}
	decide(req("bob-bot", "GET", ["x"])) == {"allowed": false, "reason": "owner_offboarded", "rule": "registry.owner"}
}

test_registered_purposes if {
	i := req("bot", "GET", ["tickets", "7"])
	decide(with_purpose(i, "marketing")) == {"allowed": false, "reason": "purpose_not_allowed", "rule": "registry.purposes"}
	decide(with_purpose(i, "triage")).allowed

	# No purpose at all passes, as in chaperone's own registry check.
	decide(i).allowed
}

test_agent_http_grant_elevates_the_exact_request if {
	i := with_grants(req("bot", "DELETE", ["tickets", "7"]), [grant("g-1", [{"type": "agent_http", "actions": ["DELETE"], "locations": ["/tickets/7"]}])])
	decide(i) == {"allowed": true, "reason": "granted", "rule": "grant.agent_http", "grants_used": ["g-1"]}
}

test_grant_for_another_location if {
	i := with_grants(req("bot", "DELETE", ["tickets", "7"]), [grant("g-1", [{"type": "agent_http", "actions": ["DELETE"], "locations": ["/tickets/8"]}])])
	decide(i) == {"allowed": false, "reason": "no_matching_grant", "rule": "grant.unmatched"}
}

test_grant_for_another_method if {
	i := with_grants(req("bot", "DELETE", ["tickets", "7"]), [grant("g-1", [{"type": "agent_http", "actions": ["PUT"], "locations": ["/tickets/7"]}])])
	decide(i).reason == "no_matching_grant"
}

test_grant_with_an_unknown_type if {
	i := with_grants(req("bot", "DELETE", ["tickets", "7"]), [grant("g-1", [{"type": "http_access", "actions": ["DELETE"], "locations": ["/tickets/7"]}])])
	decide(i) == {"allowed": false, "reason": "no_matching_grant", "rule": "grant.unmatched"}
}

test_grant_for_another_agent_path_family_still_needs_the_method if {
	i := with_grants(req("bot", "DELETE", ["tickets", "7"]), [grant("g-1", [{"type": "agent_http", "locations": ["/tickets/{id}"]}])])
	decide(i).reason == "no_matching_grant"
}

test_first_covering_grant_is_the_one_used if {
	i := with_grants(req("bot", "DELETE", ["tickets", "7"]), [
		grant("g-2", [{"type": "agent_http", "actions": ["DELETE"], "locations": ["/tickets/{id}"]}]),
		grant("g-1", [{"type": "agent_http", "actions": ["DELETE"], "locations": ["/tickets/7"]}]),
	])
	decide(i).grants_used == ["g-2"]
}

test_grants_are_not_used_when_a_permission_suffices if {
	i := with_grants(req("bot", "GET", ["tickets", "7"]), [grant("g-1", [{"type": "agent_http", "actions": ["GET"], "locations": ["/tickets/7"]}])])
	decide(i) == {"allowed": true, "reason": "permitted", "rule": "permission:tickets.read", "cache_seconds": 60}
}

test_input_without_grants if {
	i := object.remove(req("bot", "GET", ["tickets", "7"]), ["grants"])
	decide(i).rule == "permission:tickets.read"
	decide(object.union(i, {"grants": "none"})).allowed
}

test_input_missing_what_chaperone_always_sends_is_denied if {
	decide(object.remove(req("bot", "GET", ["tickets", "7"]), ["now_ns"])).allowed == false
}

test_every_outcome_has_the_result_shape if {
	inputs := [
		req("bot", "GET", ["tickets", "7"]),
		req("bot", "DELETE", ["tickets", "7"]),
		req("shadow", "GET", []),
		req("paused-bot", "GET", []),
		with_purpose(req("bot", "POST", ["tickets", "7", "close"]), "triage"),
		with_grants(req("bot", "DELETE", ["tickets", "7"]), [grant("g", [{"type": "x"}])]),
	]
	every i in inputs {
		d := decide(i)
		is_boolean(d.allowed)
		is_string(d.reason)
		d.reason != ""
		is_string(d.rule)
		d.rule != ""
		every key, _ in d {
			key in {"allowed", "reason", "rule", "grants_used", "cache_seconds"}
		}
		object.get(d, "cache_seconds", 60) == 60
	}
}

# Cases the quick path of the decision must hand to the full steps, or answer as they would.

quirks := {
	"agents": {
		"bot": {"owner": "olga@example.com", "purposes": ["support", "triage"], "permissions": [
			{"name": "home", "methods": ["GET"], "path": "/"},
			{"name": "tickets.support", "methods": ["GET"], "path": "/tickets/{id}", "purposes": ["support"]},
			{"name": "tickets.any", "methods": ["GET"], "path": "/tickets/{id}"},
			{"name": "files", "methods": ["GET"], "path": "/files/{path...}"},
		]},
		"lax-bot": {"owner": "olga@example.com", "status": "active", "permissions": [{"name": "all", "methods": ["GET"], "path": "/{rest...}"}]},
	},
	"owners": {},
}

decide_quirks(i) := d if {
	d := authz.decision with input as i with data.chaperone.registry as quirks
}

test_the_root_path_has_its_own_template if {
	decide_quirks(req("bot", "GET", [])) == {"allowed": true, "reason": "permitted", "rule": "permission:home"}
	decide_quirks(req("lax-bot", "GET", [])).reason == "no_permission"
}

test_a_permission_for_another_purpose_gives_way_to_a_later_one if {
	i := req("bot", "GET", ["tickets", "7"])
	decide_quirks(with_purpose(i, "support")).rule == "permission:tickets.support"
	decide_quirks(with_purpose(i, "triage")).rule == "permission:tickets.any"
	decide_quirks(i).rule == "permission:tickets.any"
}

test_a_rest_template_takes_the_remaining_segments if {
	decide_quirks(req("bot", "GET", ["files", "a", "b.txt"])).rule == "permission:files"
	decide_quirks(req("bot", "GET", ["files"])).reason == "no_permission"
}

test_dot_segments_match_no_permission if {
	decide_quirks(req("lax-bot", "GET", ["a", "..", "b"])) == {"allowed": false, "reason": "no_permission", "rule": "default_deny", "cache_seconds": 60}
	decide_quirks(req("lax-bot", "GET", ["."])).reason == "no_permission"
}

test_a_guard_watching_reads_applies_to_reads if {
	d := authz.decision with input as req("bot", "GET", ["tickets", "7"])
		with data.chaperone.registry as quirks
		with data.chaperone.payments.endpoints as [{"methods": ["GET"], "path": "/tickets/{id}"}]
	d == {"allowed": false, "reason": "payment_invalid", "rule": "guard.payment_request"}
}

test_an_elevation_entry_aimed_at_the_request_is_reported if {
	window := {"agents": ["lax-bot"], "start": "2026-11-24T11:00:00Z", "end": "2026-11-24T12:00:00Z", "permissions": [{"name": "x", "methods": ["DELETE"], "path": "/tickets/{id}"}]}
	i := req("lax-bot", "DELETE", ["tickets", "7"])
	d := authz.decision with input as i with data.chaperone.registry as quirks with data.chaperone.maintenance as {"later": window}
	d == {"allowed": false, "reason": "maintenance_outside_window", "rule": "maintenance:later"}
}

test_a_request_without_a_purpose_key_is_covered_by_nothing if {
	i := req("lax-bot", "GET", ["tickets", "7"])
	j := object.union(object.remove(i, ["agent"]), {"agent": object.remove(i.agent, ["purpose"])})
	decide_quirks(i).allowed
	decide_quirks(j) == {"allowed": false, "reason": "no_permission", "rule": "default_deny"}
	decide_quirks(with_grants(j, [grant("g-1", [{"type": "agent_http", "actions": ["GET"], "locations": ["/tickets/7"]}])])).reason == "no_matching_grant"
}

test_a_purpose_that_is_not_a_string_passes_the_registry if {
	decide_quirks(with_purpose(req("lax-bot", "GET", ["x"]), 7)).allowed
	decide_quirks(with_purpose(req("bot", "GET", ["tickets", "7"]), 7)).rule == "permission:tickets.any"
}

# The quick path of the decision answers exactly as the full steps (complete_decision) for
# every request it answers. A sample of requests over a few data sets.

sample_data := [
	{"registry": quirks, "maintenance": {}, "break_glass": {}, "payments": {"endpoints": [{"methods": ["POST"], "path": "/payments"}], "thresholds": {}}},
	{"registry": registry, "maintenance": {}, "break_glass": {"inc": {
		"agent": "bot", "reason": "r", "approver": "erin@example.com", "start": "2026-11-24T09:50:00Z", "end": "2026-11-24T10:10:00Z",
		"permissions": [{"name": "x", "methods": ["DELETE"], "path": "/tickets/{id}"}],
	}}, "payments": {"endpoints": [{"methods": ["GET"], "path": "/tickets/{id}/history"}], "thresholds": {}}},
	{"registry": registry, "maintenance": {"m": {
		"agents": ["bot", "lax-bot"], "start": "2026-11-24T09:00:00Z", "end": "2026-11-24T09:30:00Z",
		"permissions": [{"name": "y", "methods": ["POST", "DELETE"], "path": "/tickets/{id}/close"}],
	}}, "break_glass": {}, "payments": {"endpoints": [], "thresholds": {}}},
]

sample_requests := [with_grants(with_purpose(req(agent, method, path), purpose), grants) |
	some agent in ["bot", "lax-bot", "bob-bot", "shadow"]
	some method in ["GET", "POST", "DELETE"]
	some path in [[], ["tickets"], ["tickets", "7"], ["tickets", "7", "close"], ["tickets", "7", "history"], ["tickets", ".."], ["files", "a/b"], ["repos", "acme", "shop", "branches", "main", "commits"]]
	some purpose in [null, "support", "marketing", 7]
	some grants in [[], [grant("g-1", [{"type": "agent_http", "actions": ["DELETE"], "locations": ["/tickets/7"]}])]]
]

agree(i, d) if {
	quick := authz.decision with input as i
		with data.chaperone.registry as d.registry
		with data.chaperone.maintenance as d.maintenance
		with data.chaperone.break_glass as d.break_glass
		with data.chaperone.payments as d.payments
	full := authz.complete_decision with input as i
		with data.chaperone.registry as d.registry
		with data.chaperone.maintenance as d.maintenance
		with data.chaperone.break_glass as d.break_glass
		with data.chaperone.payments as d.payments
	object.remove(quick, ["cache_seconds"]) == full
}

test_the_quick_path_agrees_with_the_full_steps if {
	count(sample_requests) == 768
	every d in sample_data {
		every i in sample_requests {
			agree(i, d)
		}
	}
}
