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
