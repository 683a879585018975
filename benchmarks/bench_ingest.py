"""Parallel ingestion: `data-ingest --jobs 8` vs `--jobs 1` against a slow provider.

The synthetic provider sleeps `latency_ms` (default 50) per request, like a remote API. Both
runs are the real `flow-data --jobs N` into fresh data dirs; the time compared is the
`data-ingest` step's own `seconds` from run.json (process start-up and the provider's one-time
market generation, done by the scan before it, excluded), and the ratio is printed from the
same run. Target: jobs 8 at least 5x faster than jobs 1 for 200 symbols.

    .venv/bin/python benchmarks/bench_ingest.py [--symbols 200] [--latency-ms 50]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

from portflow.config.loader import packaged_config_dir

AS_OF = "2026-06-30"


def portflow(data: Path, config: Path, *args: str) -> None:
    cmd = [sys.executable, "-m", "portflow.cli", "--data-dir", str(data), "--config-dir",
           str(config), "--as-of", AS_OF, *args]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed: {proc.stderr.strip().splitlines()[-1]}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--symbols", type=int, default=200)
    ap.add_argument("--latency-ms", type=float, default=50.0)
    ap.add_argument("--jobs", type=int, default=8)
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    config = work / "configs"
    shutil.copytree(packaged_config_dir(), config)
    manifest = yaml.safe_load((config / "manifest.yaml").read_text())
    manifest["defaults"]["provider"].update(
        latency_ms=args.latency_ms, sizes={"synthetic-crypto": args.symbols + 20}
    )
    (config / "manifest.yaml").write_text(yaml.safe_dump(manifest, sort_keys=False))
    scanner = config / "scanners" / "crypto_long.yaml"
    spec = yaml.safe_load(scanner.read_text())
    spec.update(limit=args.symbols, remove_filters=["value_traded"])
    scanner.write_text(yaml.safe_dump(spec))

    seconds = {}
    for jobs in (1, args.jobs):
        data = work / f"jobs{jobs}"
        portflow(data, config, "flow-data", "--profile", "crypto_long", "--run-id", "ingest",
                 "--jobs", str(jobs))
        rec = json.loads((data / "runs" / "ingest" / "run.json").read_text())
        step = rec["steps"]["data-ingest"]
        seconds[jobs] = float(step["seconds"])
        c = step["counts"]
        print(f"jobs {jobs:2d}: {seconds[jobs]:6.2f} s  ({c['symbols_total']} symbols,"
              f" {c['bars_fetched']} bars, latency {args.latency_ms:g} ms/request)")
    ratio = seconds[1] / seconds[args.jobs]
    verdict = "OK" if ratio >= 5 else "BELOW TARGET"
    print(f"speed-up jobs {args.jobs} vs jobs 1: {ratio:.1f}x (target >= 5x) {verdict}")
    shutil.rmtree(work)


if __name__ == "__main__":
    main()
