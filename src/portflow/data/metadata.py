"""meta-ingest: refresh symbol metadata into ``symbols.parquet`` (SPEC §4, §5).

1. Ask the provider for tick size, lot size, min notional, price precision, quote, asset
   class, exchange and calendar of every candidate symbol. Unknown values stay null: no
   invented defaults (a missing tick or lot size is an HTR veto later, not a guess now).
2. Upsert with history: a symbol whose metadata changed gets a new version valid from the
   clock, the old version is closed (`valid_to`); nothing is overwritten.
"""

from __future__ import annotations

import pandas as pd

from portflow.lakehouse.store import SYMBOL_FIELDS, Lakehouse
from portflow.providers.base import Provider


def ingest_metadata(
    lake: Lakehouse,
    provider: Provider,
    symbols_by_universe: dict[str, list[str]],
    as_of: pd.Timestamp,
) -> dict[str, int]:
    frames = []
    for universe, symbols in sorted(symbols_by_universe.items()):
        if symbols:
            frames.append(provider.metadata(universe, sorted(symbols), as_of))
    if not frames:
        return {"symbols": 0, "added": 0, "changed": 0, "unchanged": 0}
    meta = pd.concat(frames, ignore_index=True)
    counts = lake.upsert_symbols(provider.name, meta, as_of)
    missing = {
        f"missing_{f}": int(meta[f].isna().sum()) if f in meta else len(meta)
        for f in ("tick_size", "lot_size")
    }
    unknown = [f for f in SYMBOL_FIELDS if f not in meta.columns]
    return {"symbols": len(meta), **counts, **missing, "fields_unknown": len(unknown)}
