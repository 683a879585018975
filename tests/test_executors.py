from __future__ import annotations

import pytest

from portflow.executors import LocalExecutor, RayExecutor


def _square(x: int) -> int:
    if x == 3:
        raise ValueError("three")
    return x * x


@pytest.mark.parametrize("jobs", [1, 4])
def test_local_executor_yields_every_outcome_and_keeps_failures(jobs: int) -> None:
    out = {o.item: o for o in LocalExecutor(jobs=jobs).map(_square, range(6))}
    assert sorted(out) == list(range(6))
    assert out[3].error is not None and "three" in str(out[3].error)
    assert {k: o.value for k, o in out.items() if o.ok} == {0: 0, 1: 1, 2: 4, 4: 16, 5: 25}


@pytest.mark.slow
@pytest.mark.ray
def test_ray_executor_on_a_real_local_cluster() -> None:
    import ray

    try:
        out = {o.item: o for o in RayExecutor(num_cpus=2).map(_square, range(5))}
    finally:
        ray.shutdown()
    assert out[2].value == 4 and not out[3].ok and "three" in str(out[3].error)


def _niceness(_: object = None) -> int:
    import os

    return os.nice(0)


@pytest.mark.slow
@pytest.mark.ray
def test_ray_executor_started_in_the_background_runs_at_the_callers_niceness_and_shuts_down(
) -> None:
    import os

    import ray

    ex = RayExecutor(num_cpus=2, warm=_niceness, warm_tasks=1)
    ex.start(background=True)  # returns at once; map waits for the cluster
    try:
        out = {o.item: o.value for o in ex.map(_niceness, range(2))}
        assert ray.is_initialized()
    finally:
        ex.close()
    assert not ray.is_initialized()  # shut down by the thread that started it
    ex.close()  # a second close is a no-op
    assert ex.startup_seconds is not None and ex.startup_seconds > 0
    # Ray's default adds 15 to the nice value: the workers would yield the cores to the rest
    assert out == {0: os.nice(0), 1: os.nice(0)}


_HEAD = """
import sys, ray
ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
print(ray.get_runtime_context().gcs_address, flush=True)
sys.stdin.read()
ray.shutdown()
"""
_JOIN = """
import sys
from portflow.errors import RunError
from portflow.executors import RayExecutor
ex = RayExecutor(address=sys.argv[1])
try:
    print([o.value for o in ex.map(abs, [-3])])
except RunError as exc:
    print("RunError:", exc)
finally:
    ex.close()
"""


@pytest.mark.slow
@pytest.mark.ray
def test_ray_executor_joins_a_running_cluster_by_address_with_its_auth_token(tmp_path) -> None:
    """SPEC §7.1 `--ray-address`: a second process joins a running cluster (started here the
    way `ray.init` starts one: token authentication on). Without RAY_AUTH_MODE=token Ray
    joins an explicit address unauthenticated and is refused: one line says how to fix it."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    head = subprocess.Popen([sys.executable, "-c", _HEAD], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    try:
        assert head.stdout is not None
        address = head.stdout.readline().strip()
        assert address, "the head process did not start a cluster"

        def join(**extra: str) -> str:
            out = subprocess.run([sys.executable, "-c", _JOIN, address], capture_output=True,
                                 text=True, timeout=120, env={**env, **extra}, cwd=tmp_path)
            return out.stdout.strip().splitlines()[-1]

        refused = join()
        assert refused.startswith(f"RunError: cannot join the Ray cluster at {address}")
        assert "RAY_AUTH_MODE=token" in refused
        assert join(RAY_AUTH_MODE="token") == "[3]"
    finally:
        assert head.stdin is not None
        head.stdin.close()
        head.wait(timeout=60)
