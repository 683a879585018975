"""Phase 3 on Ray: a two-sleeve meta run vs the same two sleeves one after the other.

Both sides are the real `flow-meta-production --profile crypto_meta` into copies of one
Phase-1 data dir, timed from process start to exit (interpreter, imports and the meta's own
aggregation included on both sides):

- serial baseline: `--executor local` — the two sleeves run one after the other in the one
  process, each with the same per-sleeve thread cap (1 BLAS / numba thread) as on Ray;
- parallel: the default executor — Ray tasks on a fresh local cluster of 2 CPUs, the cluster's
  start-up included in the wall time and also reported on its own (run.json
  `steps.sleeves.counts.ray_startup_seconds`).

The ratio parallel / serial is printed from the same run; target <= 0.75 on 2 cores. The sides
alternate `--repeat` times and the medians are compared (the machine may be shared). Both
sides' weights.csv must be byte-identical (the thread cap makes them so).

    .venv/bin/python benchmarks/bench_meta.py [--repeat 1] [--skip-validation]
        [--profile crypto_meta] [--config-dir DIR]

:func:`measure` returns the numbers as a dict for a benchmark table.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

AS_OF = "2026-06-30"
PROFILE = "crypto_meta"
TARGET = 0.75


def _portflow(data: Path, config_dir: str | None, *args: str) -> float:
    """Run the CLI; return its wall seconds (raises SystemExit on failure)."""
    cmd = [sys.executable, "-m", "portflow.cli", "--data-dir", str(data), "--as-of", AS_OF,
           *(["--config-dir", config_dir] if config_dir else []), *args]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["?"])[-1]
        raise SystemExit(f"portflow {' '.join(args)} failed: {tail}")
    return wall


def measure(repeat: int = 1, skip_validation: bool = False, work: Path | None = None,
            profile: str = PROFILE, config_dir: str | None = None) -> dict[str, Any]:
    """The benchmark's measurements: serial and Ray wall seconds (medians), their ratio, Ray
    start-up seconds, each side's per-sleeve seconds, and whether the target holds.
    profile: a two-sleeve meta profile (of `config_dir`, default the packaged configs)."""
    own = work is None
    work = Path(tempfile.mkdtemp(prefix="bench-meta-")) if work is None else work
    base = work / "phase1"
    try:
        _portflow(base, config_dir, "flow-data", "--profile", profile, "--run-id", "data")
        flags = ["--skip-analysis"] + (["--skip-validation"] if skip_validation else [])
        walls: dict[str, list[float]] = {"local": [], "ray": []}
        startup: list[float] = []
        sleeves: dict[str, dict[str, float]] = {}
        weights: dict[str, bytes] = {}
        for i in range(repeat):
            for side in ("local", "ray"):
                data = work / f"{side}{i}"
                shutil.copytree(base, data)
                walls[side].append(_portflow(data, config_dir, "flow-meta-production",
                                             "--profile", profile, "--run-id", "m",
                                             "--executor", side, *flags))
                rec = json.loads((data / "runs" / "m" / "run.json").read_text())
                counts = rec["steps"]["sleeves"]["counts"]
                sleeves[side] = counts["leaves_seconds"]
                if side == "ray":
                    startup.append(float(counts["ray_startup_seconds"]))
                weights[side] = (data / "runs" / "m" / "weights.csv").read_bytes()
                shutil.rmtree(data)
        serial, ray = statistics.median(walls["local"]), statistics.median(walls["ray"])
        return {
            "profile": profile, "repeat": repeat, "skip_validation": skip_validation,
            "serial_seconds": round(serial, 2), "ray_seconds": round(ray, 2),
            "ratio": round(ray / serial, 3), "target": TARGET, "ok": ray / serial <= TARGET,
            "ray_startup_seconds": round(statistics.median(startup), 2),
            "sleeve_seconds": sleeves, "identical_weights": weights["local"] == weights["ray"],
        }
    finally:
        if own:
            shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--skip-validation", action="store_true")
    ap.add_argument("--profile", default=PROFILE)
    ap.add_argument("--config-dir", default=None)
    args = ap.parse_args()
    m = measure(args.repeat, args.skip_validation, profile=args.profile,
                config_dir=args.config_dir)
    for side in ("local", "ray"):
        secs = ", ".join(f"{k} {v:.1f}s" for k, v in m["sleeve_seconds"][side].items())
        print(f"{side:5s} sleeves: {secs}")
    print(f"serial (--executor local): {m['serial_seconds']:.1f} s wall")
    print(f"ray (local cluster):       {m['ray_seconds']:.1f} s wall, of which Ray start-up"
          f" {m['ray_startup_seconds']:.1f} s")
    print(f"ratio ray / serial: {m['ratio']:.2f} (target <= {TARGET}) "
          f"{'OK' if m['ok'] else 'ABOVE TARGET'}; weights identical: {m['identical_weights']}")


if __name__ == "__main__":
    main()
