package chaperone.lib.windows_test

import data.chaperone.lib.windows

# 2026-11-24T10:00:00Z
ten := 1795514400000000000

test_timestamps if {
	windows.timestamp_ns("2026-11-24T10:00:00Z") == ten
	windows.timestamp_ns("2026-11-24T11:00:00+01:00") == ten
	windows.timestamp_ns("2026-11-24T10:00:00.5Z") == ten + 500000000
	windows.timestamp_ns("2028-02-29T00:00:00Z")
	windows.timestamp_ns("2000-02-29T00:00:00Z")
}

test_bad_timestamps_are_undefined_not_errors if {
	not windows.timestamp_ns("2026-02-29T00:00:00Z")
	not windows.timestamp_ns("2100-02-29T00:00:00Z")
	not windows.timestamp_ns("2026-04-31T00:00:00Z")
	not windows.timestamp_ns("2026-13-01T00:00:00Z")
	not windows.timestamp_ns("2026-11-24T24:00:00Z")
	not windows.timestamp_ns("2026-11-24T10:60:00Z")
	not windows.timestamp_ns("2026-11-24T10:00:60Z")
	not windows.timestamp_ns("2026-11-24T10:00:00+24:00")
	not windows.timestamp_ns("2026-11-24T10:00:00")
	not windows.timestamp_ns("2026-11-24t10:00:00z")
	not windows.timestamp_ns("2026-11-24 10:00:00Z")
	not windows.timestamp_ns("1969-12-31T23:59:59Z")
	not windows.timestamp_ns("2262-04-12T00:00:00Z")
	not windows.timestamp_ns("tomorrow")
	not windows.timestamp_ns(1795514400)
}

test_span if {
	windows.span({"start": "2026-11-24T10:00:00Z", "end": "2026-11-24T10:30:00Z"}) == {"start_ns": ten, "end_ns": ten + 1800000000000}
	not windows.span({"start": "2026-11-24T10:30:00Z", "end": "2026-11-24T10:00:00Z"})
	not windows.span({"start": "2026-11-24T10:00:00Z", "end": "2026-11-24T10:00:00Z"})
	not windows.span({"start": "2026-11-24T10:00:00Z"})
	not windows.span({"start": "2026-11-24T10:00:00Z", "end": "soon"})
}

test_open_includes_start_excludes_end if {
	s := {"start_ns": ten, "end_ns": ten + 60000000000}
	windows.open(s, ten)
	windows.open(s, ten + 59999999999)
	not windows.open(s, ten + 60000000000)
	not windows.open(s, ten - 1)
}

test_longer_than if {
	s := {"start_ns": ten, "end_ns": ten + 1800000000000}
	not windows.longer_than(s, 1800)
	windows.longer_than(s, 1799)
}

test_fractions_and_offsets if {
	windows.timestamp_ns("2026-11-24T10:00:00.123456789Z") == ten + 123456789
	windows.timestamp_ns("2026-11-24T15:30:00+05:30") == ten
	windows.timestamp_ns("2026-11-24T04:31:00-05:29") == ten
	not windows.timestamp_ns("2026-11-24T10:00:00.1234567890Z")
	not windows.timestamp_ns("2026-11-24T10:00:00.Z")
	not windows.timestamp_ns("2026-11-24T10:00:00+05:60")
	not windows.timestamp_ns("2026-11-24T10:00:00+0530")
	not windows.timestamp_ns("2026-11-24T10:00:00Z ")
	not windows.timestamp_ns(" 2026-11-24T10:00:00Z")
	not windows.timestamp_ns("2026-11-24T10:00:00ZZ")
	not windows.timestamp_ns("2026-11-24T1:00:00Z")
	not windows.timestamp_ns("٢٠٢٦-11-24T10:00:00Z")
}
