"""The API's edge: protocol values are taken only in their one written form, and every answer under
/api/ is JSON in the API's error shape, even for a path that matches nothing."""

from __future__ import annotations

import pytest
from django.test import Client
from rest_framework.exceptions import ValidationError

from channels_app.api.fields import AddressField, HexBytesField, WeiField

ADDRESS = "0x00000000000000000000000000000000000000aB"


@pytest.mark.parametrize(
    "raw",
    [
        5,  # a JSON number: a JavaScript client's doubles would round amounts above 2^53 unnoticed
        5.0,
        True,
        None,
        "",
        " 5",
        "5 ",
        "05",
        "-1",
        "1e18",
        "\u0663",  # ARABIC-INDIC DIGIT THREE: a digit to str.isdigit, and int() reads it as 3
        str(2**256),
    ],
)
def test_an_amount_is_refused_unless_it_is_a_plain_decimal_string_below_2_to_the_256(raw):
    with pytest.raises(ValidationError):
        WeiField().run_validation(raw)


def test_amounts_in_their_written_form_are_taken_whole():
    assert [WeiField().run_validation(raw) for raw in ("0", "7", str(2**256 - 1))] == [0, 7, 2**256 - 1]


@pytest.mark.parametrize(
    ("field", "raw"),
    [
        (AddressField(), f" {ADDRESS}"),
        (AddressField(), f"{ADDRESS}\n"),
        (HexBytesField(length=2), "0xabcd "),
        (HexBytesField(length=2), " 0xabcd"),
        (HexBytesField(length=2), "0xab  cd"),  # bytes.fromhex skips inner whitespace: once taken
    ],
)
def test_protocol_values_with_surrounding_whitespace_are_refused_not_trimmed(field, raw):
    with pytest.raises(ValidationError):
        field.run_validation(raw)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/api/no/such/endpoint"),
        ("get", "/api/transfers/%C2%84"),  # a payment id that is not hex: no route matches
        ("get", "/api/transfers/%0A%27"),  # a newline, which `.` does not match
        ("post", "/api/transfers/%C2%84/cancel"),  # a POST: not Django's CSRF page either
        ("post", "/api/channel/updates/extra"),
    ],
)
def test_a_path_under_the_api_that_matches_nothing_is_a_json_404(method, path):
    response = getattr(Client(enforce_csrf_checks=True), method)(path)

    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert response.json()["error"]["code"] == "not_found"
