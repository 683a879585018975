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
    cols = {c: dict(zip(info.index, info[c].to_numpy(dtype=object), strict=True))
            for c in ("symbol", "logic", "direction")}
    atoms = []
    for key in winners:
        symbol, logic, direction = (str(cols[c][key]) for c in ("symbol", "logic", "direction"))
        atoms.append(Atom(atom=f"{symbol}:{logic}:{direction}", symbol=symbol, logic=logic,
                          direction=direction, key=key))
    return atoms


def synthetic(raw: np.ndarray, short: np.ndarray) -> np.ndarray:
    """Step 2 on arrays: raw simple returns (T, n), short (n,) bool → R, or −min(R, 1)."""
    return np.where(short, -np.minimum(raw, 1.0), raw)


def synthetic_returns(raw: pd.DataFrame, atoms: list[Atom]) -> pd.DataFrame:
    """Step 2. `raw`: index dates, columns candidate keys (simple returns)."""
    x = raw[[a.key for a in atoms]].to_numpy(float)
    short = np.array([a.sign < 0 for a in atoms], dtype=bool)
    return pd.DataFrame(synthetic(x, short), index=raw.index, columns=[a.atom for a in atoms])
