package chaperone.authz_test

import data.chaperone.authz

request(agent, method, path) := {
	"agent": {"id": agent, "issuer": "https://idp.example.com", "owner": null, "claims": {}},
	"attributes": {"request": {"http": {"method": method, "path": concat("/", array.concat([""], path))}}},
	"parsed_path": path,
}

test_support_bot_reads_a_ticket if {
	d := authz.decision with input as request("support-bot", "GET", ["tickets", "42"])
	d.allowed
	d.rule == "tickets.read"
}

test_support_bot_lists_tickets if {
	d := authz.decision with input as request("support-bot", "GET", ["tickets"])
	d.rule == "tickets.list"
}

test_support_bot_comments if {
	d := authz.decision with input as request("support-bot", "POST", ["tickets", "42", "comments"])
	d.allowed
	d.rule == "tickets.comment"
}

test_delete_is_denied_by_default if {
	d := authz.decision with input as request("support-bot", "DELETE", ["tickets", "42"])
	not d.allowed
	d.reason == "no_permission"
}

test_wildcard_matches_one_segment_only if {
	d := authz.decision with input as request("support-bot", "GET", ["tickets", "42", "attachments"])
	not d.allowed
}

test_unregistered_agent_is_denied if {
	d := authz.decision with input as request("shadow-agent", "GET", ["tickets", "42"])
	not d.allowed
	d.reason == "agent_unregistered"
}
