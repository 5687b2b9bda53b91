"""The committed JSON Schemas in schemas/ match the models."""

from __future__ import annotations

from dialer.schemas import CONTRACTS, SCHEMA_DIR, render


def test_committed_schemas_are_current() -> None:
    stale = []
    for name, model in CONTRACTS.items():
        path = SCHEMA_DIR / f"{name}.schema.json"
        if not path.exists() or path.read_text(encoding="utf-8") != render(model):
            stale.append(path.name)
    assert not stale, f"regenerate with `python -m dialer.schemas`: stale {stale}"


def test_schema_keeps_seed_field_names() -> None:
    schema = (SCHEMA_DIR / "candidate_data.schema.json").read_text(encoding="utf-8")
    for name in (
        "consent_given",
        "voicemail_detected",
        "passed_knockout",
        "interested_in_alternatives",
        "knockout_answers",
        "open_answers",
        "chosen_timeslot",
        "scheduling_preference",
        "raw_answer",
        "answer_summary",
    ):
        assert f'"{name}"' in schema
