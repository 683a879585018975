"""Ctrl-C and SIGTERM end a run as failed, never as a success (SPEC §2).

1. :func:`install` (called once by the CLI) makes SIGINT raise :class:`Interrupted` and SIGTERM
   raise :class:`Terminated` in the main thread. Both are ``BaseException``s outside typer's
   ``KeyboardInterrupt`` handling (which would turn Ctrl-C into a silent return code) and
   outside every ``except Exception``, so they unwind each ``with`` block on their way out:
   lakehouse locks are released, temp files removed, pending pool work is cancelled, and the
   run's lifecycle records ``failed`` with the reason ``interrupted`` / ``terminated``.
2. The CLI prints one line and exits 128 + the signal number (130 / 143, the shell
   convention), so ``flow-data && flow-production`` stops after an interrupt.
3. A signal the parent asked to ignore (``nohup``, a background job of a script) stays ignored.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from types import FrameType


class Signalled(BaseException):
    """The process was asked to stop; `reason` is recorded in run.json."""

    exit_code = 1
    reason = "stopped"
    signal_label = "a signal"

    def __str__(self) -> str:
        return self.reason


class Interrupted(Signalled):
    exit_code = 128 + signal.SIGINT
    reason = "interrupted"
    signal_label = "Ctrl-C (SIGINT)"


class Terminated(Signalled):
    exit_code = 128 + signal.SIGTERM
    reason = "terminated"
    signal_label = "SIGTERM"


def _raise(kind: type[Signalled]) -> Callable[[int, FrameType | None], None]:
    def handler(signum: int, frame: FrameType | None) -> None:
        raise kind()

    return handler


def install() -> None:
    """Rule 1 and 3; a no-op outside the main thread (Python only delivers signals there)."""
    if threading.current_thread() is not threading.main_thread():
        return
    for signum, kind in ((signal.SIGINT, Interrupted), (signal.SIGTERM, Terminated)):
        if signal.getsignal(signum) is not signal.SIG_IGN:
            signal.signal(signum, _raise(kind))
