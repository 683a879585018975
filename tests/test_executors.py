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
