"""The 32 conversation languages, how each is heard (Deepgram) and spoken (Cartesia), and how
the language of a call is chosen and followed. Pure Python: no LiveKit imports.

Choice at the start of a call: the request's `language`, else the dial context's `language`,
else the country of the phone number (`phonenumbers.region_code_for_number` and a small
country -> language map), else English. During the call the agent follows the candidate: a final
transcript in another supported language (Deepgram's multilingual model labels each one) or an
explicit request ("can we speak English?", via the `switch_language` tool) switches it.

The table is documented, language by language, in docs/LANGUAGES.md; keep the two in step.
"""

from __future__ import annotations

from dataclasses import dataclass

import phonenumbers

DEFAULT_LANGUAGE = "en"

# Deepgram nova-3's multilingual ("multi") model transcribes these ten with code-switching and
# labels each transcript with the language it heard; the others use a monolingual model.
MULTI_LANGUAGES = frozenset({"en", "es", "fr", "de", "hi", "ru", "pt", "ja", "it", "nl"})


@dataclass(frozen=True)
class LanguageSpec:
    code: str  # ISO 639-1, as used by Deepgram, Cartesia and our templates
    name: str  # English name (for the LLM's instructions)
    native: str  # the language's own name
    stt_model: str  # Deepgram model
    stt_language: str  # Deepgram `language` parameter
    tts_model: str = "sonic-3"  # Cartesia model
    tts_language: str = ""  # Cartesia `language` parameter (defaults to `code`)

    @property
    def cartesia_language(self) -> str:
        return self.tts_language or self.code

    @property
    def multilingual_stt(self) -> bool:
        return self.stt_language == "multi"


def _multi(code: str, name: str, native: str) -> LanguageSpec:
    return LanguageSpec(code, name, native, "nova-3", "multi")


def _mono(code: str, name: str, native: str, model: str = "nova-3", lang: str = "") -> LanguageSpec:
    return LanguageSpec(code, name, native, model, lang or code)


LANGUAGES: dict[str, LanguageSpec] = {
    spec.code: spec
    for spec in (
        # nova-3 multilingual (code-switching, per-transcript language labels)
        _multi("en", "English", "English"),
        _multi("nl", "Dutch", "Nederlands"),
        _multi("fr", "French", "Français"),
        _multi("de", "German", "Deutsch"),
        _multi("es", "Spanish", "Español"),
        _multi("it", "Italian", "Italiano"),
        _multi("pt", "Portuguese", "Português"),
        _multi("ru", "Russian", "Русский"),
        _multi("hi", "Hindi", "हिन्दी"),
        _multi("ja", "Japanese", "日本語"),
        # nova-3 monolingual
        _mono("da", "Danish", "Dansk"),
        _mono("sv", "Swedish", "Svenska"),
        _mono("no", "Norwegian", "Norsk"),
        _mono("fi", "Finnish", "Suomi"),
        _mono("pl", "Polish", "Polski"),
        _mono("cs", "Czech", "Čeština"),
        _mono("sk", "Slovak", "Slovenčina"),
        _mono("hu", "Hungarian", "Magyar"),
        _mono("ro", "Romanian", "Română"),
        _mono("bg", "Bulgarian", "Български"),
        _mono("el", "Greek", "Ελληνικά"),
        _mono("hr", "Croatian", "Hrvatski"),
        _mono("uk", "Ukrainian", "Українська"),
        _mono("tr", "Turkish", "Türkçe"),
        _mono("id", "Indonesian", "Bahasa Indonesia"),
        _mono("ms", "Malay", "Bahasa Melayu"),
        _mono("vi", "Vietnamese", "Tiếng Việt"),
        _mono("ko", "Korean", "한국어"),
        _mono("zh", "Chinese (Mandarin)", "中文"),
        _mono("ta", "Tamil", "தமிழ்"),
        _mono("bn", "Bengali", "বাংলা"),
        # nova-2 (Thai is not on nova-3)
        _mono("th", "Thai", "ไทย", model="nova-2", lang="th"),
    )
}

SUPPORTED_LANGUAGES: tuple[str, ...] = tuple(LANGUAGES)

# Country (ISO 3166 alpha-2) -> the language a call there starts in. Multilingual countries get
# the language most candidates of a Flemish/Dutch-first staffing agency speak (BE -> nl, CH -> de);
# a request's explicit `language` always wins, and the agent follows the candidate anyway.
COUNTRY_LANGUAGE: dict[str, str] = {
    "BE": "nl", "NL": "nl", "SR": "nl", "AW": "nl", "CW": "nl",
    "FR": "fr", "LU": "fr", "MC": "fr", "SN": "fr", "CI": "fr", "MA": "fr", "TN": "fr",
    "DE": "de", "AT": "de", "CH": "de", "LI": "de",
    "GB": "en", "IE": "en", "US": "en", "CA": "en", "AU": "en", "NZ": "en", "ZA": "en",
    "MT": "en", "SG": "en", "NG": "en", "KE": "en", "GH": "en", "PH": "en", "GG": "en",
    "JE": "en", "IM": "en", "GI": "en",
    "ES": "es", "MX": "es", "AR": "es", "CO": "es", "CL": "es", "PE": "es", "VE": "es",
    "EC": "es", "UY": "es", "PY": "es", "BO": "es", "CR": "es", "DO": "es", "GT": "es",
    "IT": "it", "SM": "it", "VA": "it",
    "PT": "pt", "BR": "pt", "AO": "pt", "MZ": "pt", "CV": "pt",
    "RU": "ru", "BY": "ru", "KZ": "ru",
    "IN": "hi", "JP": "ja",
    "DK": "da", "SE": "sv", "NO": "no", "FI": "fi", "PL": "pl", "CZ": "cs", "SK": "sk",
    "HU": "hu", "RO": "ro", "MD": "ro", "BG": "bg", "GR": "el", "CY": "el", "HR": "hr",
    "UA": "uk", "TR": "tr", "ID": "id", "MY": "ms", "BN": "ms", "VN": "vi", "KR": "ko",
    "CN": "zh", "TW": "zh", "HK": "zh", "MO": "zh", "BD": "bn", "TH": "th",
}  # fmt: skip


def normalize_language(code: str | None) -> str | None:
    """ "nl-BE" / "NL" / "nl_be" -> "nl" when supported, else None."""
    if not code:
        return None
    base = code.strip().replace("_", "-").split("-")[0].lower()
    aliases = {"nb": "no", "nn": "no", "in": "id", "cmn": "zh"}
    base = aliases.get(base, base)
    return base if base in LANGUAGES else None


def language_for_phone(number: str | None) -> str | None:
    """The language of the number's country, if the number parses and the country is mapped."""
    if not number:
        return None
    try:
        parsed = phonenumbers.parse(number, None)
    except phonenumbers.NumberParseException:
        return None
    # The number's own region; for a number phonenumbers cannot place (not valid), the main
    # region of its country code.
    region = phonenumbers.region_code_for_number(parsed) or (
        phonenumbers.region_code_for_country_code(parsed.country_code or 0)
    )
    return COUNTRY_LANGUAGE.get(region or "")


def choose_language(
    request_language: str | None,
    dial_language: str | None = None,
    phone_number: str | None = None,
) -> str:
    """Request language, else dial-context language, else the phone's country, else English."""
    for candidate in (request_language, dial_language):
        if (code := normalize_language(candidate)) is not None:
            return code
    return language_for_phone(phone_number) or DEFAULT_LANGUAGE


def spec(code: str) -> LanguageSpec:
    return LANGUAGES[normalize_language(code) or DEFAULT_LANGUAGE]


class LanguageFollower:
    """Decides when a transcribed candidate turn means "switch language".

    Deepgram's multilingual model labels every final transcript. One short word ("ok", "ja")
    says little about the language, so a switch needs a final transcript of at least
    `min_words` words in another supported language.
    """

    def __init__(self, current: str, *, min_words: int = 3) -> None:
        self.current = current
        self.min_words = min_words

    def observe(self, detected: str | None, transcript: str) -> str | None:
        """Returns the new language when the call should switch to it, else None."""
        code = normalize_language(detected)
        if code is None or code == self.current:
            return None
        if len(transcript.split()) < self.min_words:
            return None
        self.current = code
        return code
