"""One executor seam: a local pool or Ray behind the same ``map`` (SPEC §8 Scalable).

``executor.map(fn, items)`` runs ``fn(item)`` for every item and yields an :class:`Outcome`
per item *as each completes* (so callers can write results and show progress while the rest
run). A failing item yields its exception instead of stopping the others.

- ``LocalExecutor(jobs, kind="thread")``: threads for I/O-bound work (provider fetches);
  ``kind="process"`` for CPU-bound work; ``jobs=1`` runs inline in the caller (tests).
- ``RayExecutor(address=None, num_cpus=None, warm=None, warm_tasks=None)``: Ray tasks on a local cluster
  (started on first use, or ahead of it in the background) or on an existing one at
  ``address``; ``close()`` shuts down what it started.
- ``Capped(fn, threads)``: ``fn`` with its BLAS/OpenMP and numba threads capped
  (:func:`thread_cap`), for CPU-bound items that already run one per core: at the sizes of a
  sleeve (hundreds of columns) a second BLAS thread costs more in synchronisation than it
  gains, and two of them per worker oversubscribe the cores.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from portflow.errors import RunError

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class Outcome(Generic[T, R]):
    item: T
    value: R | None = None
    error: BaseException | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


class Executor(Protocol):
    def map(self, fn: Callable[[T], R], items: Iterable[T]) -> Iterator[Outcome[T, R]]: ...


#: Ray's settings for a local cluster started here. By default Ray adds 15 to its workers' nice
#: value (so that its own daemons stay responsive); here the workers do the command's work
#: while the driver only waits, and at +15 any process running at the caller's priority would
#: take the cores from them. So they keep the caller's priority, as the same work does on the
#: local executor. (Where Linux shares the CPU by session, as on the shared benchmark machine,
#: priorities only matter inside the session and this changes nothing measurable.)
LOCAL_CLUSTER_CONFIG: dict[str, Any] = {"worker_niceness": 0}


def default_jobs() -> int:
    return max(1, os.cpu_count() or 1)


class LocalExecutor:
    def __init__(self, jobs: int | None = None, kind: str = "thread") -> None:
        if kind not in ("thread", "process"):
            raise ValueError("kind must be 'thread' or 'process'")
        self.jobs = jobs or default_jobs()
        self.kind = kind

    def map(self, fn: Callable[[T], R], items: Iterable[T]) -> Generator[Outcome[T, R]]:
        """Close the generator (``contextlib.closing``) to cancel the items not yet started
        when the caller stops early, e.g. on Ctrl-C."""
        todo = list(items)
        if self.jobs == 1 or len(todo) <= 1:
            for item in todo:
                try:
                    yield Outcome(item, fn(item))
                except Exception as exc:
                    yield Outcome(item, error=exc)
            return
        pool_cls = cf.ThreadPoolExecutor if self.kind == "thread" else cf.ProcessPoolExecutor
        with pool_cls(max_workers=self.jobs) as pool:
            futures = {pool.submit(fn, item): item for item in todo}
            try:
                for fut in cf.as_completed(futures):
                    failure = fut.exception()
                    if failure is None:
                        yield Outcome(futures[fut], fut.result())
                    else:
                        yield Outcome(futures[fut], error=failure)
            finally:
                for fut in futures:
                    fut.cancel()


class RayExecutor:
    """Ray tasks of 1 CPU each, on a local cluster of `num_cpus` (default: the cores) started on
    first use, or on the cluster at `address`.

    Its life cycle, for a caller that wants to hide Ray's fixed costs behind its own work:

    - ``start(background=True)`` starts (or joins) the cluster on a thread of its own and
      returns at once: the caller's imports and planning overlap the cluster's start-up (~2.5 s
      of wall and ~3.5 s of CPU for a local cluster's daemons on 2 cores). The next ``start()``
      or ``map()`` waits for it and raises its error, if any; ``startup_seconds`` is how long
      it took. That thread stays alive until ``close()`` and shuts the cluster down itself: on
      Linux, Ray's processes die with the thread that started them. Started off the main
      thread, Ray also leaves the process's SIGTERM handler (:mod:`portflow.signals`) alone.
    - ``warm``: a picklable no-argument callable run as ``warm_tasks`` tasks (default: one per
      CPU of the cluster, at most that) as soon as it is up, before any task, so the workers
      import what the tasks need while the caller is still busy (Ray reuses those workers for
      the tasks).
    - ``close()`` shuts down a cluster this executor started (disconnects from one it joined;
      one already running in this process is left alone); ``close(wait=False)`` lets it go on
      in the background — Ray's processes take ~1 s to exit — and a later ``close()`` waits.
    """

    def __init__(self, address: str | None = None, num_cpus: int | None = None,
                 warm: Callable[[], object] | None = None,
                 warm_tasks: int | None = None) -> None:
        self.address = address
        self.num_cpus = num_cpus
        self.warm = warm
        self.warm_tasks = warm_tasks
        self.startup_seconds: float | None = None
        self._started: cf.Future[None] | None = None
        self._owner: threading.Thread | None = None
        self._release = threading.Event()
        self._closing: threading.Thread | None = None
        self._owned = False
        self._warming: list[Any] = []

    def _init(self) -> None:
        import ray

        t = time.perf_counter()
        if not ray.is_initialized():
            self._owned = True
            try:
                if self.address:
                    ray.init(address=self.address, log_to_driver=False)
                else:
                    ray.init(num_cpus=self.num_cpus or default_jobs(), log_to_driver=False,
                             include_dashboard=False, _system_config=LOCAL_CLUSTER_CONFIG)
            except Exception as exc:
                raise RunError(start_error(self.address, exc)) from exc
        if self.warm is not None:
            cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
            warm = ray.remote(num_cpus=1)(_call)
            # kept so that the tasks are not cancelled; their results are never read
            self._warming = [warm.remote(self.warm)
                             for _ in range(min(cpus, self.warm_tasks or cpus))]
        self.startup_seconds = time.perf_counter() - t

    def _own(self, started: cf.Future[None]) -> None:
        """The thread of a background start: start, wait for close(), shut down."""
        try:
            with _quiet_sigterm_warning():
                self._init()
        except BaseException as exc:
            started.set_exception(exc)
        else:
            started.set_result(None)
        self._release.wait()
        self._shutdown()

    def start(self, background: bool = False) -> None:
        """Start (or join) the cluster now rather than on the first map, e.g. to time it;
        `background`: on a thread of its own, returning at once (class docstring)."""
        if self._started is None:
            started: cf.Future[None] = cf.Future()
            self._started = started
            if background:
                self._owner = threading.Thread(target=self._own, args=(started,),
                                               name="ray-cluster", daemon=True)
                self._owner.start()
            else:
                try:
                    self._init()
                except BaseException as exc:
                    started.set_exception(exc)
                else:
                    started.set_result(None)
        if not background:
            self._started.result()

    def map(self, fn: Callable[[T], R], items: Iterable[T]) -> Iterator[Outcome[T, R]]:
        self.start()
        import ray

        # fn may be any picklable callable (a closure, a callable object): it is stored
        # once in the object store and applied by one generic task.
        remote: Any = ray.remote(num_cpus=1)(_apply)
        fn_ref = ray.put(fn)
        refs = {remote.remote(fn_ref, item): item for item in items}
        pending = list(refs)
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            for ref in done:
                try:
                    yield Outcome(refs[ref], ray.get(ref))
                except Exception as exc:
                    cause = getattr(exc, "cause", None)
                    yield Outcome(refs[ref], error=cause if cause is not None else exc)

    def close(self, wait: bool = True) -> None:
        """Shut down the cluster if this executor started or joined it (class docstring)."""
        if self._started is None:
            return
        if self._owner is None and self._closing is None:
            self._closing = threading.Thread(target=self._shutdown, name="ray-shutdown")
            self._closing.start()
        self._release.set()
        if wait:
            # a start still under way (an unreachable address, Ctrl-C meanwhile) is not waited
            # for: its daemon thread shuts the cluster down once ray.init returns, or dies with
            # the process
            if self._owner is not None and self._started.done():
                self._owner.join()
            if self._closing is not None:
                self._closing.join()

    def _shutdown(self) -> None:
        self._warming = []
        if self._owned:
            import ray

            ray.shutdown()
            self._owned = False


def start_error(address: str | None, exc: BaseException) -> str:
    """One line for a cluster that does not start or cannot be joined: what, why, how to fix.
    Ray enables token authentication on the local clusters it starts (2.60) but, given an
    explicit address, joins without a token unless ``RAY_AUTH_MODE=token`` is set."""
    first = (str(exc).splitlines() or [""])[0]
    if address:
        return (f"cannot join the Ray cluster at {address} ({type(exc).__name__}: {first});"
                " check --ray-address, and for a cluster with token authentication (Ray's"
                " default) set RAY_AUTH_MODE=token here (the token from ~/.ray/auth_token or"
                " RAY_AUTH_TOKEN); or run in process with --executor local")
    return (f"cannot start a local Ray cluster ({type(exc).__name__}: {first}); run in process"
            " with --executor local")


@contextlib.contextmanager
def _quiet_sigterm_warning() -> Iterator[None]:
    """Ray warns that it sets no SIGTERM handler when started off the main thread: that is the
    point (the process keeps its own, :mod:`portflow.signals`), so the warning is dropped."""

    def keep(record: logging.LogRecord) -> bool:
        return "SIGTERM handler is not set" not in record.getMessage()

    logger = logging.getLogger("ray._private.worker")
    logger.addFilter(keep)
    try:
        yield
    finally:
        logger.removeFilter(keep)


@contextlib.contextmanager
def thread_cap(threads: int) -> Iterator[None]:
    """BLAS/OpenMP and numba threads capped at `threads` inside the block."""
    import numba
    from threadpoolctl import threadpool_limits

    before = numba.get_num_threads()
    numba.set_num_threads(threads)
    try:
        with threadpool_limits(limits=threads):
            yield
    finally:
        numba.set_num_threads(before)


@dataclass(frozen=True)
class Capped(Generic[T, R]):
    """``fn`` run under :func:`thread_cap` (picklable: it crosses to pool workers)."""

    fn: Callable[[T], R]
    threads: int = 1

    def __call__(self, item: T) -> R:
        with thread_cap(self.threads):
            return self.fn(item)


def _apply(fn: Callable[[T], R], item: T) -> R:
    return fn(item)


def _call(fn: Callable[[], object]) -> None:
    fn()
