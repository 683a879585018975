"""Per-call time of the five methods at production sizes, against a baseline revision.

Run by hand: ``.venv/bin/python benchmarks/compare_methods.py [--baseline REV] [--universes N]``.
It compares two revisions of our own code, before and after a change, rather than ours against
a baseline library in the same run, so it is not a row of the bench table (hence not named
``bench_*.py``: ``make bench`` runs only those).
Walk-forward validation calls every method ~95-165 times per production run on 20-25 atoms
and 180-252 bars, so the per-call time at that size is what matters. Each universe is one of
the property test's seeded crypto-like factor models (``tests/alpha/universes.py``) at that
size, in two scenarios: no caps (cluster cap 1, atom max 1) and tight caps (CRISIS regime cap 0.15,
max_weight 0.055, through ``effective_caps`` with the default headroom).

The baseline is ``src/portflow/alpha/optimize.py`` and ``projection.py`` of REV (default
``main``), loaded into this same process from git under another package name, so both sides
share the interpreter, the machine load and the inputs; calls alternate between the two and
each time is the best of 3. Prints, per method and scenario, the median ms per call of both,
the ratio current/baseline and the share of calls each kept on its primary link.

Measured on the shared 2-core machine (load ~2), 30 universes, baseline 4565d07 (before
issue 7's numerics): current/baseline 0.18-0.54 for every method (1.4-1.9 ms per call);
tight caps: risk parity 45.1 -> 4.2 ms per call and 25/30 -> 30/30 on its primary link.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import inspect
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from portflow.alpha.analyze import effective_caps
from portflow.alpha.optimize import METHODS, optimize

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tests.alpha.universes import crypto_universe  # noqa: E402  (the property test's universes)

REPEATS = 3
# max_sharpe's min_var/primary: the ratio is undefined (SPEC §6.5), not a failed link
PRIMARY = ("primary", "min_var/primary")
PERIODS = 365


def load_baseline(rev: str, into: Path) -> Callable[..., object]:
    """``optimize`` of REV as a callable, imported from a copy under ``portflow_baseline``."""
    pkg = into / "portflow_baseline"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    for name in ("optimize", "projection"):
        src = subprocess.run(
            ["git", "show", f"{rev}:src/portflow/alpha/{name}.py"],
            cwd=ROOT,
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        src = src.replace("from portflow.alpha.projection", "from portflow_baseline.projection")
        (pkg / f"{name}.py").write_text(src)
    sys.path.insert(0, str(into))
    return importlib.import_module("portflow_baseline.optimize").optimize


def timed(fn: Callable[[], object]) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(REPEATS):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", default="main", help="git revision to compare against")
    parser.add_argument("--universes", type=int, default=30)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        base = load_baseline(args.baseline, Path(tmp))
        base_takes_periods = "periods_per_year" in inspect.signature(base).parameters
        scenarios = {"no caps": (1.0, None), "tight caps": (0.15, 0.055)}
        rows = []
        cases = [crypto_universe(s, atoms=(20, 25), bars=(180, 252)) for s in range(args.universes)]
        for scenario, (regime_cap, max_weight) in scenarios.items():
            for method in METHODS:
                t_cur, t_base, ok_cur, ok_base = [], [], 0, 0
                for r, labels in cases:
                    if max_weight is None:
                        cap, amax = 1.0, 1.0
                    else:
                        caps = effective_caps(regime_cap, np.bincount(labels), max_weight)
                        cap, amax = caps.cluster_cap, caps.atom_max
                    kw = {"cluster_cap": cap, "atom_max": amax}
                    extra = {"periods_per_year": PERIODS} if base_takes_periods else {}
                    tb, rb = timed(functools.partial(base, method, r, labels, **kw, **extra))
                    call = functools.partial(optimize, method, r, labels, **kw)
                    tc, rc = timed(functools.partial(call, periods_per_year=PERIODS))
                    t_base.append(tb)
                    t_cur.append(tc)
                    ok_base += getattr(rb, "link", "") in (*PRIMARY, method)
                    ok_cur += getattr(rc, "link", "") in (*PRIMARY, method)
                mb, mc = np.median(t_base) * 1e3, np.median(t_cur) * 1e3
                rows.append((scenario, method, mb, mc, ok_base, ok_cur))
        n = len(cases)
        print(
            f"{n} universes (20-25 atoms, 180-252 bars); median ms per call, best of {REPEATS}; "
            f"baseline = {args.baseline}"
        )
        print(
            f"{'scenario':<11} {'method':<13} {'baseline':>9} {'current':>9} {'ratio':>6}  primary"
        )
        for scenario, method, mb, mc, okb, okc in rows:
            print(
                f"{scenario:<11} {method:<13} {mb:9.2f} {mc:9.2f} {mc / mb:6.2f}  "
                f"{okb}/{n} -> {okc}/{n}"
            )


if __name__ == "__main__":
    main()
