# Worked example 1: support-bot (owner alice@example.com) reads and comments on tickets.
# The quickstart (make run) prints a curl for GET and for DELETE /tickets/42: the first is
# allowed, the second denied with no_permission.
package chaperone.examples.support_bot_test

import data.chaperone.authz

now := 1795514400000000000

decide(i) := d if {
	d := authz.decision with input as i
}

req(method, segments, query) := {
	"attributes": {"request": {"http": {"method": method, "path": concat("/", array.concat([""], segments)), "host": "127.0.0.1:10000", "scheme": "http", "headers": {}}}},
	"parsed_path": segments,
	"parsed_query": query,
	"agent": {"id": "support-bot", "issuer": "https://idp.example.com", "owner": "alice@example.com", "purpose": null, "task": null, "registered": true, "claims": {"sub": "support-bot"}},
	"grants": [],
	"now_ns": now,
}

test_lists_tickets if {
	decide(req("GET", ["tickets"], {})) == {"allowed": true, "reason": "permitted", "rule": "permission:tickets.list", "cache_seconds": 60}
}

test_reads_a_ticket if {
	decide(req("GET", ["tickets", "42"], {})) == {"allowed": true, "reason": "permitted", "rule": "permission:tickets.read", "cache_seconds": 60}
	decide(req("GET", ["tickets", "42"], {"expand": ["1"]})) == {"allowed": true, "reason": "permitted", "rule": "permission:tickets.read", "cache_seconds": 60}
}

test_comments_on_a_ticket if {
	decide(req("POST", ["tickets", "42", "comments"], {})) == {"allowed": true, "reason": "permitted", "rule": "permission:tickets.comment", "cache_seconds": 60}
}

test_delete_is_denied_with_no_permission if {
	decide(req("DELETE", ["tickets", "42"], {})) == {"allowed": false, "reason": "no_permission", "rule": "default_deny", "cache_seconds": 60}
}

test_other_methods_are_denied if {
	decide(req("PUT", ["tickets", "42"], {})) == {"allowed": false, "reason": "no_permission", "rule": "default_deny", "cache_seconds": 60}
	not decide(req("GET", ["tickets", "42", "comments"], {})).allowed
}

test_other_paths_are_denied if {
	not decide(req("GET", ["tickets", "42", "attachments"], {})).allowed
	not decide(req("GET", ["admin", "users"], {})).allowed
	not decide(req("GET", ["Tickets", "42"], {})).allowed
	not decide(req("POST", ["tickets", "..", "comments"], {})).allowed
}

test_declared_purpose_passes_other_purposes_do_not if {
	i := req("GET", ["tickets", "42"], {})
	decide(object.union(i, {"agent": {"purpose": "support"}})).allowed
	decide(object.union(i, {"agent": {"purpose": "sales"}})) == {"allowed": false, "reason": "purpose_not_allowed", "rule": "registry.purposes"}
}

test_offboarded_owner if {
	d := authz.decision with input as req("GET", ["tickets", "42"], {})
		with data.chaperone.registry.owners as {"alice@example.com": {"status": "offboarded"}}
	d == {"allowed": false, "reason": "owner_offboarded", "rule": "registry.owner"}
}

test_a_grant_lets_it_delete_one_ticket if {
	g := {
		"jti": "grant-42", "issuer": "https://grants.example.com", "approver": "alice@example.com", "task": "T-9",
		"reason": "customer asked for erasure", "not_before_ns": now, "expires_at_ns": now + 300000000000, "remaining_seconds": 300,
		"authorization_details": [{"type": "agent_http", "actions": ["DELETE"], "locations": ["/tickets/42"]}],
	}
	i := object.union(req("DELETE", ["tickets", "42"], {}), {"grants": [g]})
	decide(i) == {"allowed": true, "reason": "granted", "rule": "grant.agent_http", "grants_used": ["grant-42"]}
	j := object.union(req("DELETE", ["tickets", "43"], {}), {"grants": [g]})
	decide(j) == {"allowed": false, "reason": "no_matching_grant", "rule": "grant.unmatched"}
}
