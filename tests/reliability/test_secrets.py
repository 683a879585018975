"""Secrets (SPEC §8): an API key set in the environment never appears in the output, the logs,
run.json or any other file a run writes, tracebacks (--debug) included."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import portflow

SECRET = "sk-live-XYZ123-do-not-leak"
ENV = {name: SECRET for name in ("PORTFLOW_TEST_SECRET_KEY", "BINANCE_API_KEY",
                                 "BINANCE_SECRET", "TRADINGVIEW_TOKEN", "CCXT_PASSWORD")}


def _assert_nowhere(data: Path, outputs: list[str]) -> None:
    for text in outputs:
        assert SECRET not in text
    for path in data.rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path


def test_a_secret_never_reaches_a_production_run_or_an_error(phase1_data: Path) -> None:
    procs = [
        portflow("--debug", "flow-production", "--profile", "crypto_long", "--skip-validation",
                 "--skip-analysis", "--run-id", "s2", data_dir=phase1_data, env=ENV),
        portflow("--debug", "flow-data", "--profile", "no_such_profile", data_dir=phase1_data,
                 env=ENV),
        portflow("runs", "show", "s2", data_dir=phase1_data, env=ENV),
    ]
    assert procs[0].returncode == 0 and procs[1].returncode == 2
    _assert_nowhere(phase1_data, [p.stdout + p.stderr for p in procs])


@pytest.mark.slow
def test_a_secret_never_reaches_a_data_run(phase1_data: Path) -> None:
    proc = portflow("--debug", "flow-data", "--profile", "crypto_meta", "--run-id", "s1",
                    data_dir=phase1_data, env=ENV, as_of="2026-07-05")
    assert proc.returncode == 0, proc.stderr[-500:]
    _assert_nowhere(phase1_data, [proc.stdout + proc.stderr])
