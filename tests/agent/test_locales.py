"""The written fixed wording in agent/locales: one complete file per supported language, the
English placeholders everywhere, real translations (not English left in place, in the
language's own script), every text renders, lists join per language, a broken file is refused
with a message naming it, and docs/LANGUAGES.md says which languages are written out."""

from __future__ import annotations

import json
import re
import shutil
import unicodedata
from collections.abc import Callable
from pathlib import Path

import pytest

from agent import templates
from agent.languages import SUPPORTED_LANGUAGES

ROOT = Path(__file__).resolve().parents[2]
LOCALES = ROOT / "agent" / "locales"
LEGAL_KEYS = ("ai_disclosure", "consent_question", "voicemail_named", "voicemail_generic")
SAMPLE = {
    "name": "Mark Peeters",
    "job_title": "Bakker",
    "slots": "S-ONE, S-TWO",
    "slot": "S-ONE",
    "location": "Antwerpen",
    "address": "Meir 1",
    "date": "2025-03-04 10:00",
}
# Unicode script names (prefixes of unicodedata.name) of each non-Latin language's letters.
SCRIPTS: dict[str, tuple[str, ...]] = {
    "ru": ("CYRILLIC",),
    "uk": ("CYRILLIC",),
    "bg": ("CYRILLIC",),
    "el": ("GREEK",),
    "hi": ("DEVANAGARI",),
    "ta": ("TAMIL",),
    "bn": ("BENGALI",),
    "th": ("THAI",),
    "ko": ("HANGUL",),
    "ja": ("HIRAGANA", "KATAKANA", "CJK", "IDEOGRAPHIC"),  # 々 is an "ideographic" mark
    "zh": ("CJK",),
}
NON_ENGLISH = [lang for lang in SUPPORTED_LANGUAGES if lang != templates.FALLBACK_LANGUAGE]


def _raw(lang: str) -> dict[str, str]:
    data: dict[str, str] = json.loads((LOCALES / f"{lang}.json").read_text(encoding="utf-8"))
    return data


def _words(text: str) -> list[str]:
    text = re.sub(r"\{[a-z_]+\}", " ", text.lower())
    return re.findall(r"[^\W\d_]+(?:'[^\W\d_]+)?", text)


def _trigrams(text: str) -> set[tuple[str, ...]]:
    words = _words(text)
    return {tuple(words[i : i + 3]) for i in range(len(words) - 2)}


def test_every_supported_language_has_exactly_one_locale_file() -> None:
    files = {path.stem for path in LOCALES.glob("*.json")}
    assert files == set(SUPPORTED_LANGUAGES)
    assert frozenset(SUPPORTED_LANGUAGES) == templates.TEMPLATED_LANGUAGES
    assert all(templates.template_language(lang) == lang for lang in SUPPORTED_LANGUAGES)


@pytest.mark.parametrize("lang", SUPPORTED_LANGUAGES)
def test_locale_file_has_exactly_the_template_keys(lang: str) -> None:
    raw = _raw(lang)
    assert set(raw) - {templates.LIST_SEPARATOR_KEY} == set(templates.TEMPLATE_KEYS)
    assert all(
        isinstance(text, str) and text.strip() for text in templates.TEMPLATES[lang].values()
    )
    assert raw.get(templates.LIST_SEPARATOR_KEY, ", ") != ""
    # What is loaded is what is written.
    assert templates.TEMPLATES[lang] == {key: raw[key] for key in templates.TEMPLATE_KEYS}


@pytest.mark.parametrize("lang", SUPPORTED_LANGUAGES)
def test_every_text_has_the_english_placeholders(lang: str) -> None:
    english = templates.TEMPLATES["en"]
    for key, text in templates.TEMPLATES[lang].items():
        assert templates.placeholders(text) == templates.placeholders(english[key]), (lang, key)


@pytest.mark.parametrize("lang", NON_ENGLISH)
def test_texts_are_translated_not_english(lang: str) -> None:
    english = templates.TEMPLATES["en"]
    table = templates.TEMPLATES[lang]
    for key in templates.TEMPLATE_KEYS:
        assert table[key] != english[key], (lang, key)
        # No run of three English words survives (names and placeholders aside).
        assert not _trigrams(table[key]) & _trigrams(english[key]), (lang, key)
    for key in LEGAL_KEYS:
        assert table[key].strip() != english[key].strip(), (lang, key)


@pytest.mark.parametrize("lang", SUPPORTED_LANGUAGES)
def test_texts_are_in_the_languages_own_script(lang: str) -> None:
    expected = SCRIPTS.get(lang, ("LATIN",))
    text = re.sub(r"\{[a-z_]+\}", " ", " ".join(templates.TEMPLATES[lang].values()))
    # "AI" stays Latin in Japanese and Korean, as it is written there.
    letters = [c for c in re.sub(r"\bAI\b|AI(?=[^\x00-\x7f])", "", text) if c.isalpha()]
    foreign = {c for c in letters if not unicodedata.name(c, "").startswith(expected)}
    assert letters and not foreign, (lang, sorted(foreign))


def test_cyrillic_locales_are_not_swapped() -> None:
    text = {lang: " ".join(templates.TEMPLATES[lang].values()) for lang in ("ru", "uk", "bg")}
    assert set("іїє") & set(text["uk"]) and not set("ыэё") & set(text["uk"])
    assert not set("іїєґ") & set(text["ru"]) and set("ы") & set(text["ru"])
    assert not set("ыэіїє") & set(text["bg"]) and set("ъ") & set(text["bg"])


@pytest.mark.parametrize("lang", SUPPORTED_LANGUAGES)
def test_every_key_renders_in_its_own_language(lang: str) -> None:
    english = templates.TEMPLATES["en"]
    for key in templates.TEMPLATE_KEYS:
        text, written_in = templates.render(lang, key, **SAMPLE)
        assert written_in == lang
        assert "{" not in text and "}" not in text, (lang, key)
        for field in templates.placeholders(english[key]):
            assert SAMPLE[field] in text, (lang, key, field)
    voicemail, _ = templates.render(lang, "voicemail_named", **SAMPLE)
    assert "Mark Peeters" in voicemail and "Bakker" in voicemail


def test_an_unsupported_code_still_falls_back_to_english() -> None:
    assert templates.template_language("xx") == "en"
    assert templates.render("xx", "ai_disclosure") == ("I am an AI assistant, not a person.", "en")
    assert templates.join_options("xx", ["a", "b"]) == "a or b"


def test_written_legal_wording_for_languages_that_used_to_be_translated_at_run_time() -> None:
    assert templates.render("pl", "consent_question")[1] == "pl"
    assert templates.render("es", "ai_disclosure") == (
        "Soy un asistente de inteligencia artificial, no una persona.",
        "es",
    )
    assert (
        templates.render("ja", "ai_disclosure")[0] == "私はAIアシスタントで、人間ではありません。"
    )


@pytest.mark.parametrize("lang", SUPPORTED_LANGUAGES)
def test_join_options_in_every_language(lang: str) -> None:
    word = templates.TEMPLATES[lang]["list_or"]
    separator = templates.LIST_SEPARATORS.get(lang, ", ")
    assert templates.join_options(lang, ["A1", " B2 ", "C3"]) == f"A1{separator}B2 {word} C3"
    assert templates.join_options(lang, ["A1", "", "C3"]) == f"A1 {word} C3"
    assert templates.join_options(lang, ["A1"]) == "A1"
    assert templates.join_options(lang, []) == ""


def test_join_options_uses_each_languages_list_pattern() -> None:
    assert templates.join_options("en", ["Mon", "Tue", "Wed"]) == "Mon, Tue or Wed"
    assert templates.join_options("nl", ["ma", "di", "wo"]) == "ma, di of wo"
    assert templates.join_options("pl", ["pon", "wt"]) == "pon lub wt"
    assert templates.join_options("zh", ["周一", "周二", "周三"]) == "周一、周二 或 周三"
    assert templates.join_options("ja", ["月曜", "火曜", "水曜"]) == "月曜、火曜 または 水曜"
    assert templates.join_options("th", ["จันทร์", "อังคาร", "พุธ"]) == "จันทร์ อังคาร หรือ พุธ"
    assert (
        templates.join_options("ko", ["월요일", "화요일", "수요일"]) == "월요일, 화요일 또는 수요일"
    )
    assert set(templates.LIST_SEPARATORS) == {"zh", "ja", "th"}


@pytest.fixture()
def locale_dir(tmp_path: Path) -> Path:
    shutil.copy(LOCALES / "en.json", tmp_path / "en.json")
    return tmp_path


def _write(folder: Path, name: str, data: object) -> None:
    (folder / name).write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")


def test_loader_reads_a_folder_of_locale_files(locale_dir: Path) -> None:
    table = {**_raw("nl"), "list_separator": " / "}
    _write(locale_dir, "xx.json", table)
    loaded, separators = templates.load_locales(locale_dir)
    assert set(loaded) == {"en", "xx"}
    assert loaded["xx"]["ai_disclosure"] == "Ik ben een AI-assistent, geen mens."
    assert "list_separator" not in loaded["xx"] and separators == {"xx": " / "}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda t: t.pop("list_or"), r"xx\.json: missing key\(s\) list_or"),
        (
            lambda t: t.update(greeting_formal="Guten Tag"),
            r"xx\.json: unknown key\(s\) greeting_formal",
        ),
        (lambda t: t.update(still_there="  "), r"xx\.json: still_there is empty"),
        (lambda t: t.update(list_separator=""), r"xx\.json: list_separator is empty"),
        (
            lambda t: t.update(voicemail_named="Hallo {naam}, tot ziens."),
            r"xx\.json: voicemail_named has placeholders \['naam'\], the English template has "
            r"\['job_title', 'name'\]",
        ),
        (
            lambda t: t.update(scheduling_confirm="Top, op {slot."),
            r"xx\.json: scheduling_confirm is not a valid template",
        ),
        (lambda t: t.update(list_or=None), r"xx\.json: list_or must be a string"),
    ],
)
def test_loader_refuses_a_broken_locale_naming_file_and_key(
    locale_dir: Path, change: Callable[[dict[str, object]], object], message: str
) -> None:
    table: dict[str, object] = dict(_raw("nl"))
    change(table)
    _write(locale_dir, "xx.json", table)
    with pytest.raises(templates.LocaleError, match=message):
        templates.load_locales(locale_dir)


def test_loader_refuses_bad_json_and_a_missing_fallback(locale_dir: Path) -> None:
    (locale_dir / "xx.json").write_text('{"greeting_named": ', encoding="utf-8")
    with pytest.raises(templates.LocaleError, match=r"xx\.json: not valid UTF-8 JSON"):
        templates.load_locales(locale_dir)
    _write(locale_dir, "xx.json", ["not", "an", "object"])
    with pytest.raises(templates.LocaleError, match=r"xx\.json: must hold one JSON object"):
        templates.load_locales(locale_dir)
    (locale_dir / "xx.json").unlink()
    (locale_dir / "en.json").unlink()
    with pytest.raises(templates.LocaleError, match=r"en\.json \(the fallback language\)"):
        templates.load_locales(locale_dir)


def test_docs_say_which_languages_have_written_wording() -> None:
    """docs/LANGUAGES.md's "Fixed wording" column and section must match TEMPLATED_LANGUAGES."""
    doc = (ROOT / "docs" / "LANGUAGES.md").read_text(encoding="utf-8")
    rows = {
        match.group(1): [cell.strip() for cell in line.strip().strip("|").split("|")]
        for line in doc.splitlines()
        if (match := re.match(r"^\| `([a-z]{2})` \|", line))
    }
    assert set(rows) == set(SUPPORTED_LANGUAGES)
    wrong = sorted(
        code
        for code, cells in rows.items()
        if ("translated from English" in cells) == (code in templates.TEMPLATED_LANGUAGES)
    )
    assert not wrong, f"docs/LANGUAGES.md 'Fixed wording' column is wrong for {wrong}"
    section = doc.split("## Fixed wording", 1)[1].split("\n## ", 1)[0]
    if set(SUPPORTED_LANGUAGES) <= templates.TEMPLATED_LANGUAGES:
        assert "translated by the LLM at call time" not in section, (
            "docs/LANGUAGES.md '## Fixed wording' still says some supported languages are "
            "translated by the LLM at call time"
        )
