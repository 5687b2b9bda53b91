"""Phone numbers: parse and validate to E.164, mask for output and logs.

Everything here is pure: `phonenumbers` metadata in, values out. Intake normalises every number
once (`normalize`); from then on the system only handles E.164 strings. Anything that leaves the
process (results, logs, events) carries `mask(...)` instead of the number, and the log filter runs
`mask_numbers_in_text` over each formatted line as a last line of defence.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumberType, ValidationResult
from phonenumbers import timezone as phone_timezone

from dialer.errors import DialerError

__all__ = [
    "InvalidPhoneNumber",
    "PhoneNumber",
    "mask",
    "mask_numbers_in_text",
    "normalize",
]

_EXAMPLE = "give it in E.164, e.g. +32470123456"
_UNKNOWN_ZONE = "Etc/Unknown"
# `region_code_for_number` answers "001" for non-geographic numbers (+800, +882, ...).
_NON_GEOGRAPHIC = {"001", "ZZ"}
# Numbers the caller pays a premium to reach. A candidate's own phone is never one of these, and
# dialling them is how toll fraud (IRSF) turns a hijacked job queue into money: refuse them.
_REFUSED_TYPES = {
    PhoneNumberType.PREMIUM_RATE: "a premium-rate number",
    PhoneNumberType.SHARED_COST: "a shared-cost number",
}


class InvalidPhoneNumber(DialerError, ValueError):
    """The number cannot be dialled. The message says why and what to send instead."""


@dataclass(frozen=True)
class PhoneNumber:
    """A validated number.

    `region` is the ISO 3166 country the number belongs to (None for non-geographic numbers such
    as +800); `timezones` are the IANA zones `phonenumbers` associates with it, possibly several
    (a +1 800 number maps to every NANP zone) and possibly none.
    """

    e164: str
    region: str | None
    timezones: tuple[str, ...]


# ---------------------------------------------------------------------------------------------
# Parsing
# ---------------------------------------------------------------------------------------------


def normalize(raw: str, region: str | None = None) -> PhoneNumber:
    """Parse `raw` (E.164, international, or national with `region`) into a valid E.164 number.

    A leading "00" is read as the international prefix when no region is given (the prefix used
    across Europe); with a region, `phonenumbers` applies that region's own dialling rules.
    Letters are refused rather than read as a keypad word: a screening list holds people's phones,
    and "1-800-FLOWERS" is a data-entry error there.
    """
    text = raw.strip()
    region = region.strip().upper() if region else None
    if not text:
        raise InvalidPhoneNumber(f"phone number is empty: {_EXAMPLE}")
    if region is not None and region not in phonenumbers.SUPPORTED_REGIONS:
        raise InvalidPhoneNumber(
            f"unknown region {region!r}: use a two-letter ISO country code such as 'BE', or "
            f"{_EXAMPLE}"
        )
    if any(ch.isalpha() for ch in text):
        raise InvalidPhoneNumber(f"{_what(text)} contains letters: {_EXAMPLE}")
    if region is None and text.startswith("00"):
        text = "+" + text[2:]
    parsed = _parse(text, region)
    _require_possible(parsed, region)
    number_region = _region_of(parsed)
    if not phonenumbers.is_valid_number(parsed):
        where = f"for {number_region}" if number_region else "anywhere"
        raise InvalidPhoneNumber(
            f"{_what(text)} is not a valid number {where}: check the digits, {_EXAMPLE}"
        )
    refused = _REFUSED_TYPES.get(phonenumbers.number_type(parsed))
    if refused is not None:
        raise InvalidPhoneNumber(
            f"{_what(text)} is {refused}: the dialer does not call numbers that charge the caller; "
            "give the candidate's own phone number"
        )
    e164 = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
    zones = tuple(z for z in phone_timezone.time_zones_for_number(parsed) if z != _UNKNOWN_ZONE)
    return PhoneNumber(e164=e164, region=number_region, timezones=zones)


def _parse(text: str, region: str | None) -> phonenumbers.PhoneNumber:
    try:
        return phonenumbers.parse(text, region)
    except NumberParseException as exc:
        raise InvalidPhoneNumber(_parse_problem(text, region, exc.error_type)) from None


def _parse_problem(text: str, region: str | None, error_type: int) -> str:
    shown = _what(text)
    if error_type == NumberParseException.INVALID_COUNTRY_CODE:
        if region is None and not text.startswith("+"):
            return (
                f"{shown} is a national number without a region: {_EXAMPLE}, or set region "
                "(e.g. 'BE')"
            )
        return f"{shown} starts with an unknown country code: {_EXAMPLE}"
    if error_type == NumberParseException.NOT_A_NUMBER:
        return f"{shown} is not a phone number (no digits where digits belong): {_EXAMPLE}"
    if error_type == NumberParseException.TOO_LONG:
        return f"{shown} has too many digits: {_EXAMPLE}"
    return f"{shown} has too few digits: {_EXAMPLE}"


def _require_possible(parsed: phonenumbers.PhoneNumber, region: str | None) -> None:
    reason = phonenumbers.is_possible_number_with_reason(parsed)
    shown = _what(phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164))
    where = _region_of(parsed) or region or "its country"
    if reason == ValidationResult.TOO_SHORT:
        raise InvalidPhoneNumber(f"{shown} is too short for {where}: check for missing digits")
    if reason == ValidationResult.TOO_LONG:
        raise InvalidPhoneNumber(f"{shown} is too long for {where}: check for extra digits")
    if reason == ValidationResult.INVALID_LENGTH:
        raise InvalidPhoneNumber(f"{shown} has the wrong number of digits for {where}")
    if reason == ValidationResult.INVALID_COUNTRY_CODE:
        raise InvalidPhoneNumber(f"{shown} starts with an unknown country code: {_EXAMPLE}")
    if reason == ValidationResult.IS_POSSIBLE_LOCAL_ONLY:
        raise InvalidPhoneNumber(
            f"{shown} lacks its area code: give the full number, e.g. in E.164 as +12125550123"
        )


def _what(text: str) -> str:
    """How error messages name the number: masked, since they end up in logs and reject lists."""
    shown = mask(text)
    return f"phone number {shown}" if shown else "phone number"


def _region_of(parsed: phonenumbers.PhoneNumber) -> str | None:
    code = phonenumbers.region_code_for_number(parsed)
    return None if code is None or code in _NON_GEOGRAPHIC else code


# ---------------------------------------------------------------------------------------------
# Masking
# ---------------------------------------------------------------------------------------------

_VISIBLE_TAIL = 3
# Never show the tail unless at least this many subscriber digits stay hidden.
_MIN_HIDDEN = 4


def mask(e164_or_raw: str) -> str:
    """Mask a number for output: "+32470123789" becomes "+32******789" (same length).

    The country code and the last three digits stay, so a recruiter can still tell calls apart.

    Only digits are kept in the output (formatting is dropped). Without a leading "+" (or "00")
    there is no reliable country code, so every digit but the tail is starred. Short or odd input
    shows fewer tail digits, so the whole number is never returned: at least four digits after the
    country code are always hidden (or all of them, when there are fewer than that).
    """
    text = e164_or_raw.strip()
    digits = "".join(ch for ch in text if ch.isdigit())
    if not digits:
        return ""
    international = text.startswith("+") or (text.startswith("00") and len(digits) > 2)
    prefix = ""
    if international:
        if not text.startswith("+"):
            digits = digits[2:]
        cc = _country_code_prefix(digits)
        prefix = "+" + cc
        digits = digits[len(cc) :]
    tail = min(_VISIBLE_TAIL, max(0, len(digits) - _MIN_HIDDEN))
    visible = digits[len(digits) - tail :] if tail else ""
    return prefix + "*" * (len(digits) - tail) + visible


def _country_code_prefix(digits: str) -> str:
    """The leading 1-3 digits that form an assigned country calling code ("" if none).

    ITU country codes are a prefix code, so at most one length matches.
    """
    for length in (1, 2, 3):
        head = digits[:length]
        if len(head) == length and int(head) in phonenumbers.COUNTRY_CODE_TO_REGION_CODE:
            return head
    return ""


# Tokens in log lines that contain digit runs but are not phone numbers. They are matched first
# (at the same position, regex alternation prefers the earlier branch) and left as they are.
_DATE = r"(?:19|20)\d\d-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12]\d|3[01])(?![.\-/]?\d)"
_DAY = r"(?:0?[1-9]|[12]\d|3[01])"
_DMY_DATE = rf"{_DAY}[./-]{_DAY}[./-](?:19|20)\d\d(?![.\-/]?\d)"  # also US month/day/year
_YMD_SLASH = r"(?:19|20)\d\d[./](?:0?[1-9]|1[0-2])[./](?:0?[1-9]|[12]\d|3[01])(?![.\-/]?\d)"
_TIME = r"\d{1,2}:\d\d(?::\d\d)?(?:[.,]\d{1,9})?(?:Z|[+-]\d\d:?\d\d)?"
_UUID = r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}"
_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
_IPV4 = rf"{_OCTET}(?:\.{_OCTET}){{3}}(?::\d{{1,5}})?(?![.\-]?\d)"
_HEX_ID = r"(?<![\w-])(?=[0-9a-fA-F]*[a-fA-F])[0-9a-fA-F]{16,}(?!\w)"
_COMPACT_ISO = r"(?:19|20)\d{6}T\d{4,6}(?:[.,]\d{1,9})?(?:Z|[+-]\d{4})?(?!\w)"
# Decimals ("0.0123456s", "1712345678.25"): national numbers start with 0, floats do not
# (except "0.").
_DECIMAL = r"(?:0|[1-9]\d{0,9})\.\d+(?![ .\-/(]?\d)"
# Identifiers that start with a letter or "_", possibly joined by "-" or "." (call ids, room
# names, logger names, versions): kept, except for digit runs inside them long enough to be a
# number (see `_IDENTIFIER_NUMBER_DIGITS`).
_IDENTIFIER = r"(?<![\w+])[A-Za-z_]\w*(?:[-.]\w+)*"
_PROTECTED = "|".join(
    f"(?:{p})"
    for p in (_UUID, _COMPACT_ISO, _DATE, _YMD_SLASH, _DMY_DATE, _IPV4, _TIME, _HEX_ID, _DECIMAL)
)

# A phone-looking run: optional "+", digit groups separated by one space, dot, dash or slash,
# with optional parentheses, e.g. "+32 (0)470 12.34.56", "(030) 1234-5678", "0470/12 34 56".
# A group that starts an ISO date or a clock time ends the run, so "call 7 2026-03-04" keeps
# its date.
_SEP = r"(?:\)?[ .\-/]\(?|\)\(?|\()"
_NOT_TOKEN = r"(?!(?:19|20)\d\d-[01]\d-[0-3]\d|\d{1,2}:\d\d)"
_PHONE = rf"(?:\+ ?)?\(?\d+(?:{_SEP}{_NOT_TOKEN}\d+)*"

_SCAN = re.compile(
    rf"(?P<protected>{_PROTECTED})|(?P<identifier>{_IDENTIFIER})|(?P<phone>{_PHONE})"
)
_RUN_IN_IDENTIFIER = re.compile(r"\d+(?:[ .\-/]\d+)*")

# Shorter digit runs are left alone: times, ports, counts, short ids.
_MIN_PHONE_DIGITS = 7
# Inside an identifier ("call-2026-0001") only runs this long are masked: long enough for any
# national number with its trunk prefix in the countries this dialer serves, short enough that
# dates and counters inside call ids stay readable.
_IDENTIFIER_NUMBER_DIGITS = 9


def mask_numbers_in_text(text: str) -> str:
    """Replace every phone-number-looking run of 7+ digits in `text` with its `mask`.

    This backs the log filter, so it errs towards masking: any 7+ digit run written with the usual
    phone separators is masked, even when it is really an order number or a Unix timestamp. Left
    as they are: ISO dates and times, UUIDs, IPv4 addresses and ports, long hex ids, decimals, and
    identifiers such as call ids (unless they embed a run of 9+ digits, which is masked in place).
    """
    return _SCAN.sub(_replace, text)


def _replace(match: re.Match[str]) -> str:
    token = match.group(0)
    if match.group("protected") is not None:
        return token
    if match.group("identifier") is not None:
        return _RUN_IN_IDENTIFIER.sub(_mask_identifier_run, token)
    if _digit_count(token) < _MIN_PHONE_DIGITS:
        return token
    return mask(token)


def _mask_identifier_run(match: re.Match[str]) -> str:
    run = match.group(0)
    if _digit_count(run) < _IDENTIFIER_NUMBER_DIGITS:
        return run
    return mask(run)


def _digit_count(text: str) -> int:
    return sum(ch.isdigit() for ch in text)
