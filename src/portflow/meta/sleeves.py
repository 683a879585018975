"""One leaf sleeve of a meta run as an executor task (SPEC §7.1).

:func:`run_sleeve` is what the executor seam (:mod:`portflow.executors`) runs for every leaf,
in a Ray worker or in the calling process alike:

1. Cap the threads: BLAS/OpenMP pools (threadpoolctl) and numba's parallel kernels
   (``numba.set_num_threads``) to ``task.threads`` for the duration of the task, restored
   afterwards. Whichever executor runs a sleeve, it computes with the same number of threads,
   so ``--executor local`` and Ray give identical numbers and two tasks never oversubscribe
   the cores they were given.
2. Rebuild the context from plain values (absolute data and config dirs, the clock): a task
   carries no live objects, so it pickles to any worker, and a worker never depends on its
   current directory. Its ``jobs`` is ``task.jobs`` (1): the sleeve's walk-forward runs its
   windows inline instead of on a process pool of every core. The sleeves are the meta run's
   unit of parallelism (one Ray task of 1 CPU each); a pool per sleeve would start a pool of
   processes inside every task (each importing the whole stack again) and put sleeves x cores
   processes on the cores. Serial or on Ray, a sleeve then does exactly the same work.
3. Run the whole Phase 2 of the sleeve — the same :func:`portflow.alpha.pipeline.flow_production`
   as `flow-production`, nothing copied — into its workspace under the meta run
   (``parent``), pinned to the data run the meta run resolved for it.
4. Never raise for a sleeve failure: the outcome carries the status, the one-line reason and the
   exit code its error maps to (3 for a data or health gate), so the meta run can fail with the
   sleeve's path and reason — or drop it when the profile allows missing sleeves.

:func:`sleeve_executor` makes what runs them: the local executor inline (one after the other
in the calling process), or Ray tasks of 1 CPU. Ray's fixed costs are hidden where they can
be: the cluster starts in the background as soon as the executor is made (the CLI makes it
before importing the rest of the meta run, so those imports and the planning overlap the
cluster's start-up), and :func:`warm_worker` runs on each worker the leaves will use as soon
as the cluster is up, so the workers' own imports overlap whatever the driver still has to do
(most useful when joining a running cluster, which is up at once). Warm or cold, a sleeve
computes the same.
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from portflow.errors import UsageError
from portflow.executors import Executor, LocalExecutor, RayExecutor, thread_cap

if TYPE_CHECKING:
    from portflow.config import Config

EXECUTORS = ("ray", "local")

THREADS_PER_SLEEVE = 1
#: Worker processes of a sleeve's own fan-out (its walk-forward windows): inline.
JOBS_PER_SLEEVE = 1


@dataclass(frozen=True)
class SleeveTask:
    """Everything one leaf needs, as plain values. parent: absolute folder the sleeve's
    workspace is created in (``.../sleeves``); data_run: the pinned Phase-1 run."""

    path: str
    sleeve_id: str
    profile: str
    data_dir: str
    config_dir: str
    as_of: str
    data_run: str
    parent: str
    skip_analysis: bool = False
    skip_validation: bool = False
    threads: int = THREADS_PER_SLEEVE
    jobs: int = JOBS_PER_SLEEVE
    debug: bool = False


@dataclass(frozen=True)
class SleeveOutcome:
    """What a leaf task reports. run_id: the nested run id (``META/sleeves/ID``), None when
    the run could not even be created; exit_code: the CLI exit code of the failure (0 when it
    succeeded); failed_path: for a nested meta, the deepest sleeve whose failure failed it."""

    path: str
    status: str
    seconds: float
    run_id: str | None = None
    failure_reason: str | None = None
    exit_code: int = 0
    host: str = ""
    pid: int = 0
    failed_path: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == "succeeded"


def sleeve_executor(config: Config, profile: str, kind: str,
                    ray_address: str | None) -> Executor:
    """The executor of meta `profile`'s leaves (`--executor`, `--ray-address`, the profile's
    `num_cpus`); a Ray one is already starting in the background when this returns, and will
    warm as many workers as the profile has leaves (module docstring)."""
    if kind not in EXECUTORS:
        raise UsageError(f"--executor '{kind}' is not one of: {', '.join(EXECUTORS)}")
    if ray_address and kind != "ray":
        raise UsageError("--ray-address joins a Ray cluster; it needs --executor ray")
    if kind == "local":
        return LocalExecutor(jobs=1)
    executor = RayExecutor(address=ray_address, num_cpus=config.meta(profile).num_cpus,
                           warm=functools.partial(warm_worker, str(config.config_dir.resolve())),
                           warm_tasks=_leaves(config, profile))
    executor.start(background=True)
    return executor


def _leaves(config: Config, profile: str) -> int:
    prof = config.profile(profile)
    return sum(_leaves(config, r.target) for r in prof.sleeves) if prof.kind == "meta" else 1


def warm_worker(config_dir: str) -> None:
    """What a fresh worker does before its first sleeve, done ahead of it: import the Phase 2
    stack and load the configuration (which imports the providers it names)."""
    try:
        from portflow.alpha import pipeline  # noqa: F401  (imported for its side effect)
        from portflow.config import load_config

        load_config(config_dir)
    except Exception:
        # only a head start: the sleeve itself meets the same error and reports it as one
        # line (an error left in an unread task would print a traceback instead)
        return


def run_sleeve(task: SleeveTask) -> SleeveOutcome:
    """Steps 1-4 for one leaf."""
    import pandas as pd

    from portflow.alpha import pipeline
    from portflow.context import Context
    from portflow.errors import PortflowError

    t0 = time.perf_counter()
    host, pid = socket.gethostname(), os.getpid()
    ctx = Context(data_dir=Path(task.data_dir), config_dir=task.config_dir,
                  as_of=pd.Timestamp(task.as_of, tz="UTC"), debug=task.debug, jobs=task.jobs)
    run_id = f"{Path(task.parent).relative_to(Path(task.data_dir) / 'runs')}/{task.sleeve_id}"
    try:
        # The sleeve's closing weights table goes to its workspace, not the meta's stdout.
        with thread_cap(task.threads), contextlib.redirect_stdout(io.StringIO()):
            run = pipeline.flow_production(
                ctx, task.profile, task.sleeve_id, task.data_run,
                skip_analysis=task.skip_analysis, skip_validation=task.skip_validation,
                parent=Path(task.parent),
            )
    except PortflowError as exc:
        return SleeveOutcome(task.path, "failed", _secs(t0), _existing(task, run_id),
                             str(exc), exc.exit_code, host=host, pid=pid)
    except Exception as exc:
        first = str(exc).splitlines()[0] if str(exc) else ""
        return SleeveOutcome(task.path, "failed", _secs(t0), _existing(task, run_id),
                             f"unexpected error {type(exc).__name__}: {first}", 1, host=host, pid=pid)
    return SleeveOutcome(task.path, str(run.record["status"]), _secs(t0), run.run_id, host=host, pid=pid)


def _secs(t0: float) -> float:
    return round(time.perf_counter() - t0, 3)


def _existing(task: SleeveTask, run_id: str) -> str | None:
    """The sleeve's run id when its workspace exists (it fails before creating one when,
    e.g., its data run has no candidates for it)."""
    return run_id if (Path(task.data_dir) / "runs" / run_id / "run.json").is_file() else None
