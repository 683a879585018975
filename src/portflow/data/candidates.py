"""Candidates: what a data run's scan found, as typed records (SPEC §4 `candidates.json`).

`export/<RUN_ID>/candidates.json` is a JSON list with one record per (symbol, direction):
`symbol`, `provider`, `exchange`, `direction`, `scanners` and `fields` (every scanned value).
Phase 1 writes it (:mod:`portflow.data.scan`); ingest, metadata, features and Phase 2 read it
back through :func:`load_candidates` as :class:`Candidate` records.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from portflow.errors import DataError, RunError


class Direction(StrEnum):
    """The side of a trade; `sign` is +1 for LONG and -1 for SHORT (physical weight sign)."""

    LONG = "LONG"
    SHORT = "SHORT"

    @property
    def sign(self) -> int:
        return -1 if self is Direction.SHORT else 1


@dataclass(frozen=True)
class Candidate:
    """One scanned (symbol, direction). `key` is the id Phase 2 uses for it."""

    symbol: str
    direction: Direction
    scanners: tuple[str, ...]
    provider: str | None = None
    exchange: str | None = None
    fields: Mapping[str, Any] = field(default_factory=dict, compare=False)

    @property
    def key(self) -> str:
        return f"{self.symbol}:{self.direction.value}"

    @classmethod
    def from_record(cls, rec: Mapping[str, Any], where: str = "candidates.json") -> Candidate:
        try:
            return cls(
                symbol=str(rec["symbol"]),
                direction=Direction(str(rec["direction"])),
                scanners=tuple(str(s) for s in rec.get("scanners", ())),
                provider=None if rec.get("provider") is None else str(rec["provider"]),
                exchange=None if rec.get("exchange") is None else str(rec["exchange"]),
                fields=dict(rec.get("fields") or {}),
            )
        except (KeyError, ValueError, TypeError) as exc:
            raise DataError(
                f"{where}: a candidate record is malformed ({type(exc).__name__}: {exc});"
                " re-run scan-run to rewrite it"
            ) from None

    def scanner_in(self, names: Iterable[str]) -> str:
        """The first of `names` (in sorted order) that found this candidate."""
        mine = sorted(set(self.scanners) & set(names))
        if not mine:
            raise ValueError(f"{self.key} was found by none of {sorted(names)}")
        return mine[0]


def load_candidates(data_dir: Path, candidates_run: str) -> list[Candidate]:
    """The candidates a data run exported, in file order."""
    path = data_dir / "export" / candidates_run / "candidates.json"
    if not path.is_file():
        raise RunError(
            f"data run '{candidates_run}' has no export/{candidates_run}/candidates.json;"
            " run scan-run or flow-data first"
        )
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: unreadable ({exc}); re-run scan-run to rewrite it") from None
    if not isinstance(data, list):
        raise DataError(f"{path}: expected a JSON list of candidate records")
    return [Candidate.from_record(r, str(path)) for r in data]


def sleeve_candidates(candidates: Iterable[Candidate], scanners: Iterable[str]) -> list[Candidate]:
    """The candidates found by any of a sleeve's `scanners`."""
    mine = set(scanners)
    return [c for c in candidates if mine & set(c.scanners)]
