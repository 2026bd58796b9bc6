# Time windows from policy data, checked against input.now_ns (the host clock chaperone
# passes in, so a recorded decision replays the same; never time.now_ns()).
#
# Timestamps are RFC 3339 with an upper-case T and Z or a numeric offset:
# "2026-11-24T10:00:00Z", "2026-11-24T11:00:00.5+01:00". regorus stops the whole
# evaluation when time.parse_rfc3339_ns meets a bad date, so the text is checked first
# (shape, calendar, years 1970 to 2261) and a bad one is simply undefined.
package chaperone.lib.windows

timestamp_ns(text) := time.parse_rfc3339_ns(text) if valid_timestamp(text)

valid_timestamp(text) if {
	is_string(text)
	[m] := regex.find_all_string_submatch_n(`^([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})(\.[0-9]{1,9})?(Z|[+-]([0-9]{2}):([0-9]{2}))$`, text, 1)

	# Fixed-width digit strings compare like the numbers they spell.
	m[1] >= "1970"
	m[1] <= "2261"
	m[2] >= "01"
	m[2] <= "12"
	m[3] >= "01"
	m[3] <= days_in_month(to_number(m[1]), m[2])
	m[4] <= "23"
	m[5] <= "59"
	m[6] <= "59"
	offset_ok(m[8], m[9], m[10])
}

offset_ok("Z", _, _) := true

offset_ok(zone, hours, minutes) if {
	zone != "Z"
	hours <= "23"
	minutes <= "59"
}

days_in_month(_, month) := "31" if month in {"01", "03", "05", "07", "08", "10", "12"}

days_in_month(_, month) := "30" if month in {"04", "06", "09", "11"}

days_in_month(year, "02") := "29" if leap(year)

days_in_month(year, "02") := "28" if not leap(year)

leap(year) if {
	year % 4 == 0
	year % 100 != 0
}

leap(year) if year % 400 == 0

# {"start_ns", "end_ns"} of an entry with valid "start" and "end", start before end.
span(entry) := {"start_ns": start, "end_ns": end} if {
	start := timestamp_ns(entry.start)
	end := timestamp_ns(entry.end)
	start < end
}

# The window includes its start and excludes its end.
open(s, now_ns) if {
	s.start_ns <= now_ns
	now_ns < s.end_ns
}

longer_than(s, seconds) if s.end_ns - s.start_ns > seconds * 1000000000
