package chaperone.lib.decimal_test

import data.chaperone.lib.decimal

test_plain_and_fractional_amounts if {
	decimal.thousandths("1500") == 1500000
	decimal.thousandths("1500.5") == 1500500
	decimal.thousandths("1500.50") == 1500500
	decimal.thousandths("1500.505") == 1500505
	decimal.thousandths("0.01") == 10
	decimal.thousandths("0") == 0
}

test_leading_zeros_read_as_the_same_amount if {
	decimal.thousandths("001500.00") == 1500000
	decimal.thousandths("000") == 0
}

test_equal_amounts_written_differently_compare_equal if {
	decimal.thousandths("1500") == decimal.thousandths("1500.000")
	decimal.thousandths("999.99") < decimal.thousandths("1000")
	decimal.thousandths("1000.001") > decimal.thousandths("1000")
}

test_twelve_integer_digits_stay_exact if {
	decimal.thousandths("999999999999.999") == 999999999999999
	decimal.thousandths("999999999999.999") != decimal.thousandths("999999999999.998")
}

test_refused_spellings if {
	not decimal.thousandths("")
	not decimal.thousandths("-5")
	not decimal.thousandths("+5")
	not decimal.thousandths("1e3")
	not decimal.thousandths("1,500.00")
	not decimal.thousandths(" 1500")
	not decimal.thousandths("1500.")
	not decimal.thousandths(".5")
	not decimal.thousandths("1.2.3")
	not decimal.thousandths("1500.0001")
	not decimal.thousandths("1000000000000")
	not decimal.thousandths("NaN")
	not decimal.thousandths("0x10")
	not decimal.thousandths(null)
}

test_json_numbers if {
	decimal.thousandths(1000) == 1000000
	decimal.thousandths(1000.5) == 1000500
	decimal.thousandths(0.1) == 100
	not decimal.thousandths(-1)
}
