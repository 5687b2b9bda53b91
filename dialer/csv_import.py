"""CSV rows -> ScreeningRequest payloads.

A recruiter's export has one candidate per row; what is the same for every candidate of a job
(title, questions, office) comes from a job template (JSON) merged under each row.

Column rules:
- A column named like a request field sets it: `call_id`, `candidate_name`, `phone_number`,
  `region`, `timezone`, `language`, `campaign_id`, `not_before`, `max_attempts`, ...
- Dotted columns set nested fields: `candidate_record.known_answers.work_permit`,
  `candidate_record.existing_booking_date`, `metadata.crm_id`.
- A cell that starts with `[` or `{` is JSON (`timeslots`, `knockout_questions`, ...); a
  `timeslots` cell may also be `|`-separated.
- `--map CSVCOL=field` renames columns (see `column_map`).
- Empty cells are left out, so the template or the default applies.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_BOOL = {"true": True, "false": False, "yes": True, "no": False, "1": True, "0": False}
_BOOL_FIELDS = {"candidate_known", "allow_escalation", "require_consent"}
_INT_FIELDS = {"max_attempts"}
_LIST_SPLIT_FIELDS = {"timeslots"}


@dataclass(frozen=True)
class CsvRow:
    line: int  # line number in the file (header is line 1)
    payload: dict[str, Any] | None
    error: str | None  # a row that could not even be turned into a payload


def _set_path(target: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = target
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[parts[-1]] = value


def _cell(field: str, raw: str) -> Any:
    text = raw.strip()
    if text[:1] in "[{":
        return json.loads(text)
    if field in _BOOL_FIELDS:
        if text.lower() not in _BOOL:
            raise ValueError(f"{field}: expected true/false, got {text!r}")
        return _BOOL[text.lower()]
    if field in _INT_FIELDS:
        try:
            return int(text)
        except ValueError:
            raise ValueError(f"{field}: expected a whole number, got {text!r}") from None
    if field in _LIST_SPLIT_FIELDS:
        return [part.strip() for part in text.split("|") if part.strip()]
    return text


def _deep_merge(base: Mapping[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in top.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def load_template(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc}); fix the job template file") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: the job template must be a JSON object")
    return data


def read_rows(
    path: Path,
    *,
    template: Mapping[str, Any] | None = None,
    column_map: Mapping[str, str] | None = None,
) -> Iterator[CsvRow]:
    """Yield one CsvRow per data line; malformed rows come back with `error`, never raise."""
    mapping = dict(column_map or {})
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        if not reader.fieldnames:
            raise ValueError(f"{path}: empty file or no header row")
        for row in reader:
            line = reader.line_num
            if None in row:  # more cells than header columns
                yield CsvRow(line, None, f"{len(row[None])} more cells than the header has columns")
                continue
            payload: dict[str, Any] = {}
            try:
                for column, raw in row.items():
                    if raw is None or not raw.strip():
                        continue
                    field = mapping.get(column, column).strip()
                    _set_path(payload, field, _cell(field.rsplit(".", 1)[-1], raw))
            except (ValueError, json.JSONDecodeError) as exc:
                yield CsvRow(line, None, f"column {column!r}: {exc}")
                continue
            yield CsvRow(line, _deep_merge(template or {}, payload), None)


def count_rows(path: Path) -> int:
    with path.open(newline="", encoding="utf-8-sig") as handle:
        return max(0, sum(1 for _ in csv.reader(handle)) - 1)
