"""Strategy synthesis (SPEC §6.3): winners become Strategy Atoms with synthetic returns.

1. Each winner becomes an atom: (symbol, logic, direction) with id
   ``<symbol>:<logic>:<DIRECTION>``; `logic` is the scanner strategy that found it. The id is
   never parsed back: the atom table carries symbol and direction explicitly.
2. Synthetic return: R_syn = R for LONG and -min(R, 1) for SHORT (a short loses at most 100%
   per bar), so the optimiser works long-only in synthetic space.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class Atom:
    atom: str
    symbol: str
    logic: str
    direction: str
    key: str

    @property
    def sign(self) -> int:
        return -1 if self.direction == "SHORT" else 1


def make_atoms(winners: list[str], info: pd.DataFrame) -> list[Atom]:
    """Step 1. `info`: indexed by candidate key with columns symbol, direction, logic."""
    pos = _positions(info.index, winners)
    symbols, logics, directions = (info[c].to_numpy(dtype=object)[pos]
                                   for c in ("symbol", "logic", "direction"))
    atoms = []
    for key, *fields in zip(winners, symbols, logics, directions, strict=True):
        symbol, logic, direction = (str(f) for f in fields)
        atoms.append(Atom(atom=f"{symbol}:{logic}:{direction}", symbol=symbol, logic=logic,
                          direction=direction, key=key))
    return atoms


def _positions(index: pd.Index, keys: list[str]) -> np.ndarray:
    """Positions of `keys` in `index` (KeyError naming the missing ones)."""
    pos = index.get_indexer(keys)
    if (pos < 0).any():
        raise KeyError(f"keys not found: {[k for k, p in zip(keys, pos, strict=True) if p < 0]}")
    return pos


def synthetic(raw: np.ndarray, short: np.ndarray) -> np.ndarray:
    """Step 2 on arrays: raw simple returns (T, n), short (n,) bool → R, or −min(R, 1)."""
    return np.where(short, -np.minimum(raw, 1.0), raw)


def synthetic_returns(raw: pd.DataFrame, atoms: list[Atom]) -> pd.DataFrame:
    """Step 2. `raw`: index dates, columns candidate keys (simple returns)."""
    x = raw.to_numpy(float)[:, _positions(raw.columns, [a.key for a in atoms])]
    short = np.array([a.sign < 0 for a in atoms], dtype=bool)
    return pd.DataFrame(synthetic(x, short), index=raw.index, columns=[a.atom for a in atoms])
