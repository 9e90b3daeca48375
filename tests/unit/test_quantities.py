from decimal import Decimal

import pytest

from vastmarket.quantities import (
    parse_bool, parse_fraction, parse_mbps, parse_price, parse_quantity, parse_size_gb,
)


@pytest.mark.parametrize("text, gb", [("12", 12.0), ("12GB", 12.0), ("12 gb", 12.0), ("12G", 12.0),
                                       ("500MB", 0.5), ("1TB", 1000.0), (8, 8.0)])
def test_sizes_are_read_in_gb_of_1000_mb(text, gb):
    assert parse_size_gb(text) == pytest.approx(gb)


def test_binary_sizes_convert_to_decimal_gb():
    assert parse_size_gb("12Gi") == pytest.approx(12.884901888)


@pytest.mark.parametrize("parser, bad", [
    (parse_size_gb, "twelve"), (parse_size_gb, "-1"), (parse_size_gb, True),
    (parse_price, "0"), (parse_price, "-0.5"), (parse_price, "1e-310"), (parse_price, "0.00009"), (parse_price, "cheap"), (parse_price, "nan"),
    (parse_fraction, "95"), (parse_fraction, "1.5"), (parse_fraction, "abc%"),
    (parse_mbps, "fast"), (parse_bool, "maybe"),
])
def test_malformed_values_raise_value_error_with_the_accepted_form(parser, bad):
    with pytest.raises(ValueError, match=r"such as|true or false"):
        parser(bad)


@pytest.mark.parametrize("text, value", [("0.50", 0.5), ("$0.50", 0.5), ("0.5/h", 0.5), (1, 1.0), ("0.0001", 0.0001)])
def test_prices_accept_a_dollar_sign_and_an_hour_suffix(text, value):
    assert parse_price(text) == value


@pytest.mark.parametrize("text, value", [("0.95", 0.95), ("95%", 0.95), ("100%", 1.0), (0.9, 0.9)])
def test_reliability_is_a_fraction_or_a_percentage(text, value):
    assert parse_fraction(text) == pytest.approx(value)


def test_bandwidth_accepts_gbps():
    assert parse_mbps("1Gbps") == 1000.0
    assert parse_mbps("200 Mbps") == 200.0


@pytest.mark.parametrize("text, value", [
    ("500m", Decimal("0.5")), ("2", Decimal(2)), ("16Gi", Decimal(16 * 2**30)), ("1G", Decimal(10**9)),
    ("1e3", Decimal(1000)), (3, Decimal(3)), ("7Ei", Decimal(7 * 2**60)), (2**63 - 1, Decimal(2**63 - 1)),
    (0.25, Decimal("0.25")), ("1e-40", Decimal("1e-40")),
])
def test_kubernetes_quantities_parse_like_the_api_server(text, value):
    assert parse_quantity(text) == value


@pytest.mark.parametrize("bad", ["1.2.3", "16GB", "abc", "", [], {}, None, True, float("nan"), float("inf"), "NaN",
                                 "1e99999999999", "9e999999", "1e-41", "8Ei", 2**63, -(2**63), 1e19, "9" * 20])
def test_malformed_kubernetes_quantities_are_refused(bad):
    with pytest.raises(ValueError):
        parse_quantity(bad)
