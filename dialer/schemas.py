"""JSON Schema files for the data contracts, generated into `schemas/`.

Regenerate with `python -m dialer.schemas` (a test fails when the committed files are stale).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from pydantic import BaseModel

from dialer.messages import ResultMessage
from dialer.models import CandidateData, ScreeningRequest, SessionInput

CONTRACTS: dict[str, type[BaseModel]] = {
    "screening_request": ScreeningRequest,
    "session_input": SessionInput,
    "candidate_data": CandidateData,
    "result_message": ResultMessage,
}

SCHEMA_DIR = Path(__file__).resolve().parent.parent / "schemas"


def render(model: type[BaseModel]) -> str:
    schema = model.model_json_schema(mode="validation")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def export(directory: Path = SCHEMA_DIR) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, model in CONTRACTS.items():
        path = directory / f"{name}.schema.json"
        path.write_text(render(model), encoding="utf-8")
        written.append(path)
    return written


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else SCHEMA_DIR
    for path in export(target):
        print(path)
