"""scan-run: run a profile's scanners and export their candidates (SPEC §3, §5).

1. Each scanner asks the provider for its universe as of the clock (one row per symbol with
   the canonical fields) and keeps the rows where every filter holds. Filters are immutable
   data combined with all/any/not; they only drop rows and never change a value.
2. Rows are sorted (stable, ties by symbol) and cut to `limit`.
3. Scanners run independently, in parallel; a failing scanner is reported, and the step fails
   unless the profile sets `scan.allow_partial`.
4. Candidates are one record per (symbol, direction): `symbol`, `provider`, `exchange`,
   `direction`, `scanners` (every scanner that found it) and `fields` (every scanned value).
5. With a `scan_provider` (discovery on one source, bars from another), each kept row's symbol
   is mapped to the bar provider's before the sort and limit (:class:`SymbolMap`): the
   profile's `symbol_map` entry for the scanned symbol wins; otherwise the scanned symbol
   without its `EXCHANGE:` prefix is looked up among the bar provider's symbols of
   `bars_universe` (`Provider.resolve`: ccxt matches the market id or base+quote, a `.P`
   suffix meaning the perpetual swap; files match the file name, case-insensitively, `.` and
   `-` alike). Rows that map to nothing are dropped and counted; the scanned symbol stays in
   the candidate's fields as `scan_symbol`, and `provider` is the bar provider (the lakehouse
   key its bars are stored under).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from portflow.config.models import AllFilter, AnyFilter, FilterNode, LeafFilter, NotFilter, Scanner
from portflow.errors import ConfigError, ProviderError
from portflow.executors import LocalExecutor
from portflow.lakehouse.atomic import jsonable
from portflow.providers.base import Provider, ScanQuery


def filter_mask(frame: pd.DataFrame, node: FilterNode) -> np.ndarray:
    """Boolean mask of rows where `node` holds. A missing (NaN) value never passes a leaf."""
    if isinstance(node, AllFilter):
        mask = np.ones(len(frame), dtype=bool)
        for sub in node.all:
            mask &= filter_mask(frame, sub)
        return mask
    if isinstance(node, AnyFilter):
        mask = np.zeros(len(frame), dtype=bool)
        for sub in node.any:
            mask |= filter_mask(frame, sub)
        return mask
    if isinstance(node, NotFilter):
        return ~filter_mask(frame, node.not_)
    assert isinstance(node, LeafFilter)
    if node.field not in frame.columns:
        raise ProviderError(f"provider gave no field '{node.field}' for this scanner's filters")
    col = frame[node.field]
    present = col.notna().to_numpy()
    op, v = node.op, node.value
    if op in ("in", "not_in"):
        hit = col.isin(v).to_numpy()
        return present & (hit if op == "in" else ~hit)
    if op == "between":
        lo, hi = v
        res = (col >= lo) & (col <= hi)
    elif op == ">":
        res = col > v
    elif op == ">=":
        res = col >= v
    elif op == "<":
        res = col < v
    elif op == "<=":
        res = col <= v
    elif op == "==":
        res = col == v
    else:
        res = col != v
    return present & res.fillna(False).to_numpy(dtype=bool)


def query_of(scanner: Scanner) -> ScanQuery:
    """The scanner as plain data, for providers that screen server-side."""
    return ScanQuery(
        name=scanner.name,
        universe=scanner.universe,
        filters=tuple(f.model_dump(by_alias=True) for f in scanner.filters),
        sort=None if scanner.sort is None else (scanner.sort.field, scanner.sort.order),
        limit=scanner.limit,
    )


@dataclass
class SymbolMap:
    """Step 5: scanned symbols -> the bar provider's symbols in `universe`."""

    bars: Provider
    universe: str
    explicit: Mapping[str, str] = field(default_factory=dict)
    unmapped: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def apply(self, frame: pd.DataFrame) -> pd.DataFrame:
        scanned = [str(s) for s in frame["symbol"]]
        ticker = {s: s.split(":", 1)[1] if ":" in s else s
                  for s in scanned if s not in self.explicit}
        found = self.bars.resolve(self.universe, sorted(set(ticker.values())))
        target = [self.explicit.get(s) or found.get(ticker.get(s, "")) for s in scanned]
        with self._lock:  # scanners run in parallel threads
            self.unmapped.extend(s for s, t in zip(scanned, target, strict=True) if t is None)
        out = frame.assign(scan_symbol=scanned, symbol=target)
        return out[out["symbol"].notna()]


def run_scanner(scanner: Scanner, provider: Provider, as_of: pd.Timestamp,
                mapping: SymbolMap | None = None) -> pd.DataFrame:
    """Steps 1-2 (and 5) for one scanner: the kept rows, sorted and cut."""
    query = query_of(scanner)
    if mapping is not None:  # mapping may drop rows: the limit applies after it, here
        query = replace(query, limit=None)
    frame = provider.scan(scanner.universe, as_of, query).reset_index(drop=True)
    if "symbol" not in frame.columns:
        raise ProviderError(f"provider '{provider.name}' scan of '{scanner.universe}' has no symbol")
    mask = np.ones(len(frame), dtype=bool)
    for node in scanner.filters:
        mask &= filter_mask(frame, node)
    kept = frame[mask]
    if mapping is not None:
        kept = mapping.apply(kept)
    if scanner.sort is not None:
        if scanner.sort.field not in kept.columns:
            raise ConfigError(f"scanner '{scanner.name}': sort field '{scanner.sort.field}' missing")
        kept = kept.sort_values(
            [scanner.sort.field, "symbol"],
            ascending=[scanner.sort.order == "asc", True],
            kind="mergesort",
            na_position="last",
        )
    else:
        kept = kept.sort_values("symbol", kind="mergesort")
    # two scanned symbols can map onto one bar symbol (one pair on two venues): the best wins
    kept = kept.drop_duplicates("symbol", keep="first")
    if scanner.limit is not None:
        kept = kept.head(scanner.limit)
    return kept.reset_index(drop=True)


def records(scanner: Scanner, rows: pd.DataFrame, provider_name: str) -> list[dict[str, Any]]:
    out = []
    for row in rows.to_dict("records"):
        fields = {k: jsonable(v) for k, v in row.items() if k != "symbol"}
        out.append(
            {
                "symbol": str(row["symbol"]),
                "provider": provider_name,
                "exchange": jsonable(row.get("exchange")),
                "direction": scanner.direction,
                "scanners": [scanner.name],
                "fields": fields,
            }
        )
    return out


def union(per_scanner: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Step 4: one record per (symbol, direction); `scanners` lists every finder."""
    merged: dict[tuple[str, str], dict[str, Any]] = {}
    for name in sorted(per_scanner):
        for rec in per_scanner[name]:
            key = (rec["symbol"], rec["direction"])
            if key in merged:
                merged[key]["scanners"].append(name)
                for k, v in rec["fields"].items():
                    merged[key]["fields"].setdefault(k, v)
            else:
                merged[key] = {**rec, "scanners": [name], "fields": dict(rec["fields"])}
    return [merged[k] for k in sorted(merged)]


@dataclass
class ScanResult:
    per_scanner: dict[str, list[dict[str, Any]]]
    failed: dict[str, str]
    candidates: list[dict[str, Any]]


def scan_all(
    scanners: list[Scanner], provider: Provider, as_of: pd.Timestamp, allow_partial: bool,
    mapping: SymbolMap | None = None,
) -> ScanResult:
    """Step 3: every scanner in parallel; failures reported, fatal unless allow_partial.
    With `mapping` (step 5) the records name the bar provider."""
    per: dict[str, list[dict[str, Any]]] = {}
    failed: dict[str, str] = {}
    pool = LocalExecutor(jobs=min(8, max(1, len(scanners))))
    owner = provider.name if mapping is None else mapping.bars.name
    for out in pool.map(lambda s: (s.name, run_scanner(s, provider, as_of, mapping)), scanners):
        if out.ok:
            assert out.value is not None
            name, rows = out.value
            per[name] = records(out.item, rows, owner)
        else:
            failed[out.item.name] = f"{type(out.error).__name__}: {out.error}"
    if failed and (not allow_partial or not per):
        name, why = sorted(failed.items())[0]
        raise ProviderError(
            f"scanner '{name}' failed ({why}); fix it, or set scan.allow_partial: true in the"
            " profile to continue with the others"
        )
    return ScanResult(per_scanner=per, failed=failed, candidates=union(per))
