package chaperone.guards.payment_test

import data.chaperone.guards.payment

config := {
	"endpoints": [{"methods": ["POST"], "path": "/payments"}],
	"thresholds": {"payer": {"EUR": "1000.00", "JPY": 150000}},
}

approvers := {"erin@example.com": {"kind": "human"}, "ops-bot": {"kind": "service"}}

pay(amount, currency, payee) := pay_query({"amount": [amount], "currency": [currency], "payee": [payee]})

pay_query(query) := {"agent": "payer", "method": "POST", "segments": ["payments"], "purpose": null, "now_ns": 0, "query": query}

approval(jti, approver, amount, currency, payee) := {
	"jti": jti, "approver": approver,
	"authorization_details": [{"type": "payment_initiation", "payee": payee, "instructedAmount": {"amount": amount, "currency": currency}}],
}

hold(request, grants) := h if {
	h := payment.hold(request, grants) with data.chaperone.payments as config with data.chaperone.approvers as approvers
}

test_up_to_the_threshold_is_not_held if {
	not hold(pay("999.99", "EUR", "ACME-42"), [])
	not hold(pay("1000", "EUR", "ACME-42"), [])
	not hold(pay("1000.000", "eur", "ACME-42"), [])
	not hold(pay("150000", "JPY", "ACME-42"), [])
}

test_above_the_threshold_is_held if {
	hold(pay("1000.01", "EUR", "ACME-42"), []) == {
		"rule": "guard.payment_threshold", "denied": "payment_requires_approval",
		"approved": "payment_approved", "grants": [], "break_glass": false,
	}
	hold(pay("1000.001", "EUR", "ACME-42"), []).denied == "payment_requires_approval"
	hold(pay("150000.001", "JPY", "ACME-42"), []).denied == "payment_requires_approval"
}

test_a_currency_without_threshold_is_always_held if {
	hold(pay("0.01", "USD", "ACME-42"), []).denied == "payment_requires_approval"
}

test_another_agent_has_no_threshold if {
	hold(object.union(pay("1", "EUR", "ACME-42"), {"agent": "other"}), []).denied == "payment_requires_approval"
}

test_malformed_terms_are_refused if {
	invalid := {"rule": "guard.payment_request", "denied": "payment_invalid", "grants": [], "break_glass": false}
	hold(pay("-5", "EUR", "ACME-42"), []) == invalid
	hold(pay("1e3", "EUR", "ACME-42"), []) == invalid
	hold(pay("5", "EURO", "ACME-42"), []) == invalid
	hold(pay("5", "E1R", "ACME-42"), []) == invalid
	hold(pay("5", "EUR", ""), []) == invalid
	hold(pay_query({"amount": ["5"], "currency": ["EUR"]}), []) == invalid
	hold(pay_query({}), []) == invalid

	# A repeated parameter could be read differently upstream.
	hold(pay_query({"amount": ["5", "5000"], "currency": ["EUR"], "payee": ["ACME-42"]}), []) == invalid
}

test_other_requests_are_not_held if {
	not hold(object.union(pay("5000", "EUR", "ACME-42"), {"method": "GET"}), [])
	not hold(object.union(pay("5000", "EUR", "ACME-42"), {"segments": ["payments", "p-1"]}), [])
}

test_an_exact_human_approval_lifts_the_hold if {
	hold(pay("1500.00", "EUR", "ACME-42"), [approval("p-1", "erin@example.com", "1500", "EUR", "ACME-42")]).grants == ["p-1"]
}

test_approval_from_a_non_human_does_not_lift_the_hold if {
	hold(pay("1500.00", "EUR", "ACME-42"), [approval("p-1", "ops-bot", "1500.00", "EUR", "ACME-42")]).grants == []
	hold(pay("1500.00", "EUR", "ACME-42"), [approval("p-1", "nobody@example.com", "1500.00", "EUR", "ACME-42")]).grants == []
}

test_approval_for_other_terms_does_not_lift_the_hold if {
	p := pay("1500.00", "EUR", "ACME-42")
	hold(p, [approval("p-1", "erin@example.com", "1500.01", "EUR", "ACME-42")]).grants == []
	hold(p, [approval("p-1", "erin@example.com", "1499.99", "EUR", "ACME-42")]).grants == []
	hold(p, [approval("p-1", "erin@example.com", "1500.00", "USD", "ACME-42")]).grants == []
	hold(p, [approval("p-1", "erin@example.com", "1500.00", "EUR", "ACME-43")]).grants == []
}

test_the_first_matching_approval_is_used if {
	p := pay("1500.00", "EUR", "ACME-42")
	gs := [
		approval("p-0", "ops-bot", "1500.00", "EUR", "ACME-42"),
		approval("p-1", "erin@example.com", "1500.00", "EUR", "ACME-42"),
		approval("p-2", "erin@example.com", "1500.00", "EUR", "ACME-42"),
	]
	hold(p, gs).grants == ["p-1"]
}
