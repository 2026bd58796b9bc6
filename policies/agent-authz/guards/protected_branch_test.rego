package chaperone.guards.protected_branch_test

import data.chaperone.guards.protected_branch

config := {
	"endpoints": [{"methods": ["POST"], "path": "/repos/{owner}/{repo}/branches/{branch}/commits"}],
	"names": ["main"],
	"prefixes": ["release/"],
}

push(branch) := {"agent": "coder", "method": "POST", "segments": ["repos", "acme", "shop", "branches", branch, "commits"], "purpose": null, "query": {}, "now_ns": 0}

grant(jti, location) := {"jti": jti, "approver": "erin@example.com", "authorization_details": [{"type": "agent_http", "actions": ["POST"], "locations": [location]}]}

hold(request, grants) := h if {
	h := protected_branch.hold(request, grants) with data.chaperone.protected_branches as config
}

test_ordinary_branches_are_not_held if {
	not hold(push("feature-x"), [])
	not hold(push("mainline"), [])
	not hold(push("releases"), [])
}

test_protected_names_and_prefixes_are_held if {
	hold(push("main"), []) == {
		"rule": "guard.protected_branch", "denied": "protected_branch_requires_grant",
		"approved": "protected_branch_granted", "grants": [], "break_glass": true,
	}
	hold(push("release/1.2"), []).grants == []
}

test_case_does_not_matter if {
	hold(push("Main"), [])
	hold(push("RELEASE/2"), [])
}

test_other_methods_and_paths_are_not_held if {
	not hold(object.union(push("main"), {"method": "GET"}), [])
	not hold(object.union(push("main"), {"segments": ["repos", "acme", "shop", "branches", "main"]}), [])
}

test_a_grant_naming_the_push_lifts_the_hold if {
	hold(push("main"), [grant("g-1", "/repos/acme/shop/branches/main/commits")]).grants == ["g-1"]
	hold(push("release/1.2"), [grant("g-2", "/repos/acme/shop/branches/release%2F1.2/commits")]).grants == []
}

test_a_grant_for_any_branch_does_not_lift_the_hold if {
	hold(push("main"), [grant("g-1", "/repos/acme/shop/branches/{branch}/commits")]).grants == []
}

test_a_grant_for_another_repository_does_not_lift_the_hold if {
	hold(push("main"), [grant("g-1", "/repos/acme/other/branches/main/commits")]).grants == []
}

test_without_configuration_nothing_is_held if {
	not protected_branch.hold(push("main"), []) with data.chaperone.protected_branches as {}
}
