import pytest

from worker.redact import redact


@pytest.mark.parametrize(("text", "expected"), [
    ("mail me at jane.doe+x@example.co.uk please", "mail me at [EMAIL] please"),
    ("card 4111 1111 1111 1111 expires soon", "card [CARD] expires soon"),
    ("card 4111-1111-1111-1111", "card [CARD]"),
    ("call +44 20 7946 0958 or (415) 555-2671", "call [PHONE] or [PHONE]"),
    ("my number is 01223 812660", "my number is [PHONE]"),
])
def test_personal_data_is_redacted(text, expected):
    assert redact(text) == expected


@pytest.mark.parametrize("text", [
    "Your reference number is JP761RJS.",
    "A table for 2 at 19:45 on 2026-11-25, booking 4111111111111112 failed",  # not Luhn
    "The train leaves at 10:15 and costs 23.60 pounds.",
    "postcode cb41xa",
])
def test_ordinary_text_is_left_alone(text):
    assert redact(text) == text
