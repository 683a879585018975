"""Parallel ingestion: `data-ingest --jobs 8` vs `--jobs 1` against a slow provider.

The synthetic provider sleeps `latency_ms` (default 50) per request, like a remote API. Both
runs are the real `flow-data --jobs N` into fresh data dirs; the time compared is the
`data-ingest` step's own `seconds` from run.json (process start-up and the provider's one-time
market generation, done by the scan before it, excluded), and the ratio is printed from the
same run. Target: jobs 8 at least 6x faster than jobs 1 for 200 symbols (--quick: 60).

    .venv/bin/python benchmarks/bench_ingest.py [--quick]
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

import harness
from harness import Row, speedup
from portflow.config.loader import packaged_config_dir

AS_OF = "2026-06-30"
LATENCY_MS, JOBS, TARGET_X = 50.0, 8, 6.0


def portflow(data: Path, config: Path, *args: str) -> None:
    cmd = [sys.executable, "-m", "portflow.cli", "--data-dir", str(data), "--config-dir",
           str(config), "--as-of", AS_OF, *args]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed: {proc.stderr.strip().splitlines()[-1]}")


def rows(quick: bool) -> list[Row]:
    n_symbols = 60 if quick else 200
    work = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    config = work / "configs"
    shutil.copytree(packaged_config_dir(), config)
    manifest = yaml.safe_load((config / "manifest.yaml").read_text())
    manifest["defaults"]["provider"].update(
        latency_ms=LATENCY_MS, sizes={"synthetic-crypto": n_symbols + 20}
    )
    (config / "manifest.yaml").write_text(yaml.safe_dump(manifest, sort_keys=False))
    scanner = config / "scanners" / "crypto_long.yaml"
    spec = yaml.safe_load(scanner.read_text())
    spec.update(limit=n_symbols, remove_filters=["value_traded"])
    scanner.write_text(yaml.safe_dump(spec))

    seconds, peaks = {}, {}
    for jobs in (1, JOBS):
        data = work / f"jobs{jobs}"
        portflow(data, config, "flow-data", "--profile", "crypto_long", "--run-id", "ingest",
                 "--jobs", str(jobs))
        rec = json.loads((data / "runs" / "ingest" / "run.json").read_text())
        step = rec["steps"]["data-ingest"]
        seconds[jobs] = float(step["seconds"])
        peaks[jobs] = step.get("peak_rss_gib")
        c = step["counts"]
        print(f"jobs {jobs:2d}: {seconds[jobs]:6.2f} s  ({c['symbols_total']} symbols,"
              f" {c['bars_fetched']} bars, latency {LATENCY_MS:g} ms/request)")
    shutil.rmtree(work)
    return [Row(f"data-ingest --jobs {JOBS} (baseline --jobs 1)",
                f"{n_symbols} symbols, {LATENCY_MS:g} ms/request", seconds[JOBS],
                "same step, --jobs 1", seconds[1], (speedup(TARGET_X),), peaks[JOBS],
                "data-ingest step seconds from run.json (process start and scan excluded)")]


if __name__ == "__main__":
    harness.main(rows, __doc__)
