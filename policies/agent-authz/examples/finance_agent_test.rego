# Worked example 3: finance-agent (owner dave@example.com) initiates payments on its own up
# to its threshold (data.chaperone.payments.thresholds); each payment above it needs a grant
# approved by a human (data.chaperone.approvers) for exactly that payment:
#   {"type": "payment_initiation", "payee": "ACME-42",
#    "instructedAmount": {"amount": "1500.00", "currency": "EUR"}}
package chaperone.examples.finance_agent_test

import data.chaperone.authz

now := 1795514400000000000

decide(i) := d if {
	d := authz.decision with input as i
}

minute := 60000000000

req(method, segments, query, purpose) := {
	"attributes": {"request": {"http": {"method": method, "path": concat("/", array.concat([""], segments)), "host": "erp.example.com", "scheme": "https", "headers": {}}}},
	"parsed_path": segments,
	"parsed_query": query,
	"agent": {"id": "finance-agent", "issuer": "https://idp.example.com", "owner": "dave@example.com", "purpose": purpose, "task": "INV-2231", "registered": true, "claims": {}},
	"grants": [],
	"now_ns": now,
}

pay(amount, currency, payee) := req("POST", ["payments"], {"amount": [amount], "currency": [currency], "payee": [payee]}, "accounts_payable")

approval(jti, approver, amount, currency, payee) := {
	"jti": jti, "issuer": "https://grants.example.com", "approver": approver, "task": "INV-2231", "reason": "invoice INV-2231",
	"authorization_details": [{"type": "payment_initiation", "payee": payee, "instructedAmount": {"amount": amount, "currency": currency}}],
	"not_before_ns": now - minute, "expires_at_ns": now + (4 * minute), "remaining_seconds": 240,
}

decide_with_grants(i, grants) := d if {
	d := authz.decision with input as object.union(i, {"grants": grants})
}

needs_approval := {"allowed": false, "reason": "payment_requires_approval", "rule": "guard.payment_threshold"}

test_pays_up_to_the_threshold_on_its_own if {
	decide(pay("250.00", "EUR", "ACME-42")) == {"allowed": true, "reason": "permitted", "rule": "permission:payments.initiate"}
	decide(pay("1000.00", "EUR", "ACME-42")).allowed
	decide(pay("1000", "USD", "ACME-42")).allowed
}

test_above_the_threshold_needs_approval if {
	decide(pay("1000.01", "EUR", "ACME-42")) == needs_approval
	decide(pay("1500.00", "EUR", "ACME-42")) == needs_approval
	decide(pay("10", "GBP", "ACME-42")) == needs_approval
}

test_a_human_approval_of_exactly_this_payment_allows_it if {
	d := decide_with_grants(pay("1500.00", "EUR", "ACME-42"), [approval("pay-1", "erin@example.com", "1500.00", "EUR", "ACME-42")])
	d == {"allowed": true, "reason": "payment_approved", "rule": "guard.payment_threshold", "grants_used": ["pay-1"]}

	# The same amount written differently is the same payment.
	decide_with_grants(pay("1500", "EUR", "ACME-42"), [approval("pay-1", "erin@example.com", "1500.00", "EUR", "ACME-42")]).allowed
}

test_approval_from_a_non_human_approver if {
	decide_with_grants(pay("1500.00", "EUR", "ACME-42"), [approval("pay-1", "release-bot", "1500.00", "EUR", "ACME-42")]) == needs_approval
	decide_with_grants(pay("1500.00", "EUR", "ACME-42"), [approval("pay-1", "finance-agent", "1500.00", "EUR", "ACME-42")]) == needs_approval
}

test_approval_for_another_amount if {
	decide_with_grants(pay("1500.00", "EUR", "ACME-42"), [approval("pay-1", "erin@example.com", "1400.00", "EUR", "ACME-42")]) == needs_approval
	decide_with_grants(pay("1500.00", "EUR", "ACME-42"), [approval("pay-1", "erin@example.com", "1500.001", "EUR", "ACME-42")]) == needs_approval
}

test_approval_for_another_payee_or_currency if {
	decide_with_grants(pay("1500.00", "EUR", "ACME-42"), [approval("pay-1", "erin@example.com", "1500.00", "EUR", "ACME-43")]) == needs_approval
	decide_with_grants(pay("1500.00", "EUR", "ACME-42"), [approval("pay-1", "erin@example.com", "1500.00", "USD", "ACME-42")]) == needs_approval
}

test_an_http_grant_does_not_approve_a_payment if {
	g := object.union(approval("pay-1", "erin@example.com", "0", "EUR", "x"), {"authorization_details": [{"type": "agent_http", "actions": ["POST"], "locations": ["/payments"]}]})
	decide_with_grants(pay("5000.00", "EUR", "ACME-42"), [g]) == needs_approval
}

test_malformed_payment_terms if {
	invalid := {"allowed": false, "reason": "payment_invalid", "rule": "guard.payment_request"}
	decide(pay("1,500.00", "EUR", "ACME-42")) == invalid
	decide(pay("-1", "EUR", "ACME-42")) == invalid
	decide(req("POST", ["payments"], {"amount": ["5"], "currency": ["EUR"]}, "accounts_payable")) == invalid
	decide(req("POST", ["payments"], {"amount": ["5", "50000"], "currency": ["EUR"], "payee": ["ACME-42"]}, "accounts_payable")) == invalid
}

test_purpose_not_declared_for_payments if {
	reporting := object.union(pay("250.00", "EUR", "ACME-42"), {"agent": {"purpose": "reporting"}})
	decide(reporting) == {"allowed": false, "reason": "purpose_not_permitted", "rule": "permission:payments.initiate"}
	no_purpose := object.union(pay("250.00", "EUR", "ACME-42"), {"agent": {"purpose": null}})
	decide(no_purpose) == {"allowed": false, "reason": "purpose_not_permitted", "rule": "permission:payments.initiate"}
	marketing := object.union(pay("250.00", "EUR", "ACME-42"), {"agent": {"purpose": "marketing"}})
	decide(marketing) == {"allowed": false, "reason": "purpose_not_allowed", "rule": "registry.purposes"}
}

test_reads_invoices_for_reporting if {
	decide(req("GET", ["invoices", "INV-2231"], {}, "reporting")) == {"allowed": true, "reason": "permitted", "rule": "permission:invoices.read", "cache_seconds": 60}
}

test_break_glass_does_not_approve_payments if {
	entry := {
		"agent": "finance-agent", "reason": "quarter close", "approver": "erin@example.com",
		"start": "2026-11-24T09:55:00Z", "end": "2026-11-24T10:15:00Z",
		"permissions": [{"name": "pay", "methods": ["POST"], "path": "/payments"}],
	}
	d := authz.decision with input as pay("5000.00", "EUR", "ACME-42") with data.chaperone.break_glass as {"Q4": entry}
	d == needs_approval
}
