"""Fixed wording of the screening call, localised. Pure Python: no LiveKit imports.

The sentences that matter legally or for the candidate's trust (AI disclosure, recording-consent
notice, voicemail message) and the structural ones (greeting, re-ask, other vacancies, scheduling
confirmation, closings) are spoken from these templates, never improvised by the LLM. Every
supported language has its wording written out in `agent/locales/<code>.json` (one flat JSON
object per language, read and checked once at import; agent/locales/README.md says how to add
one). Only a language without a file falls back to the English template; `render` says which
language the text is in, so the caller knows it needs translating.

Placeholders: {name} {job_title} {slots} {slot} {location} {address} {date}. `list_or` is the
word for "or" in "a, b or c"; a locale may add `list_separator` (default ", ") where items are
not separated by a comma (Chinese and Japanese "、", Thai a space).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from importlib import resources
from importlib.resources.abc import Traversable
from string import Formatter

TEMPLATE_KEYS: tuple[str, ...] = (
    "greeting_named",
    "greeting_generic",
    "greeting_returning",
    "ai_disclosure",
    "consent_question",
    "resume_intro",
    "questions_intro",
    "reask_unclear",
    "off_topic",
    "still_there",
    "escalation_unavailable",
    "other_vacancies",
    "scheduling_offer",
    "scheduling_preference",
    "scheduling_confirm_full",
    "scheduling_confirm_location",
    "scheduling_confirm",
    "preference_noted",
    "existing_booking",
    "closing_completed",
    "closing_alternatives",
    "closing_not_interested",
    "closing_consent_declined",
    "closing_dnc",
    "closing_unclear",
    "closing_irrelevant",
    "closing_silence",
    "closing_time_up",
    "escalation_transfer",
    "escalation_callback",
    "voicemail_named",
    "voicemail_generic",
    "default_open_question",
    "list_or",
)

FALLBACK_LANGUAGE = "en"
LIST_SEPARATOR_KEY = "list_separator"  # optional in a locale file, not a template
DEFAULT_LIST_SEPARATOR = ", "
LOCALES: Traversable = resources.files("agent") / "locales"


class LocaleError(ValueError):
    """A locale file that cannot be used; the message names the file and the key."""


def placeholders(text: str) -> set[str]:
    return {field for _, field, _, _ in Formatter().parse(text) if field}


def load_locales(folder: Traversable) -> tuple[dict[str, dict[str, str]], dict[str, str]]:
    """(templates per language, list separators of the languages that set one) from the
    `<code>.json` files in `folder`. Every file must hold exactly TEMPLATE_KEYS (plus an
    optional `list_separator`), no empty text, and the English placeholders for each key, so
    a broken file stops the import instead of a call."""
    raw = {
        entry.name.removesuffix(".json"): _read_locale(entry)
        for entry in sorted(folder.iterdir(), key=lambda e: e.name)
        if entry.name.endswith(".json")
    }
    if FALLBACK_LANGUAGE not in raw:
        raise LocaleError(f"{FALLBACK_LANGUAGE}.json (the fallback language) is missing")
    for lang, table in raw.items():
        missing = [key for key in TEMPLATE_KEYS if key not in table]
        if missing:
            raise LocaleError(f"{lang}.json: missing key(s) {', '.join(missing)}")
        unknown = sorted(set(table) - {*TEMPLATE_KEYS, LIST_SEPARATOR_KEY})
        if unknown:
            raise LocaleError(f"{lang}.json: unknown key(s) {', '.join(unknown)}")
        for key in TEMPLATE_KEYS:
            if not table[key].strip():
                raise LocaleError(f"{lang}.json: {key} is empty")
        if table.get(LIST_SEPARATOR_KEY) == "":
            raise LocaleError(f"{lang}.json: {LIST_SEPARATOR_KEY} is empty")
    english = {
        key: _placeholders_of(FALLBACK_LANGUAGE, key, raw[FALLBACK_LANGUAGE])
        for key in TEMPLATE_KEYS
    }
    for lang, table in raw.items():
        for key in TEMPLATE_KEYS:
            found = _placeholders_of(lang, key, table)
            if found != english[key]:
                raise LocaleError(
                    f"{lang}.json: {key} has placeholders {sorted(found)}, "
                    f"the English template has {sorted(english[key])}"
                )
    templates = {lang: {key: table[key] for key in TEMPLATE_KEYS} for lang, table in raw.items()}
    separators = {
        lang: table[LIST_SEPARATOR_KEY]
        for lang, table in raw.items()
        if LIST_SEPARATOR_KEY in table
    }
    return templates, separators


def _read_locale(entry: Traversable) -> dict[str, str]:
    try:
        data = json.loads(entry.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise LocaleError(f"{entry.name}: not valid UTF-8 JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise LocaleError(f"{entry.name}: must hold one JSON object")
    for key, value in data.items():
        if not isinstance(value, str):
            raise LocaleError(f"{entry.name}: {key} must be a string")
    return data


def _placeholders_of(lang: str, key: str, table: dict[str, str]) -> set[str]:
    try:
        return placeholders(table[key])
    except ValueError as exc:  # a stray "{" or "}"
        raise LocaleError(f"{lang}.json: {key} is not a valid template: {exc}") from exc


TEMPLATES, LIST_SEPARATORS = load_locales(LOCALES)
TEMPLATED_LANGUAGES: frozenset[str] = frozenset(TEMPLATES)


def template_language(language: str) -> str:
    """The language a template for `language` is written in (itself, or English)."""
    return language if language in TEMPLATES else FALLBACK_LANGUAGE


def render(language: str, key: str, **params: str) -> tuple[str, str]:
    """(text, language the text is in). Unknown keys raise KeyError; missing params too."""
    lang = template_language(language)
    return TEMPLATES[lang][key].format(**params), lang


def join_options(language: str, options: Sequence[str]) -> str:
    """ "a, b or c" in the template language ("a、b 或 c" in Chinese)."""
    items = [o.strip() for o in options if o.strip()]
    if len(items) <= 1:
        return items[0] if items else ""
    lang = template_language(language)
    separator = LIST_SEPARATORS.get(lang, DEFAULT_LIST_SEPARATOR)
    return f"{separator.join(items[:-1])} {TEMPLATES[lang]['list_or']} {items[-1]}"
