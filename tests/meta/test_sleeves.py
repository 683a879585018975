"""The leaf task and the executor that runs it (meta/sleeves.py): the sleeve's own fan-out is
inline whichever executor runs it, and the executor options are checked before anything
starts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from portflow.alpha import pipeline as phase2
from portflow.config import load_config
from portflow.errors import RunError, UsageError
from portflow.executors import LocalExecutor
from portflow.meta import sleeves
from portflow.meta.sleeves import SleeveTask, run_sleeve, sleeve_executor
from tests.conftest import AS_OF


def test_a_sleeve_runs_its_walk_forward_inline_whichever_executor_runs_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}

    def production(ctx: Any, *args: Any, **kwargs: Any) -> None:
        seen["jobs"] = ctx.jobs
        raise RunError("stopped here")

    monkeypatch.setattr(phase2, "flow_production", production)
    parent = tmp_path / "runs" / "m" / "sleeves"
    out = run_sleeve(SleeveTask(path="long", sleeve_id="long", profile="crypto_long",
                                data_dir=str(tmp_path), config_dir="", as_of=AS_OF,
                                data_run="base", parent=str(parent)))
    assert seen["jobs"] == sleeves.JOBS_PER_SLEEVE == 1  # not a process pool per sleeve
    assert (out.status, out.failure_reason, out.exit_code) == ("failed", "stopped here", 2)


def test_the_executor_options_are_checked_and_local_runs_the_leaves_inline() -> None:
    config = load_config(None)
    local = sleeve_executor(config, "crypto_meta", "local", None)
    assert isinstance(local, LocalExecutor) and local.jobs == 1
    with pytest.raises(UsageError, match="--executor 'dask' is not one of: ray, local"):
        sleeve_executor(config, "crypto_meta", "dask", None)
    with pytest.raises(UsageError, match="--ray-address joins a Ray cluster"):
        sleeve_executor(config, "crypto_meta", "local", "10.0.0.1:6379")
    assert sleeves._leaves(config, "fractal_meta") == 3  # crypto/long, crypto/short, equities
