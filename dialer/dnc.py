"""The do-not-call suppression set: E.164 numbers that must never be dialed.

Checked at intake and again right before each dial. Fed by operators (CLI / API / CSV import)
and by the agent when a candidate asks not to be called again.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import redis

from dialer.keys import Keys
from dialer.phone import InvalidPhoneNumber, normalize


@dataclass(frozen=True)
class ImportReport:
    added: int
    already_present: int
    rejected: list[tuple[int, str, str]] = field(default_factory=list)  # (row, value, reason)


class DoNotCallList:
    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self.r = client
        self.key = keys.dnc

    def add(self, numbers: Iterable[str], region: str | None = None) -> int:
        """Add numbers (any format `phone.normalize` accepts). Returns how many were new."""
        e164s = [normalize(n, region).e164 for n in numbers]
        return int(self.r.sadd(self.key, *e164s)) if e164s else 0

    def remove(self, number: str, region: str | None = None) -> bool:
        return bool(self.r.srem(self.key, normalize(number, region).e164))

    def contains(self, e164: str) -> bool:
        return bool(self.r.sismember(self.key, e164))

    def size(self) -> int:
        return int(self.r.scard(self.key))

    def import_csv(
        self, path: Path, *, column: str = "phone_number", region: str | None = None
    ) -> ImportReport:
        """Import numbers from a CSV with a header row; bad rows are reported, not dropped."""
        added = present = 0
        rejected: list[tuple[int, str, str]] = []
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            if reader.fieldnames is None or column not in reader.fieldnames:
                raise ValueError(
                    f"{path}: no column {column!r} (columns: {', '.join(reader.fieldnames or [])});"
                    " pass --column NAME"
                )
            for row_number, row in enumerate(reader, start=2):
                value = (row.get(column) or "").strip()
                try:
                    e164 = normalize(value, row.get("region") or region).e164
                except InvalidPhoneNumber as exc:
                    rejected.append((row_number, value, str(exc)))
                    continue
                if self.r.sadd(self.key, e164):
                    added += 1
                else:
                    present += 1
        return ImportReport(added=added, already_present=present, rejected=rejected)
