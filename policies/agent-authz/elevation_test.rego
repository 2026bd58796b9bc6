package chaperone.elevation_test

import data.chaperone.authz
import data.chaperone.elevation

# 2026-11-24T10:00:00Z
now := 1795514400000000000

decide(i) := d if {
	d := authz.decision with input as i
}

minute := 60000000000

req(agent, method, segments, at) := {
	"attributes": {"request": {"http": {"method": method, "path": concat("/", array.concat([""], segments)), "host": "api.test", "scheme": "https", "headers": {}}}},
	"parsed_path": segments,
	"parsed_query": {},
	"agent": {"id": agent, "issuer": "https://idp.test", "owner": null, "purpose": null, "task": null, "registered": true, "claims": {}},
	"grants": [],
	"now_ns": at,
}

close_ticket := [{"name": "tickets.close", "methods": ["POST"], "path": "/tickets/{id}/close"}]

# An incident from 09:50 to 10:20.
incident := {
	"agent": "support-bot",
	"reason": "INC-2041: ticket backlog after outage",
	"approver": "erin@example.com",
	"start": "2026-11-24T09:50:00Z",
	"end": "2026-11-24T10:20:00Z",
	"permissions": close_ticket,
}

close_7(at) := req("support-bot", "POST", ["tickets", "7", "close"], at)

with_break_glass(i, entries) := d if {
	d := authz.decision with input as i with data.chaperone.break_glass as entries
}

with_maintenance(i, entries) := d if {
	d := authz.decision with input as i with data.chaperone.maintenance as entries
}

state(entry, at) := s if {
	[c] := elevation.break_glass(authz.request) with input as close_7(at) with data.chaperone.break_glass as {"e": entry}
	s := c.state
}

test_states_in_order_of_checks if {
	state(incident, now) == "active"
	state(object.union(incident, {"reason": "  "}), now) == "without_reason"
	state(object.remove(incident, ["reason"]), now) == "without_reason"
	state(object.union(incident, {"reason": 42}), now) == "without_reason"
	state(object.remove(incident, ["approver"]), now) == "without_approver"
	state(object.union(incident, {"end": "2026-11-24T25:00:00Z"}), now) == "window_invalid"
	state(object.union(incident, {"end": "2026-11-24T09:00:00Z"}), now) == "window_invalid"
	state(object.union(incident, {"end": "2026-11-24T10:20:01Z"}), now) == "window_too_long"
	state(incident, now + (20 * minute)) == "outside_window"
	state(incident, now - (10 * minute)) == "active"
	state(incident, now - (11 * minute)) == "outside_window"
}

test_entry_without_reason_that_is_also_expired_reports_the_reason if {
	state(object.remove(incident, ["reason"]), now + (60 * minute)) == "without_reason"
}

test_only_entries_for_the_agent_and_the_request_are_candidates if {
	other_agent := object.union(incident, {"agent": "coding-agent"})
	other_path := object.union(incident, {"permissions": [{"name": "x", "methods": ["POST"], "path": "/tickets/{id}/reopen"}]})
	cs := elevation.break_glass(authz.request) with input as close_7(now)
		with data.chaperone.break_glass as {"a": other_agent, "b": other_path, "c": incident}
	cs == [{"id": "c", "state": "active"}]
}

test_active_break_glass_allows if {
	with_break_glass(close_7(now), {"INC-2041": incident}) == {"allowed": true, "reason": "break_glass", "rule": "break_glass:INC-2041"}
}

test_expired_break_glass_is_denied if {
	with_break_glass(close_7(now + (30 * minute)), {"INC-2041": incident}) == {"allowed": false, "reason": "break_glass_outside_window", "rule": "break_glass:INC-2041"}
}

test_break_glass_not_yet_started_is_denied if {
	with_break_glass(close_7(now - (30 * minute)), {"INC-2041": incident}).reason == "break_glass_outside_window"
}

test_break_glass_without_reason_is_denied if {
	entry := object.union(incident, {"reason": ""})
	with_break_glass(close_7(now), {"INC-2041": entry}) == {"allowed": false, "reason": "break_glass_without_reason", "rule": "break_glass:INC-2041"}
}

test_break_glass_without_approver_is_denied if {
	entry := object.remove(incident, ["approver"])
	with_break_glass(close_7(now), {"INC-2041": entry}).reason == "break_glass_without_approver"
}

test_break_glass_window_too_long_is_denied if {
	entry := object.union(incident, {"start": "2026-11-24T08:00:00Z"})
	with_break_glass(close_7(now), {"INC-2041": entry}) == {"allowed": false, "reason": "break_glass_window_too_long", "rule": "break_glass:INC-2041"}
}

test_break_glass_maximum_comes_from_settings if {
	entry := object.union(incident, {"start": "2026-11-24T08:00:00Z"})
	d := decide(close_7(now))
		with data.chaperone.break_glass as {"INC-2041": entry}
		with data.chaperone.settings.break_glass_max_seconds as 10800
	d.allowed
	elevation.break_glass_max_seconds == 1800 with data.chaperone.settings as {}
	elevation.break_glass_max_seconds == 1800 with data.chaperone.settings.break_glass_max_seconds as "1h"
}

test_break_glass_with_a_bad_timestamp_is_denied_not_an_error if {
	entry := object.union(incident, {"end": "2026-02-30T10:00:00Z"})
	with_break_glass(close_7(now), {"INC-2041": entry}).reason == "break_glass_window_invalid"
}

test_a_valid_entry_wins_over_a_defective_one if {
	broken := object.union(incident, {"reason": ""})
	with_break_glass(close_7(now), {"A-broken": broken, "B-good": incident}).rule == "break_glass:B-good"
}

test_break_glass_does_not_reach_other_requests if {
	i := req("support-bot", "DELETE", ["tickets", "7"], now)
	with_break_glass(i, {"INC-2041": incident}) == {"allowed": false, "reason": "no_permission", "rule": "default_deny", "cache_seconds": 60}
}

test_break_glass_for_another_agent_does_nothing if {
	entry := object.union(incident, {"agent": "coding-agent"})
	with_break_glass(close_7(now), {"INC-2041": entry}).reason == "no_permission"
}

reindex := req("support-bot", "POST", ["admin", "search", "reindex"], now)

# The shipped window: 2026-12-05T22:00:00Z to 2026-12-06T02:00:00Z.
during_shipped_window := 1796508000000000000 + (60 * minute)

test_shipped_maintenance_window if {
	d := authz.decision with input as object.union(reindex, {"now_ns": during_shipped_window})
	d == {"allowed": true, "reason": "maintenance_window", "rule": "maintenance:search-reindex-2026-12"}
}

test_maintenance_outside_its_window_is_denied if {
	decide(reindex) == {"allowed": false, "reason": "maintenance_outside_window", "rule": "maintenance:search-reindex-2026-12"}
}

test_maintenance_window_too_long_is_denied if {
	entry := {"agents": ["support-bot"], "start": "2026-11-24T00:00:00Z", "end": "2026-11-25T00:00:00Z", "permissions": close_ticket}
	with_maintenance(close_7(now), {"m": entry}) == {"allowed": false, "reason": "maintenance_window_too_long", "rule": "maintenance:m"}
}

test_maintenance_window_invalid_is_denied if {
	entry := {"agents": ["support-bot"], "start": "2026-11-24T00:00:00Z", "end": "later", "permissions": close_ticket}
	with_maintenance(close_7(now), {"m": entry}).reason == "maintenance_window_invalid"
}

test_maintenance_for_other_agents_does_nothing if {
	entry := {"agents": ["coding-agent"], "start": "2026-11-24T09:00:00Z", "end": "2026-11-24T11:00:00Z", "permissions": close_ticket}
	with_maintenance(close_7(now), {"m": entry}).reason == "no_permission"
	with_maintenance(close_7(now), {"m": object.union(entry, {"agents": ["support-bot"]})}).allowed
}
