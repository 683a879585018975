"""The benchmark table: one row per workload, measured against a baseline in the same run.

A benchmark is a file `benchmarks/bench_<name>.py` with

    def rows(quick: bool) -> list[Row]: ...          # run the workloads, return their rows
    if __name__ == "__main__":
        harness.main(rows, __doc__)                   # alone: prints its own table

`benchmarks/run.py` (`make bench`) runs every `bench_*.py` in its own process with `--json`,
collects the rows and prints one table (plus the last `make scale` result). Adding a row is
adding a `Row` to some `rows()`; adding a benchmark is adding a file.

Reading a row: `ours` and `baseline` are seconds measured in the same process run (the
machine is shared, so only their ratio is meaningful across runs); `ratio` is baseline / ours
(how many times faster we are); `target` is what the row must meet: `>= Nx` on the ratio,
`<= N s` on our time, `<= N GiB` on the peak memory. The verdict is OK when every target of
the row is met, BELOW TARGET otherwise, FAIL when the workload failed or its result is wrong,
`info` for rows without a target (and for every row of a `--quick` run: targets are set for
the full sizes).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import Any

from portflow.resources import PeakRss

#: Rows are sent from a benchmark process to the runner on one stdout line with this prefix.
ROWS_PREFIX = "BENCH-ROWS "


@dataclass(frozen=True)
class Target:
    """One requirement: `kind` is `speedup` (ratio >= value), `seconds` (ours <= value) or
    `gib` (peak memory <= value)."""

    kind: str
    value: float

    def met(self, row: Row) -> bool:
        if self.kind == "speedup":
            return row.ratio is not None and row.ratio >= self.value
        if self.kind == "seconds":
            return row.ours_s <= self.value
        if self.kind == "gib":
            return row.peak_gib is not None and row.peak_gib <= self.value
        raise ValueError(f"unknown target kind {self.kind!r}")

    def label(self) -> str:
        value = round(self.value, 2)  # speedup(1 / 0.75) reads ">= 1.33x"
        if self.kind == "speedup":
            return f">= {value:g}x"
        return f"<= {value:g} {'s' if self.kind == 'seconds' else 'GiB'}"


def speedup(value: float) -> Target:
    return Target("speedup", value)


def seconds(value: float) -> Target:
    return Target("seconds", value)


def gib(value: float) -> Target:
    return Target("gib", value)


@dataclass(frozen=True)
class Row:
    """One workload. `baseline_s` is None when the row has no baseline (then no ratio).
    `error` (e.g. our result differs from the baseline's) makes the verdict FAIL."""

    workload: str
    sizes: str
    ours_s: float
    baseline: str = ""
    baseline_s: float | None = None
    targets: tuple[Target, ...] = ()
    peak_gib: float | None = None
    note: str = ""
    error: str = ""

    @property
    def ratio(self) -> float | None:
        if self.baseline_s is None or self.ours_s <= 0:
            return None
        return self.baseline_s / self.ours_s

    @property
    def verdict(self) -> str:
        if self.error:
            return "FAIL"
        if not self.targets:
            return "info"
        return "OK" if all(t.met(self) for t in self.targets) else "BELOW TARGET"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Row:
        targets = tuple(Target(**t) for t in d.pop("targets", ()))
        return cls(**d, targets=targets)


#: Peak RSS of this process over a `with` block: ``with PeakWindow() as p: ...; p.gib``.
PeakWindow = PeakRss


def _seconds(x: float | None) -> str:
    if x is None:
        return "-"
    return f"{x:.3f} s" if x < 10 else f"{x:.1f} s"


def dims(*sizes: int, unit: str = "") -> str:
    """A workload's dimensions for the sizes column: ``dims(1000, 2500, unit="bars")`` reads
    ``1,000 × 2,500 bars``. The multiplication sign, not the letter x: a table line's only
    ``<number>x`` are then its ratio and its target, which scripts compare."""
    return " × ".join(f"{n:,}" for n in sizes) + (f" {unit}" if unit else "")


def format_table(rows: list[Row]) -> str:
    """The table, one line per row. A row's ratio and target stay on its line as
    `<ratio>x | (target >= <n>x ...)` so scripts can compare the two numbers (sizes use
    :func:`dims`, so no other `<number>x` precedes them)."""
    head = ("workload", "sizes", "ours", "baseline", "baseline time", "ratio", "target",
            "peak", "verdict")
    lines = []
    for r in rows:
        ratio = f"{r.ratio:.1f}x" if r.ratio is not None else "-"
        target = f"(target {', '.join(t.label() for t in r.targets)})" if r.targets else "-"
        peak = f"{r.peak_gib:.2f} GiB" if r.peak_gib is not None else "-"
        lines.append((r.workload, r.sizes, _seconds(r.ours_s), r.baseline or "-",
                      _seconds(r.baseline_s), ratio, target, peak, r.verdict))
    widths = [max(len(str(x[i])) for x in [head, *lines]) for i in range(len(head))]
    fmt = " | ".join(f"{{:{'>' if i in (2, 4, 5, 7) else '<'}{w}}}" for i, w in enumerate(widths))
    out = [fmt.format(*head), "-+-".join("-" * w for w in widths)]
    out += [fmt.format(*x) for x in lines]
    notes = [f"  {r.workload}: {'; '.join(x for x in (r.error, r.note) if x)}"
             for r in rows if r.note or r.error]
    if notes:
        out += ["", "notes:", *notes]
    return "\n".join(out)


def main(rows: Callable[[bool], list[Row]], doc: str | None) -> None:
    """Command line of one benchmark file: `[--quick] [--json]`."""
    ap = argparse.ArgumentParser(description=(doc or "").splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="shrunk workloads for a quick run")
    ap.add_argument("--json", action="store_true", help="emit the rows for benchmarks/run.py")
    args = ap.parse_args()
    result = rows(args.quick)
    if args.quick:  # targets hold for the full sizes only
        result = [replace(r, targets=(), note=f"quick sizes, no verdict; {r.note}".rstrip("; "))
                  for r in result]
    if args.json:
        print(ROWS_PREFIX + json.dumps([r.to_json() for r in result]))
    else:
        print(format_table(result))
    sys.stdout.flush()
