# Guard: a payment above the agent's threshold needs a grant, approved by a human, for
# exactly that payment.
#
# data.chaperone.payments:
#   {"endpoints": [{"methods": ["POST"], "path": "/payments"}],
#    "thresholds": {"finance-agent": {"EUR": "1000.00"}}}
# data.chaperone.approvers: {"erin@example.com": {"kind": "human"}}
#
# The terms come from the query, each parameter exactly once (a repeated one could be read
# differently upstream): ?amount=1500.00&currency=EUR&payee=ACME-42. Amounts compare as
# exact decimals (chaperone.lib.decimal), up to and including the threshold; a currency
# without a threshold always needs approval. Malformed terms are refused outright.
#
# The hold is lifted by a grant whose approver is listed as human (and is not the agent)
# with a payment_initiation entry of the same amount, currency and payee. Break-glass does
# not lift it.
package chaperone.guards.payment

import data.chaperone.lib.decimal
import data.chaperone.lib.grants
import data.chaperone.lib.paths

hold(request, presented) := h if {
	is_payment(request)
	h := payment_hold(request, presented, [t | t := terms(request)])
}

is_payment(request) if {
	some endpoint in data.chaperone.payments.endpoints
	request.method in endpoint.methods
	paths.matches(endpoint.path, request.segments)
}

# The terms are read once: [] when they are missing or malformed, [terms] otherwise.
payment_hold(_, _, []) := {
	"rule": "guard.payment_request",
	"denied": "payment_invalid",
	"grants": [],
	"break_glass": false,
}

payment_hold(request, presented, [t]) := {
	"rule": "guard.payment_threshold",
	"denied": "payment_requires_approval",
	"approved": "payment_approved",
	"grants": array.slice(approving(request, t, presented), 0, 1),
	"break_glass": false,
} if {
	not within_threshold(request.agent, t)
}

# {"units": thousandths, "currency": "EUR", "payee": "ACME-42"}
terms(request) := {"units": units, "currency": currency, "payee": payee} if {
	[amount] := request.query.amount
	[code] := request.query.currency
	[payee] := request.query.payee
	units := decimal.thousandths(amount)
	currency := upper(code)
	count(currency) == 3
	trim(currency, "ABCDEFGHIJKLMNOPQRSTUVWXYZ") == ""
	payee != ""
}

within_threshold(agent, t) if {
	t.units <= decimal.thousandths(data.chaperone.payments.thresholds[agent][t.currency])
}

approving(request, t, presented) := [grant.jti |
	some grant in presented
	grants.approves_payment(grant, t, data.chaperone.approvers, request.agent)
]
