# Elevation written into the policy data: break-glass entries and scheduled maintenance
# windows. Both add permissions for a while; neither is a token.
#
# data.chaperone.break_glass.<id>:
#   {"agent": "coding-agent", "reason": "INC-2041: checkout down", "approver": "erin@example.com",
#    "start": "2026-11-24T10:00:00Z", "end": "2026-11-24T10:30:00Z",
#    "permissions": [<permission>, ...]}
# data.chaperone.maintenance.<id>:
#   {"agents": ["support-bot"], "description": "...", "start": "...", "end": "...",
#    "permissions": [<permission>, ...]}
#
# An entry is a candidate for a request when it is for the requesting agent and one of its
# permissions covers the request. Its state says whether it grants anything now: "active",
# or why not. Only an active entry grants; the others explain a denial.
package chaperone.elevation

import data.chaperone.lib.permissions
import data.chaperone.lib.windows

break_glass_max_seconds := s if {
	s := data.chaperone.settings.break_glass_max_seconds
	is_number(s)
	s > 0
} else := 1800

maintenance_max_seconds := s if {
	s := data.chaperone.settings.maintenance_max_seconds
	is_number(s)
	s > 0
} else := 14400

# [{"id", "state"}] in id order.
break_glass(request) := [{"id": id, "state": break_glass_state(entry, request.now_ns)} |
	entries := data.chaperone.break_glass
	some id in sort(object.keys(entries))
	entry := entries[id]
	entry.agent == request.agent
	applies(entry, request)
]

# [{"id", "state"}] in id order.
maintenance(request) := [{"id": id, "state": maintenance_state(entry, request.now_ns)} |
	entries := data.chaperone.maintenance
	some id in sort(object.keys(entries))
	entry := entries[id]
	request.agent in entry.agents
	applies(entry, request)
]

applies(entry, request) if {
	some permission in entry.permissions
	permissions.covers(permission, request)
}

# The checks run in this order, so an entry reports its first defect.
break_glass_state(entry, now_ns) := "without_reason" if {
	not text(entry, "reason")
} else := "without_approver" if {
	not text(entry, "approver")
} else := window_state([s | s := windows.span(entry)], now_ns, break_glass_max_seconds)

maintenance_state(entry, now_ns) := window_state([s | s := windows.span(entry)], now_ns, maintenance_max_seconds)

# The window is read once: [] when it is malformed, [span] otherwise.
window_state([], _, _) := "window_invalid"

window_state([s], now_ns, max_seconds) := "window_too_long" if {
	windows.longer_than(s, max_seconds)
} else := "outside_window" if {
	not windows.open(s, now_ns)
} else := "active"

text(entry, key) if {
	is_string(entry[key])
	trim_space(entry[key]) != ""
}
