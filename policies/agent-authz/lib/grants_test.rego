package chaperone.lib.grants_test

import data.chaperone.lib.grants

push_main := {"agent": "coding-agent", "method": "POST", "segments": ["repos", "acme", "shop", "branches", "main", "commits"], "purpose": null}

grant(jti, details) := {
	"jti": jti, "issuer": "https://grants.test", "approver": "erin@example.com", "task": null, "reason": "hotfix",
	"authorization_details": details,
	"not_before_ns": 0, "expires_at_ns": 1, "remaining_seconds": 1,
}

exact_push := {"type": "agent_http", "actions": ["POST"], "locations": ["/repos/acme/shop/branches/main/commits"]}

any_branch := {"type": "agent_http", "actions": ["POST"], "locations": ["/repos/acme/shop/branches/{branch}/commits"]}

test_agent_http_covers_method_and_location if {
	grants.http_detail_covers(exact_push, push_main)
	grants.http_detail_covers(any_branch, push_main)
	not grants.http_detail_covers(object.union(exact_push, {"actions": ["GET"]}), push_main)
	not grants.http_detail_covers(object.union(exact_push, {"locations": ["/repos/acme/shop/branches/dev/commits"]}), push_main)
}

test_agent_http_needs_actions_and_locations if {
	not grants.http_detail_covers(object.remove(exact_push, ["actions"]), push_main)
	not grants.http_detail_covers(object.remove(exact_push, ["locations"]), push_main)
}

test_only_a_written_out_location_names_the_request if {
	grants.http_detail_names(exact_push, push_main)
	not grants.http_detail_names(any_branch, push_main)
}

test_unknown_types_permit_nothing if {
	not grants.http_detail_covers(object.union(exact_push, {"type": "agent_https"}), push_main)
	not grants.covers(grant("g1", [object.union(exact_push, {"type": "repo_write"})]), push_main)
}

test_covering_lists_jtis_in_input_order if {
	gs := [grant("g2", [any_branch]), grant("g0", [{"type": "other"}]), grant("g1", [{"type": "other"}, exact_push])]
	grants.covering(gs, push_main) == ["g2", "g1"]
	grants.naming(gs, push_main) == ["g1"]
	grants.covering([], push_main) == []
}

terms := {"units": 1500000, "currency": "EUR", "payee": "ACME-42"}

payment := {"type": "payment_initiation", "payee": "ACME-42", "instructedAmount": {"amount": "1500.00", "currency": "EUR"}}

approvers := {"erin@example.com": {"kind": "human"}, "payments-bot": {"kind": "service"}}

test_payment_detail_must_match_every_term if {
	grants.payment_detail_matches(payment, terms)
	grants.payment_detail_matches(object.union(payment, {"instructedAmount": {"amount": "1500", "currency": "eur"}}), terms)
	not grants.payment_detail_matches(object.union(payment, {"instructedAmount": {"amount": "1500.01", "currency": "EUR"}}), terms)
	not grants.payment_detail_matches(object.union(payment, {"instructedAmount": {"amount": "1500.00", "currency": "USD"}}), terms)
	not grants.payment_detail_matches(object.union(payment, {"payee": "ACME-43"}), terms)
	not grants.payment_detail_matches(object.union(payment, {"type": "agent_http"}), terms)
	not grants.payment_detail_matches(object.union(payment, {"instructedAmount": {"amount": "-1500", "currency": "EUR"}}), terms)
}

test_payment_approval_needs_a_human_approver if {
	grants.approves_payment(grant("p1", [payment]), terms, approvers, "finance-agent")
	not grants.approves_payment(object.union(grant("p1", [payment]), {"approver": "payments-bot"}), terms, approvers, "finance-agent")
	not grants.approves_payment(object.union(grant("p1", [payment]), {"approver": "mallory@example.com"}), terms, approvers, "finance-agent")
	not grants.approves_payment(grant("p1", [payment]), terms, approvers, "erin@example.com")
}
