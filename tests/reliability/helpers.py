"""Shared pieces of the reliability suite: a slowed-down config, background CLI runs, and the
state of a lakehouse to compare an interrupted-then-rerun data dir with an undisturbed one."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import yaml

from tests.conftest import AS_OF

TEMP_RE = re.compile(r"(^\.?tmp|\.tmp|~$|\.part(ial)?$)")
LATER = "2026-07-30"  # a month after the session's Phase-1 clock: every symbol has bars to fetch
PRODUCTION = ("flow-production", "--profile", "crypto_long", "--skip-validation",
              "--skip-analysis")


def slow_config(config_dir: Path, latency_ms: float) -> Path:
    """`config_dir` with every provider call delayed, so signals and kills land mid-step."""
    manifest = config_dir / "manifest.yaml"
    cfg = yaml.safe_load(manifest.read_text())
    cfg["defaults"]["provider"]["latency_ms"] = latency_ms
    manifest.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return config_dir


def start(*args: str, data_dir: Path, config_dir: Path | None = None,
          as_of: str = AS_OF) -> subprocess.Popen[str]:
    """The real CLI in the background (stdout and stderr captured), with Ctrl-C delivered as
    from a terminal even when the tests themselves run as a background job of a script (which
    starts them with SIGINT ignored, and the CLI keeps an ignored signal ignored)."""
    cmd = [sys.executable, "-m", "portflow.cli", "--data-dir", str(data_dir), "--as-of", as_of]
    if config_dir is not None:
        cmd += ["--config-dir", str(config_dir)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PORTFLOW_")}
    return subprocess.Popen([*cmd, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env, preexec_fn=_default_sigint)


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def wait_for(path: Path, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise AssertionError(f"{path} did not appear within {timeout:.0f} s")
        time.sleep(0.02)


def run_json(data: Path, run_id: str) -> dict:  # type: ignore[type-arg]
    return json.loads((data / "runs" / run_id / "run.json").read_text())


def assert_no_debris(root: Path) -> None:
    """No temp files anywhere under `root`, and every parquet file opens."""
    for dirpath, _, files in os.walk(root):
        for name in files:
            path = Path(dirpath) / name
            assert not TEMP_RE.search(name), f"temp file left: {path}"
            if name.endswith(".parquet"):
                pq.read_table(path)


def lakehouse_state(data: Path) -> dict[str, object]:
    """What an interrupted-then-rerun lakehouse must share with an undisturbed one."""
    lake = data / "lakehouse"
    ohlcv = {str(p.relative_to(lake)): pd.read_parquet(p)
             for p in sorted((lake / "ohlcv").rglob("*.parquet"))}
    health = pd.read_parquet(lake / "health.parquet")[["provider", "symbol", "status", "reason",
                                                        "bar_timestamp", "last_bar"]]
    # valid_from and recorded_at are the clock and the wall time of the recording run
    symbols = pd.read_parquet(lake / "symbols.parquet").drop(columns=["valid_from", "recorded_at"])
    return {"ohlcv": ohlcv, "health": health.reset_index(drop=True),
            "symbols": symbols.reset_index(drop=True)}


def assert_same_lakehouse(got: dict[str, object], want: dict[str, object]) -> None:
    g_ohlcv, w_ohlcv = got["ohlcv"], want["ohlcv"]
    assert isinstance(g_ohlcv, dict) and isinstance(w_ohlcv, dict)
    assert sorted(g_ohlcv) == sorted(w_ohlcv)
    for name, df in w_ohlcv.items():
        pd.testing.assert_frame_equal(g_ohlcv[name], df, obj=name)
    for table in ("health", "symbols"):
        pd.testing.assert_frame_equal(got[table], want[table], obj=table)  # type: ignore[arg-type]
