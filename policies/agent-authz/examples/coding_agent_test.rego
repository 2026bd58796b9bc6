# Worked example 2: coding-agent (owner carol@example.com) pushes to ordinary branches on
# its own; a push to a protected branch (data.chaperone.protected_branches) needs a grant
# naming exactly that push:
#   {"type": "agent_http", "actions": ["POST"],
#    "locations": ["/repos/acme/shop/branches/main/commits"]}
package chaperone.examples.coding_agent_test

import data.chaperone.authz

now := 1795514400000000000

decide(i) := d if {
	d := authz.decision with input as i
}

minute := 60000000000

req(method, segments) := {
	"attributes": {"request": {"http": {"method": method, "path": concat("/", array.concat([""], segments)), "host": "git.example.com", "scheme": "https", "headers": {}}}},
	"parsed_path": segments,
	"parsed_query": {},
	"agent": {"id": "coding-agent", "issuer": "https://idp.example.com", "owner": "carol@example.com", "purpose": null, "task": "T-77", "registered": true, "claims": {}},
	"grants": [],
	"now_ns": now,
}

push(branch) := req("POST", ["repos", "acme", "shop", "branches", branch, "commits"])

grant(jti, details) := {
	"jti": jti, "issuer": "https://grants.example.com", "approver": "erin@example.com", "task": "T-77", "reason": "hotfix for checkout",
	"authorization_details": details, "not_before_ns": now - minute, "expires_at_ns": now + (4 * minute), "remaining_seconds": 240,
}

push_main_detail := {"type": "agent_http", "actions": ["POST"], "locations": ["/repos/acme/shop/branches/main/commits"]}

decide_with_grants(i, grants) := d if {
	d := authz.decision with input as object.union(i, {"grants": grants})
}

held := {"allowed": false, "reason": "protected_branch_requires_grant", "rule": "guard.protected_branch"}

test_pushes_to_ordinary_branches if {
	decide(push("feature-login")) == {"allowed": true, "reason": "permitted", "rule": "permission:repos.push"}

	# "feature%2Flogin" in the URL: one decoded segment.
	decide(push("feature/login")).allowed
}

test_reads_repository_contents if {
	decide(req("GET", ["repos", "acme", "shop", "contents", "README.md"])).allowed
	not decide(req("GET", ["repos", "acme", "shop"])).allowed
}

test_push_to_a_protected_branch_is_held if {
	decide(push("main")) == held
	decide(push("Main")) == held
	decide(push("production")) == held
	decide(push("release/2026.11")) == held
}

test_a_grant_naming_the_push_allows_it if {
	d := decide_with_grants(push("main"), [grant("g-7", [push_main_detail])])
	d == {"allowed": true, "reason": "protected_branch_granted", "rule": "guard.protected_branch", "grants_used": ["g-7"]}
}

test_grant_for_another_location if {
	other_repo := object.union(push_main_detail, {"locations": ["/repos/acme/billing/branches/main/commits"]})
	decide_with_grants(push("main"), [grant("g-7", [other_repo])]) == held
	other_branch := object.union(push_main_detail, {"locations": ["/repos/acme/shop/branches/production/commits"]})
	decide_with_grants(push("main"), [grant("g-7", [other_branch])]) == held
}

test_grant_for_every_branch_is_not_enough if {
	any_branch := object.union(push_main_detail, {"locations": ["/repos/acme/shop/branches/{branch}/commits"]})
	decide_with_grants(push("main"), [grant("g-7", [any_branch])]) == held
}

test_grant_with_an_unknown_type if {
	unknown := object.union(push_main_detail, {"type": "git_push"})
	decide_with_grants(push("main"), [grant("g-7", [unknown])]) == held
}

test_grant_for_another_method if {
	put := object.union(push_main_detail, {"actions": ["PUT"]})
	decide_with_grants(push("main"), [grant("g-7", [put])]) == held
}

test_deleting_a_protected_branch_needs_its_own_grant if {
	delete_main := req("DELETE", ["repos", "acme", "shop", "branches", "main"])
	decide(delete_main) == {"allowed": false, "reason": "no_permission", "rule": "default_deny", "cache_seconds": 60}
	detail := {"type": "agent_http", "actions": ["DELETE"], "locations": ["/repos/acme/shop/branches/main"]}
	d := decide_with_grants(delete_main, [grant("g-8", [detail])])
	d == {"allowed": true, "reason": "protected_branch_granted", "rule": "guard.protected_branch", "grants_used": ["g-8"]}
}

hotfix := {
	"agent": "coding-agent",
	"reason": "INC-2041: checkout down, grant service unreachable",
	"approver": "erin@example.com",
	"start": "2026-11-24T09:55:00Z",
	"end": "2026-11-24T10:15:00Z",
	"permissions": [{"name": "hotfix.push", "methods": ["POST"], "path": "/repos/acme/shop/branches/main/commits"}],
}

test_break_glass_lifts_the_protected_branch_hold if {
	d := authz.decision with input as push("main") with data.chaperone.break_glass as {"INC-2041": hotfix}
	d == {"allowed": true, "reason": "break_glass", "rule": "break_glass:INC-2041"}
}

test_break_glass_without_reason_does_not if {
	d := authz.decision with input as push("main") with data.chaperone.break_glass as {"INC-2041": object.remove(hotfix, ["reason"])}
	d == {"allowed": false, "reason": "break_glass_without_reason", "rule": "break_glass:INC-2041"}
}

test_expired_break_glass_does_not if {
	d := authz.decision with input as object.union(push("main"), {"now_ns": now + (15 * minute)}) with data.chaperone.break_glass as {"INC-2041": hotfix}
	d == {"allowed": false, "reason": "break_glass_outside_window", "rule": "break_glass:INC-2041"}
}

test_break_glass_window_too_long_does_not if {
	d := authz.decision with input as push("main") with data.chaperone.break_glass as {"INC-2041": object.union(hotfix, {"end": "2026-11-24T12:00:00Z"})}
	d == {"allowed": false, "reason": "break_glass_window_too_long", "rule": "break_glass:INC-2041"}
}
