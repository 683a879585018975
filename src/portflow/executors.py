"""One executor seam: a local pool or Ray behind the same ``map`` (SPEC §8 Scalable).

``executor.map(fn, items)`` runs ``fn(item)`` for every item and yields an :class:`Outcome`
per item *as each completes* (so callers can write results and show progress while the rest
run). A failing item yields its exception instead of stopping the others.

- ``LocalExecutor(jobs, kind="thread")``: threads for I/O-bound work (provider fetches);
  ``kind="process"`` for CPU-bound work; ``jobs=1`` runs inline in the caller (tests).
- ``RayExecutor(address=None, num_cpus=None)``: Ray tasks on a local cluster (started on first
  use) or on an existing one at ``address``.
- ``Capped(fn, threads)``: ``fn`` with its BLAS/OpenMP and numba threads capped
  (:func:`thread_cap`), for CPU-bound items that already run one per core: at the sizes of a
  sleeve (hundreds of columns) a second BLAS thread costs more in synchronisation than it
  gains, and two of them per worker oversubscribe the cores.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import os
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

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
    def __init__(self, address: str | None = None, num_cpus: int | None = None) -> None:
        self.address = address
        self.num_cpus = num_cpus

    def _init(self) -> Any:
        import ray

        if not ray.is_initialized():
            if self.address:
                ray.init(address=self.address, log_to_driver=False)
            else:
                ray.init(num_cpus=self.num_cpus or default_jobs(), log_to_driver=False,
                         include_dashboard=False)
        return ray

    def start(self) -> None:
        """Start (or join) the cluster now rather than on the first map, e.g. to time it."""
        self._init()

    def map(self, fn: Callable[[T], R], items: Iterable[T]) -> Iterator[Outcome[T, R]]:
        ray = self._init()
        # fn may be any picklable callable (a closure, a callable object): it is stored
        # once in the object store and applied by one generic task.
        remote = ray.remote(num_cpus=1)(_apply)
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


def make_executor(kind: str, jobs: int | None = None, address: str | None = None) -> Executor:
    if kind == "ray":
        return RayExecutor(address=address, num_cpus=jobs)
    if kind in ("thread", "process", "local"):
        return LocalExecutor(jobs=jobs, kind="thread" if kind == "local" else kind)
    raise ValueError(f"unknown executor '{kind}'")
