"""Shared fixtures: a pinned clock, config dirs built in code, and one Phase-1 data dir per
test session (copied for tests that change it)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from portflow.config.loader import packaged_config_dir

AS_OF = "2026-06-30"


@pytest.fixture
def as_of() -> pd.Timestamp:
    return pd.Timestamp(AS_OF, tz="UTC")


@pytest.fixture
def config_dir(tmp_path: Path) -> Path:
    """An editable copy of the packaged configs."""
    dst = tmp_path / "configs"
    shutil.copytree(packaged_config_dir(), dst, ignore=shutil.ignore_patterns("__pycache__"))
    return dst


def portflow(*args: str, data_dir: Path, config_dir: Path | None = None,
             as_of: str = AS_OF, check: bool = False, timeout: float = 600,
             env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run the real CLI in a subprocess (as a user would)."""
    cmd = [sys.executable, "-m", "portflow.cli", "--data-dir", str(data_dir), "--as-of", as_of]
    if config_dir is not None:
        cmd += ["--config-dir", str(config_dir)]
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("PORTFLOW_")}
    full_env.update(env or {})
    proc = subprocess.run([*cmd, *args], capture_output=True, text=True, timeout=timeout,
                          env=full_env)
    if check and proc.returncode != 0:
        raise AssertionError(f"portflow {' '.join(args)} exited {proc.returncode}:\n"
                             f"{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture(scope="session")
def phase1_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data dir after `flow-data --profile crypto_meta` (crypto_long + crypto_short, one
    liquid universe) at the pinned clock, built once per session."""
    data = tmp_path_factory.mktemp("phase1") / "data"
    portflow("flow-data", "--profile", "crypto_meta", "--run-id", "base", data_dir=data,
             check=True)
    return data


@pytest.fixture
def phase1_data(phase1_base: Path, tmp_path: Path) -> Path:
    """A private copy of the session's Phase-1 data dir."""
    dst = tmp_path / "data"
    shutil.copytree(phase1_base, dst)
    return dst
