"""Terminal output: rich progress bars on a terminal, plain log lines otherwise."""

from __future__ import annotations

import sys
import time
from types import TracebackType

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

console = Console(stderr=True, highlight=False)


def log(message: str) -> None:
    """One plain progress line on stderr (results go to stdout)."""
    console.print(message, markup=False, soft_wrap=True)


class Tracker:
    """Progress of `total` items: a rich bar on a terminal, a line every ~2 s otherwise."""

    def __init__(self, description: str, total: int) -> None:
        self.description = description
        self.total = total
        self.done = 0
        self._live = sys.stderr.isatty()
        self._last = 0.0
        self._progress: Progress | None = None

    def __enter__(self) -> Tracker:
        if self._live:
            self._progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=console,
                transient=True,
            )
            self._progress.start()
            self._task = self._progress.add_task(self.description, total=self.total)
        return self

    def advance(self, n: int = 1) -> None:
        self.done += n
        if self._progress is not None:
            self._progress.update(self._task, advance=n)
        elif time.monotonic() - self._last > 2.0 or self.done == self.total:
            self._last = time.monotonic()
            log(f"{self.description}: {self.done}/{self.total}")

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._progress is not None:
            self._progress.stop()
