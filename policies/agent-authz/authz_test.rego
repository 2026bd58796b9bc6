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
	decide(req("bot", "GET", ["tickets", "7"])) == {"allowed": true, "reason": "permitted", "rule": "permission:tickets.read"}
}

test_first_permission_in_data_order_is_named if {
	decide(req("bot", "GET", ["tickets", "7", "history"])).rule == "permission:tickets.any"
	decide(req("bot", "HEAD", ["tickets", "7"])).rule == "permission:tickets.any"
}

test_wrong_method_is_denied if {
	decide(req("bot", "DELETE", ["tickets", "7"])) == {"allowed": false, "reason": "no_permission", "rule": "default_deny"}
}

test_wrong_path_is_denied if {
	decide(req("bot", "GET", ["users", "7"])) == {"allowed": false, "reason": "no_permission", "rule": "default_deny"}
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
	decide(i) == {"allowed": true, "reason": "permitted", "rule": "permission:tickets.read"}
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
			key in {"allowed", "reason", "rule", "grants_used"}
		}
	}
}
