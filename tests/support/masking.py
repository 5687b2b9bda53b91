"""Finding phone numbers written in clear in logs: every spelling of a number a log line might
hold (E.164, without "+", national, international with spaces, the bare significant digits)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

import phonenumbers


def spellings(e164: str) -> set[str]:
    parsed = phonenumbers.parse(e164)
    national = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.NATIONAL)
    international = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.INTERNATIONAL)
    significant = phonenumbers.national_significant_number(parsed)
    return {e164, e164[1:], national, national.replace(" ", ""), international, significant}


def leaks(logs: Mapping[str, str], numbers: Iterable[str]) -> list[str]:
    """`file: spelling` for each spelling of each number found (not inside a longer digit run)
    in the text of each log file."""
    return [
        f"{name}: {spelling}"
        for name, body in logs.items()
        for number in numbers
        for spelling in spellings(number)
        if re.search(rf"(?<!\d){re.escape(spelling)}(?!\d)", body)
    ]
