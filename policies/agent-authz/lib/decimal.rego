# Non-negative decimal amounts as whole thousandths, so that they compare exactly.
#
# A string must be digits, optionally a dot and one to three more digits: "1500",
# "1500.5", "1500.50". Signs, exponents, spaces, separators and more than 12 integer
# digits are refused (undefined), never guessed at. Integers stay below 2^53, so the
# arithmetic is exact. regorus stops the whole evaluation on a string to_number cannot
# read (even "007"), hence the checks before every call.
# A JSON number (data written by hand) is accepted too and rounded to thousandths.
package chaperone.lib.decimal

thousandths(amount) := integer(concat("", [whole, padded])) if {
	is_string(amount)
	pieces := split(amount, ".")
	n := count(pieces)
	whole := pieces[0]
	digits(whole)
	count(whole) <= 12

	# No fraction, or one to three digits after the dot: padded to three ("5" gives "500").
	fraction := concat("", array.slice(pieces, 1, n))
	[n, fraction == ""] in {[1, true], [2, false]}
	trim(fraction, "0123456789") == ""
	count(fraction) <= 3
	padded := substring(concat("", [fraction, "000"]), 0, 3)
} else := round(amount * 1000) if {
	is_number(amount)
	amount >= 0
	amount < 1000000000000
}

digits(text) if {
	text != ""
	trim(text, "0123456789") == ""
}

# Digits to a number; leading zeros stripped first (to_number refuses them). The whole
# part and the padded fraction are read as one number of thousandths.
integer(text) := to_number(stripped) if {
	stripped := trim_left(text, "0")
	stripped != ""
} else := 0
