"""Phone numbers: E.164 normalisation with clear refusals, and masking for output and logs."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dialer.errors import DialerError
from dialer.phone import InvalidPhoneNumber, PhoneNumber, mask, mask_numbers_in_text, normalize

# ---------------------------------------------------------------------------------------------
# normalize
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "region", "e164", "country", "zones"),
    [
        ("+32470123456", None, "+32470123456", "BE", ("Europe/Brussels",)),
        ("+32 470 12 34 56", None, "+32470123456", "BE", ("Europe/Brussels",)),
        ("0470 12 34 56", "BE", "+32470123456", "BE", ("Europe/Brussels",)),
        ("0470/12.34.56", "be", "+32470123456", "BE", ("Europe/Brussels",)),
        ("0032 470 12 34 56", None, "+32470123456", "BE", ("Europe/Brussels",)),
        ("02 511 22 33", "BE", "+3225112233", "BE", ("Europe/Brussels",)),
        ("+31 6 12345678", None, "+31612345678", "NL", ("Europe/Amsterdam",)),
        ("06-12345678", "NL", "+31612345678", "NL", ("Europe/Amsterdam",)),
        ("06 12 34 56 78", "FR", "+33612345678", "FR", ("Europe/Paris",)),
        ("+33 1 23 45 67 89", None, "+33123456789", "FR", ("Europe/Paris",)),
        ("01512 3456789", "DE", "+4915123456789", "DE", ("Europe/Berlin",)),
        ("030 1234567", "DE", "+49301234567", "DE", ("Europe/Berlin",)),
        ("(212) 555-0123", "US", "+12125550123", "US", ("America/New_York",)),
        ("+1 212-555-0123", None, "+12125550123", "US", ("America/New_York",)),
        ("020 7946 0958", "GB", "+442079460958", "GB", ("Europe/London",)),
        ("07400 123456", "GB", "+447400123456", "GB", None),
    ],
)
def test_valid_numbers_normalise_to_e164(
    raw: str, region: str | None, e164: str, country: str, zones: tuple[str, ...] | None
) -> None:
    number = normalize(raw, region)
    assert number == PhoneNumber(e164=e164, region=country, timezones=number.timezones)
    if zones is not None:
        assert number.timezones == zones
    assert "Etc/Unknown" not in number.timezones


def test_e164_input_ignores_the_region_hint() -> None:
    assert normalize("+32470123456", "NL").e164 == "+32470123456"


def test_number_spanning_many_zones_keeps_them_all() -> None:
    number = normalize("+1 800 555 1234")
    assert number.region == "US"
    assert {"America/New_York", "America/Los_Angeles", "Pacific/Honolulu"} <= set(number.timezones)


def test_non_geographic_number_has_no_region_and_no_zone() -> None:
    number = normalize("+800 1234 5678")
    assert number.region is None
    assert number.timezones == ()


@pytest.mark.parametrize(
    ("raw", "region", "reason"),
    [
        ("0470123456", None, r"national number without a region: give it in E\.164.*set region"),
        ("", None, "empty"),
        ("   ", None, "empty"),
        ("hello", None, "contains letters"),
        ("+32 470 CALL ME", None, "contains letters"),
        ("1-800-FLOWERS", "US", "contains letters"),
        ("+3247", None, "too short"),
        ("12", "BE", "too short"),
        ("+32 470 12 34 56 78 90", None, "too long"),
        ("+999 123 456 789", None, "unknown country code"),
        ("0470 12 34 56", "XX", "unknown region 'XX'"),
        ("+32 123 45 67 89", None, "not a valid number for BE"),
        ("555-0123", "US", "lacks its area code"),
        ("++--", None, "not a phone number|too few digits"),
        ("0900 12 345", "BE", "premium-rate"),
        ("+33 8 91 12 34 56", None, "premium-rate"),
        ("+44 901 234 5678", None, "premium-rate"),
        ("+1 900 234 5678", None, "premium-rate"),
        ("+33 8 84 01 23 45", None, "shared-cost"),
        ("0180 1 2345", "DE", "shared-cost"),
    ],
)
def test_invalid_numbers_are_refused_with_a_reason(
    raw: str, region: str | None, reason: str
) -> None:
    with pytest.raises(InvalidPhoneNumber, match=reason) as info:
        normalize(raw, region)
    assert isinstance(info.value, ValueError) and isinstance(info.value, DialerError)


def test_refusals_never_echo_the_full_number() -> None:
    for raw, region in [("0471987654", None), ("+32 123 98 76 54", None), ("0900 98 765", "BE")]:
        with pytest.raises(InvalidPhoneNumber) as info:
            normalize(raw, region)
        digits = re.sub(r"\D", "", raw)
        assert digits[-7:] not in re.sub(r"\D", "", str(info.value))


# ---------------------------------------------------------------------------------------------
# mask
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "masked"),
    [
        ("+32470123789", "+32******789"),
        ("+31612345678", "+31******678"),
        ("+12125550123", "+1*******123"),
        ("+442079460958", "+44*******958"),
        ("+4915123456789", "+49********789"),
        ("+8801812345678", "+880*******678"),  # three-digit country code
        ("0032470123789", "+32******789"),
        ("+32 470 12 37 89", "+32******789"),
        ("0470 12 37 89", "*******789"),
        ("+3212", "+32**"),
        ("+32", "+32"),
        ("12345", "****5"),
        ("1234", "****"),
        ("1234567", "****567"),
        ("+", ""),
        ("", ""),
        ("no digits", ""),
    ],
)
def test_mask(raw: str, masked: str) -> None:
    assert mask(raw) == masked


def test_mask_keeps_the_length_of_e164() -> None:
    assert len(mask("+32470123789")) == len("+32470123789")


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="+0123456789 -.()", max_size=24))
def test_mask_never_returns_the_whole_number(raw: str) -> None:
    masked = mask(raw)
    prefix = re.match(r"\+\d*", masked)
    body = masked[prefix.end() :] if prefix else masked
    hidden = body.count("*")
    # Everything after the country code is either starred or one of at most three tail digits,
    # and at least four digits (or all of them, when fewer) stay hidden.
    assert re.fullmatch(r"\**\d{0,3}", body)
    assert hidden >= min(4, len(body))
    assert len(re.sub(r"\D", "", masked)) < len(re.sub(r"\D", "", raw)) or hidden == len(body)


# ---------------------------------------------------------------------------------------------
# mask_numbers_in_text
# ---------------------------------------------------------------------------------------------

LEAKS = [
    ("dialing +32470123456 attempt 1 for call-abc", "+32470123456"),
    ("to=+32 470 12 34 56, from=+3225551234", "+32 470 12 34 56"),
    ("number 0470 12 34 56 busy", "0470 12 34 56"),
    ("number 0470/12.34.56 busy", "0470/12.34.56"),
    ("FR 01.23.45.67.89 no answer", "01.23.45.67.89"),
    ("US (212) 555-0123 declined", "212) 555-0123"),
    ("US +1 (212) 555-0123 declined", "555-0123"),
    ("DE 030/1234567 busy", "1234567"),
    ("BE +32 (0)470 12 34 56", "470 12 34 56"),
    ("sip:+32470123456@10.0.0.12:5060", "32470123456"),
    ("tel:0470123456", "0470123456"),
    ('{"phone_number": "+32470123456", "status": "busy"}', "32470123456"),
    ("phone_number='0032470123456'", "0032470123456"),
    ("room screening-0470123456-1 created", "0470123456"),
    ("callee_0471234567 rang", "0471234567"),
    ("5 0470 12 34 56", "0470 12 34 56"),
    ("+32470123456abc", "32470123456"),
    ("mobile 470.12.34.56", "470.12.34.56"),
    ("US 12.25.2012.555 odd", "12.25.2012.555"),
]


@pytest.mark.parametrize(("line", "number"), LEAKS)
def test_numbers_in_log_lines_are_masked(line: str, number: str) -> None:
    masked = mask_numbers_in_text(line)
    assert number not in masked
    assert "*" in masked


def test_masked_line_keeps_the_country_code_and_tail() -> None:
    line = "2026-03-04 09:00:00,123 INFO dialer.dialing: dialing +32470123456 attempt 1 for c-1"
    assert mask_numbers_in_text(line) == (
        "2026-03-04 09:00:00,123 INFO dialer.dialing: dialing +32******456 attempt 1 for c-1"
    )


UNTOUCHED = [
    "2026-03-04 09:00:00,123 INFO dialer.results: recorded attempt 2 of 3",
    "[2026-03-04 09:00:00,123: INFO/MainProcess] Task dialer.dial[6f1c2e3a-1b2c-4d5e-8f90-123456789012] succeeded in 0.0123456s: None",  # noqa: E501
    "next try at 2026-03-05T08:00:00+00:00 (moved into the calling window)",
    "expires_at=2026-03-06T23:59:59.999999Z",
    "due 2026-03-04T09:00:00.123456+01:00, now 2026-03-04 08:59:59.5",
    "created 20260304T090000Z",
    "uuid 123e4567-e89b-12d3-a456-426614174000 done",
    "uuid 12345678-1234-1234-1234-123456789012 done",
    "redis at 127.0.0.1:6379 db 15, livekit 192.168.100.200:7880, sip 10.0.0.12:5060",
    "trace 4bf92f3577b34da6a3ce929d0e0e4736 span 00f067aa0ba902b7",
    "call_id=cand-2026-0001 attempt=2 campaign=spring_2026 job=job-20260304",
    "dialer v1.2.3 on python 3.11.7, worker pid 123456",
    "scheduled on 04/03/2026 and 04.03.2026 and 2026/03/04 and 12/31/2026",
    "ratio 0.98765432 latency_ms=12.3456789",
    "masked +32******456 stays masked",
]


@pytest.mark.parametrize("line", UNTOUCHED)
def test_log_lines_without_numbers_stay_readable(line: str) -> None:
    assert mask_numbers_in_text(line) == line


def test_masking_is_idempotent() -> None:
    for line, _ in LEAKS:
        once = mask_numbers_in_text(line)
        assert mask_numbers_in_text(once) == once


def test_some_long_digit_runs_that_are_not_phones_are_masked_and_that_is_accepted() -> None:
    # Unix timestamps and long order numbers look like numbers; masking them is the safe side.
    assert mask_numbers_in_text("ts=1772614800") == "ts=*******800"


@settings(max_examples=200, deadline=None)
@given(
    number=st.sampled_from(
        ["+32470123456", "+31612345678", "+33612345678", "+4915123456789", "+12125550123"]
    ),
    style=st.sampled_from(["e164", "spaced", "dashed", "dotted", "national"]),
    before=st.sampled_from(["", " ", "to=", "tel:", "phone ", "(", '"', "[", "number: "]),
    after=st.sampled_from(["", " ", ",", ")", '"', "]", "@trunk", " attempt 2", ";"]),
)
def test_formatted_numbers_never_survive(number: str, style: str, before: str, after: str) -> None:
    cc = "1" if number.startswith("+1") else number[1:3]
    nsn = number[1 + len(cc) :]
    groups = [nsn[i : i + 2] for i in range(0, len(nsn), 2)]
    rendered = {
        "e164": number,
        "spaced": f"+{cc} " + " ".join(groups),
        "dashed": f"+{cc}-" + "-".join(groups),
        "dotted": f"+{cc}." + ".".join(groups),
        "national": "0" + " ".join(groups),
    }[style]
    masked = mask_numbers_in_text(f"{before}{rendered}{after}")
    assert nsn[-7:] not in re.sub(r"\D", "", masked)
