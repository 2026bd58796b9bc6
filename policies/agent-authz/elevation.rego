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
	some id in sort(object.keys(data.chaperone.break_glass))
	entry := data.chaperone.break_glass[id]
	entry.agent == request.agent
	applies(entry, request)
]

# [{"id", "state"}] in id order.
maintenance(request) := [{"id": id, "state": maintenance_state(entry, request.now_ns)} |
	some id in sort(object.keys(data.chaperone.maintenance))
	entry := data.chaperone.maintenance[id]
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
} else := "window_invalid" if {
	not windows.span(entry)
} else := "window_too_long" if {
	windows.longer_than(windows.span(entry), break_glass_max_seconds)
} else := "outside_window" if {
	not windows.open(windows.span(entry), now_ns)
} else := "active"

maintenance_state(entry, now_ns) := "window_invalid" if {
	not windows.span(entry)
} else := "window_too_long" if {
	windows.longer_than(windows.span(entry), maintenance_max_seconds)
} else := "outside_window" if {
	not windows.open(windows.span(entry), now_ns)
} else := "active"

text(entry, key) if {
	is_string(entry[key])
	trim_space(entry[key]) != ""
}
