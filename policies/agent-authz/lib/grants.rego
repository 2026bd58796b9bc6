# Just-in-time grants. chaperone verifies grant tokens and puts only valid ones in
# input.grants: signed by the grant issuer, for this agent (and this task when the grant
# names one), inside their window, not revoked. What a grant permits is decided here,
# from its RFC 9396 authorization_details. Entries of a type this library does not know
# permit nothing.
#
#   {"type": "agent_http", "actions": ["POST"],
#    "locations": ["/repos/acme/shop/branches/main/commits"]}
#       the HTTP methods in "actions" on the path templates in "locations"
#
#   {"type": "payment_initiation", "payee": "ACME-42",
#    "instructedAmount": {"amount": "1500.00", "currency": "EUR"}}
#       one payment, exactly these terms (see chaperone.guards.payment)
package chaperone.lib.grants

import data.chaperone.lib.decimal
import data.chaperone.lib.paths

http_detail_covers(detail, request) if {
	detail.type == "agent_http"
	request.method in detail.actions
	some location in detail.locations
	paths.matches(location, request.segments)
}

# As above, with a location written out in full (no placeholder): the grant names this
# very path, not a family of paths.
http_detail_names(detail, request) if {
	detail.type == "agent_http"
	request.method in detail.actions
	some location in detail.locations
	paths.exact(location)
	paths.matches(location, request.segments)
}

covers(grant, request) if {
	some detail in grant.authorization_details
	http_detail_covers(detail, request)
}

names(grant, request) if {
	some detail in grant.authorization_details
	http_detail_names(detail, request)
}

# The jti of every grant that covers the request, in input order.
covering(grants, request) := [grant.jti | some grant in grants; covers(grant, request)]

# The jti of every grant that names the request exactly, in input order.
naming(grants, request) := [grant.jti | some grant in grants; names(grant, request)]

# terms: {"units": thousandths, "currency": "EUR", "payee": "ACME-42"}
payment_detail_matches(detail, terms) if {
	detail.type == "payment_initiation"
	decimal.thousandths(detail.instructedAmount.amount) == terms.units
	is_string(detail.instructedAmount.currency)
	upper(detail.instructedAmount.currency) == terms.currency
	detail.payee == terms.payee
}

# The approver is a person listed as human in `approvers`
# (data.chaperone.approvers), and not the agent approving itself.
approved_by_human(grant, approvers, agent_id) if {
	approvers[grant.approver].kind == "human"
	grant.approver != agent_id
}

approves_payment(grant, terms, approvers, agent_id) if {
	approved_by_human(grant, approvers, agent_id)
	some detail in grant.authorization_details
	payment_detail_matches(detail, terms)
}
