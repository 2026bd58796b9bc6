# Non-negative decimal amounts as whole thousandths, so that they compare exactly.
#
# A string must be digits, optionally a dot and one to three more digits: "1500",
# "1500.5", "1500.50". Signs, exponents, spaces, separators and more than 12 integer
# digits are refused (undefined), never guessed at. Integers stay below 2^53, so the
# arithmetic is exact. regorus stops the whole evaluation on a string to_number cannot
# read (even "007"), hence the checks before every call.
# A JSON number (data written by hand) is accepted too and rounded to thousandths.
package chaperone.lib.decimal

thousandths(text) := (integer(whole) * 1000) + integer(padded) if {
	is_string(text)
	pieces := split(text, ".")
	whole := pieces[0]
	digits(whole)
	count(whole) <= 12
	padded := fraction(pieces)
}

thousandths(number) := round(number * 1000) if {
	is_number(number)
	number >= 0
	number < 1000000000000
}

digits(text) if {
	text != ""
	trim(text, "0123456789") == ""
}

# The fraction padded to three digits: "5" gives "500".
fraction(pieces) := "000" if count(pieces) == 1

fraction(pieces) := concat("", [f, substring("000", 0, 3 - count(f))]) if {
	count(pieces) == 2
	f := pieces[1]
	digits(f)
	count(f) <= 3
}

# Digits to a number; leading zeros stripped first (to_number refuses them).
integer(text) := 0 if trim_left(text, "0") == ""

integer(text) := to_number(stripped) if {
	stripped := trim_left(text, "0")
	stripped != ""
}
