# Time windows from policy data, checked against input.now_ns (the host clock chaperone
# passes in, so a recorded decision replays the same; never time.now_ns()).
#
# Timestamps are RFC 3339 with an upper-case T and Z or a numeric offset:
# "2026-11-24T10:00:00Z", "2026-11-24T11:00:00.5+01:00". regorus stops the whole
# evaluation when time.parse_rfc3339_ns meets a bad date, so the text is checked first
# (shape, calendar, years 1970 to 2261) and a bad one is simply undefined.
package chaperone.lib.windows

timestamp_ns(text) := time.parse_rfc3339_ns(text) if valid_timestamp(text)

# The shape first, every digit read as 0 (one builtin call where a regular expression would
# be compiled on every call): "0000-00-00T00:00:00", an optional fraction of one to nine
# digits, then "Z" or "+00:00" / "-00:00". Then the values.
valid_timestamp(text) if {
	is_string(text)
	shape := strings.replace_n({"1": "0", "2": "0", "3": "0", "4": "0", "5": "0", "6": "0", "7": "0", "8": "0", "9": "0"}, text)
	tail := trim_prefix(shape, "0000-00-00T00:00:00")
	tail != shape
	[fraction, zone] := fraction_and_zone(tail, text)
	fraction in {"", ".0", ".00", ".000", ".0000", ".00000", ".000000", ".0000000", ".00000000", ".000000000"}

	# "2026-11-24T10:00:00" gives ["2026", "11", "24", "10", "00", "00"].
	[year, month, day, hour, minute, second] := split(strings.replace_n({"T": "-", ":": "-"}, substring(text, 0, 19)), "-")

	# Fixed-width digit strings compare like the numbers they spell.
	year >= "1970"
	year <= "2261"
	month >= "01"
	month <= "12"
	day >= "01"
	day <= days_in_month(to_number(year), month)
	hour <= "23"
	minute <= "59"
	second <= "59"
	offset_ok(zone)
}

# The fraction (in the shape) and the zone (in the text) ending a timestamp.
fraction_and_zone(tail, text) := [trim_suffix(tail, "Z"), "Z"] if {
	endswith(tail, "Z")
} else := [substring(tail, 0, n - 6), substring(text, count(text) - 6, 6)] if {
	n := count(tail)
	n >= 6
	substring(tail, n - 6, 6) in {"+00:00", "-00:00"}
}

offset_ok("Z") := true

# "+05:30"
offset_ok(zone) if {
	zone != "Z"
	substring(zone, 1, 2) <= "23"
	substring(zone, 4, 2) <= "59"
}

days_in_month(year, month) := "31" if {
	month in {"01", "03", "05", "07", "08", "10", "12"}
} else := "30" if {
	month in {"04", "06", "09", "11"}
} else := "29" if {
	month == "02"
	leap(year)
} else := "28" if {
	month == "02"
}

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
