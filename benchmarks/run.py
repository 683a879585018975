"""`make bench`: run every `benchmarks/bench_*.py` and print one table (see harness.py).

1. Each benchmark file runs in its own process (`python bench_x.py --json [--quick]`), so
   one benchmark's memory, threads or crash never touch another's; its own progress lines
   are passed through as they come.
2. Its rows come back on the line starting with `harness.ROWS_PREFIX`.
3. The last `make scale` result (`results/scale.json`) becomes one more row.
4. One table; the exit code is 1 when a row FAILed (a benchmark did not run, or its result
   is wrong), 0 otherwise — a row below its target is reported in the table, not by the
   exit code.

    .venv/bin/python benchmarks/run.py [--quick] [--only ingest,backfill]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from harness import ROWS_PREFIX, Row, dims, format_table, gib, seconds

HERE = Path(__file__).resolve().parent
SCALE = HERE / "results" / "scale.json"
DATA_BUDGET_S, PEAK_BUDGET_GIB = 300.0, 4.0


def run_one(path: Path, quick: bool) -> list[Row]:
    """Steps 1-2 for one benchmark file."""
    cmd = [sys.executable, str(path), "--json", *(["--quick"] if quick else [])]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, cwd=HERE)
    assert proc.stdout is not None
    rows: list[Row] = []
    for line in proc.stdout:
        if line.startswith(ROWS_PREFIX):
            rows = [Row.from_json(d) for d in json.loads(line[len(ROWS_PREFIX):])]
        else:
            print(f"  {line.rstrip()}", flush=True)
    if proc.wait() != 0 or not rows:
        return [Row(path.stem, "-", 0.0, error=f"exited {proc.returncode} without rows")]
    return rows


def scale_row() -> Row:
    """Step 3: the last `make scale` (flow-data over 10,000 symbols) against its budget."""
    if not SCALE.exists():
        return Row("flow-data end to end (make scale)", "-", 0.0,
                   note="no result yet: run `make scale`")
    res = json.loads(SCALE.read_text())
    flow = res["flow_data"]
    steps = ", ".join(f"{k} {v['seconds']:.0f} s / {v['peak_rss_gib']:.2f} GiB"
                      for k, v in flow["steps"].items() if v.get("peak_rss_gib") is not None)
    prod = res.get("production", {})
    prod_note = (f"; flow-production top 2,000 with validation {prod['seconds']:.0f} s,"
                 f" {prod['peak_rss_gib']:.2f} GiB" if "seconds" in prod
                 else f"; production half: {prod.get('status', 'not run')}")
    return Row(
        f"flow-data end to end (make scale, {res['measured_at']})",
        dims(res["symbols"], res["bars"]), float(flow["seconds"]),
        targets=(seconds(DATA_BUDGET_S), gib(PEAK_BUDGET_GIB)),
        peak_gib=float(flow["peak_rss_gib"]), note=f"per step: {steps}{prod_note}",
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="shrink every workload")
    ap.add_argument("--only", default="", help="comma-separated benchmark names (bench_<name>)")
    args = ap.parse_args()
    only = {n.strip() for n in args.only.split(",") if n.strip()}
    rows: list[Row] = []
    t0 = time.monotonic()
    for path in sorted(HERE.glob("bench_*.py")):
        if only and path.stem.removeprefix("bench_") not in only:
            continue
        print(f"== {path.name}{' (quick)' if args.quick else ''}", flush=True)
        t = time.monotonic()
        rows += run_one(path, args.quick)
        print(f"   {path.name}: {time.monotonic() - t:.0f} s", flush=True)
    rows.append(scale_row())
    print(f"\nbenchmarks ({'quick, ' if args.quick else ''}{time.monotonic() - t0:.0f} s in all;"
          " times in seconds from one run on this machine, ratio = baseline / ours)\n")
    print(format_table(rows))
    if any(r.error for r in rows):
        sys.exit(1)


if __name__ == "__main__":
    main()
