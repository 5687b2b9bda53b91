"""Languages: choosing and following the call's language, the 32-language table and its docs,
and the localised templates (complete, same placeholders in every language)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from agent import templates
from agent.languages import (
    LANGUAGES,
    MULTI_LANGUAGES,
    SUPPORTED_LANGUAGES,
    LanguageFollower,
    choose_language,
    language_for_phone,
    normalize_language,
)

ROOT = Path(__file__).resolve().parents[2]


def test_thirty_two_languages_each_with_stt_and_tts_settings() -> None:
    assert len(SUPPORTED_LANGUAGES) == 32
    for code, lang in LANGUAGES.items():
        assert lang.code == code
        assert lang.stt_model in ("nova-3", "nova-2")
        assert lang.stt_language == ("multi" if code in MULTI_LANGUAGES else code)
        assert lang.tts_model == "sonic-3"
        assert lang.cartesia_language == code
    assert set(SUPPORTED_LANGUAGES) >= MULTI_LANGUAGES
    assert {"nl", "fr", "en", "de"} <= templates.TEMPLATED_LANGUAGES


def test_docs_list_exactly_the_supported_languages() -> None:
    doc = (ROOT / "docs" / "LANGUAGES.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| `([a-z]{2})` \|", doc, flags=re.MULTILINE)
    assert sorted(rows) == sorted(SUPPORTED_LANGUAGES)
    for code, lang in LANGUAGES.items():
        row = next(line for line in doc.splitlines() if line.startswith(f"| `{code}` |"))
        assert lang.stt_model in row and f"`{lang.stt_language}`" in row


@pytest.mark.parametrize(
    ("request_language", "dial_language", "phone", "expected"),
    [
        ("fr", "nl", "+32470123789", "fr"),  # the request wins
        ("nl-BE", None, None, "nl"),
        (None, "de", "+32470123789", "de"),  # then the dial context
        (None, None, "+32470123789", "nl"),  # then the phone's country
        (None, None, "+33612345678", "fr"),
        (None, None, "+4915112345678", "de"),
        (None, None, "+447400123456", "en"),
        (None, None, "+48512345678", "pl"),
        ("xx", None, "+6591234567", "en"),  # unknown language, Singapore -> English
        (None, None, "+2348031234567", "en"),
        (None, None, "not a number", "en"),  # else English
        (None, None, None, "en"),
    ],
)
def test_choose_language(
    request_language: str | None, dial_language: str | None, phone: str | None, expected: str
) -> None:
    assert choose_language(request_language, dial_language, phone) == expected


def test_normalize_language() -> None:
    assert normalize_language("NL_be") == "nl"
    assert normalize_language("nb") == "no"
    assert normalize_language("xx") is None
    assert normalize_language(None) is None
    assert language_for_phone("+81312345678") == "ja"


def test_follower_switches_on_a_real_sentence_in_another_language() -> None:
    follower = LanguageFollower("nl")
    assert follower.observe("nl", "ja dat klopt helemaal") is None
    assert follower.observe("en", "ok") is None  # one word says little
    assert follower.observe("xx", "some words in a language we do not support") is None
    assert follower.observe(None, "no language label at all here") is None
    assert follower.observe("en", "sorry I only speak English") == "en"
    assert follower.current == "en"
    assert follower.observe("en-US", "yes I have three years of experience") is None
    assert follower.observe("fr-FR", "oui j'ai de l'expérience") == "fr"


def test_every_templated_language_has_every_key_with_the_same_placeholders() -> None:
    english = templates.TEMPLATES["en"]
    assert set(english) == set(templates.TEMPLATE_KEYS)
    for lang, table in templates.TEMPLATES.items():
        assert set(table) == set(templates.TEMPLATE_KEYS), lang
        for key, text in table.items():
            assert text.strip(), (lang, key)
            assert templates.placeholders(text) == templates.placeholders(english[key]), (
                lang,
                key,
            )


def test_fixed_wording_that_matters_is_localised() -> None:
    params = {"name": "Mark", "job_title": "Bakker"}
    disclosure = {lang: templates.render(lang, "ai_disclosure")[0] for lang in ("nl", "fr", "de")}
    assert disclosure == {
        "nl": "Ik ben een AI-assistent, geen mens.",
        "fr": "Je suis un assistant d'intelligence artificielle, pas une personne.",
        "de": "Ich bin ein KI-Assistent, kein Mensch.",
    }
    for lang in ("nl", "fr", "en", "de"):
        voicemail, written_in = templates.render(lang, "voicemail_named", **params)
        assert written_in == lang and "Mark" in voicemail and "Bakker" in voicemail
    consent, written_in = templates.render("pl", "consent_question")
    assert written_in == "pl" and consent != templates.render("en", "consent_question")[0]


def test_join_options_uses_the_languages_or() -> None:
    assert templates.join_options("nl", ["ma", "di", "wo"]) == "ma, di of wo"
    assert templates.join_options("de", ["Mo", "Di"]) == "Mo oder Di"
    assert templates.join_options("fr", ["lundi"]) == "lundi"
    assert templates.join_options("pl", ["a", "b"]) == "a lub b"
    assert templates.join_options("en", []) == ""
