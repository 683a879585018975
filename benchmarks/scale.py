"""End-to-end scale run (`make scale`): 10,000 synthetic symbols x 2,500 bars through flow-data.

1. Copy the packaged configs into a temp dir and add the profile the scale check uses: the
   synthetic provider with `sizes: {synthetic-crypto: N}`, one scanner keeping every symbol
   with volume > 0 sorted by value traded, `history_bars: 2500`.
2. Run the real CLI (`portflow flow-data`) in a subprocess; measure its wall time and the
   peak resident memory of it and its children (`RUSAGE_CHILDREN`).
3. Read each step's `seconds` and `peak_rss_gib` from the run's run.json.
4. The production half (its top 2,000 symbols through `flow-production` with validation)
   runs when `flow-production` is available; until the walk-forward lands it is recorded as
   `not available yet` and the budget check covers flow-data only.
5. Write the result to `benchmarks/results/scale.json` (the `make bench` table shows it)
   and print it. Budgets: flow-data < 300 s, production < 600 s, each peak < 4 GiB.

    .venv/bin/python benchmarks/scale.py [--symbols 10000] [--bars 2500] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from portflow.config.loader import packaged_config_dir

RESULT = Path(__file__).resolve().parent / "results" / "scale.json"
AS_OF = "2026-06-30"
DATA_BUDGET_S, PROD_BUDGET_S, PEAK_BUDGET_GIB = 300.0, 600.0, 4.0
TOP_N = 2000


def write_profiles(config: Path, n_symbols: int, n_bars: int) -> None:
    """Step 1: the scale check's two profiles (all symbols; the top 2,000 by value traded)."""
    for name, limit in (("big_crypto", n_symbols), ("top_crypto", min(TOP_N, n_symbols))):
        scanner = {"universe": "synthetic-crypto", "direction": "LONG",
                   "filters": [{"field": "volume", "op": ">", "value": 0}],
                   "sort": {"field": "value_traded", "order": "desc"}, "limit": limit}
        (config / "scanners" / f"{name}.yaml").write_text(yaml.safe_dump(scanner))
    manifest = yaml.safe_load((config / "manifest.yaml").read_text())
    for name in ("big_crypto", "top_crypto"):
        manifest["profiles"][name] = {
            "provider": {"name": "synthetic", "seed": 7, "sizes": {"synthetic-crypto": n_symbols}},
            "scanners": [name], "history_bars": n_bars,
        }
    (config / "manifest.yaml").write_text(yaml.safe_dump(manifest, sort_keys=False))


def measure(cmd: list[str], log: Path) -> tuple[int, float, float]:
    """Step 2: (exit code, wall seconds, peak RSS GiB of the command and its descendants).
    Call it in a fresh process per command: RUSAGE_CHILDREN keeps the largest child seen."""
    t0 = time.monotonic()
    with open(log, "w") as fh:
        rc = subprocess.call(cmd, stdout=fh, stderr=subprocess.STDOUT)
    wall = time.monotonic() - t0
    return rc, wall, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20


def run_measured(cmd: list[str], log: Path) -> tuple[int, float, float]:
    """`measure` in a fresh interpreter, so one command's peak never leaks into the next."""
    code = ("import json, sys; sys.path.insert(0, sys.argv[1]); from scale import measure; "
            "from pathlib import Path; print(json.dumps(measure(sys.argv[3:], Path(sys.argv[2]))))")
    out = subprocess.run([sys.executable, "-c", code, str(Path(__file__).parent), str(log), *cmd],
                         capture_output=True, text=True, check=True)
    rc, wall, peak = json.loads(out.stdout)
    return int(rc), float(wall), float(peak)


def steps_of(data: Path, run_id: str) -> dict[str, dict[str, float | str | None]]:
    """Step 3: each step's status, seconds and peak memory from run.json."""
    path = data / "runs" / run_id / "run.json"
    if not path.exists():
        return {}
    rec = json.loads(path.read_text())
    return {name: {"status": s.get("status"), "seconds": s.get("seconds"),
                   "peak_rss_gib": s.get("peak_rss_gib")}
            for name, s in rec.get("steps", {}).items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--symbols", type=int, default=10000)
    ap.add_argument("--bars", type=int, default=2500)
    ap.add_argument("--keep", type=Path, help="work in this folder and keep it")
    ap.add_argument("--no-save", action="store_true", help="do not update results/scale.json")
    ap.add_argument("--data-only", action="store_true", help="skip the production half")
    args = ap.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="portflow-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    config, data = work / "configs", work / "data"
    shutil.rmtree(config, ignore_errors=True)
    shutil.copytree(packaged_config_dir(), config)
    write_profiles(config, args.symbols, args.bars)
    base = [sys.executable, "-m", "portflow.cli", "--data-dir", str(data), "--config-dir",
            str(config), "--as-of", AS_OF]
    result: dict[str, object] = {
        "symbols": args.symbols, "bars": args.bars, "measured_at": time.strftime("%Y-%m-%d"),
    }
    rc, wall, peak = run_measured([*base, "flow-data", "--profile", "big_crypto", "--run-id",
                                   "big-data"], work / "flow-data.log")
    if rc != 0:
        raise SystemExit(f"flow-data exited {rc}; see {work / 'flow-data.log'}")
    result["flow_data"] = {"seconds": round(wall, 1), "peak_rss_gib": round(peak, 2),
                           "steps": steps_of(data, "big-data")}
    # Step 4: the production half, once flow-production runs validation (the integrator's).
    if args.data_only:
        result["production"] = {"status": "skipped (--data-only)"}
    else:
        result["production"] = production_half(base, data, work)
    if not args.no_save:
        RESULT.parent.mkdir(exist_ok=True)
        RESULT.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    if args.keep is None:
        shutil.rmtree(work)


def production_half(base: list[str], data: Path, work: Path) -> dict[str, object]:
    """Step 4: the top 2,000 through flow-production with validation (no analysis)."""
    rc, _, _ = run_measured([*base, "flow-data", "--profile", "top_crypto", "--run-id",
                             "top-data"], work / "top-data.log")
    prc, pwall, ppeak = run_measured([*base, "flow-production", "--profile", "top_crypto",
                                      "--skip-analysis", "--run-id", "top-prod"],
                                     work / "production.log")
    validated = (data / "runs" / "top-prod" / "validation" / "windows.parquet").exists()
    if rc != 0:
        return {"status": f"flow-data top_crypto exited {rc}"}
    if prc != 0:
        return {"status": f"flow-production exited {prc}", "seconds": round(pwall, 1)}
    if not validated:
        return {"status": "validation not available yet (no validation/windows.parquet)",
                "seconds": round(pwall, 1), "peak_rss_gib": round(ppeak, 2)}
    return {"seconds": round(pwall, 1), "peak_rss_gib": round(ppeak, 2),
            "steps": steps_of(data, "top-prod")}


if __name__ == "__main__":
    main()
