"""Peak resident memory of this process over a block of work (run.json `peak_rss_gib`,
benchmarks).

1. The process's lifetime peak (`getrusage(RUSAGE_SELF).ru_maxrss`) is read when the block
   starts and when it ends. If it grew, the block set a new record: that record is the
   block's exact peak.
2. Otherwise the block's peak is below an earlier one, and comes from sampling: a daemon
   thread reads the current RSS (/proc/self/statm) every `SAMPLE_SECONDS` while the block
   runs (spikes shorter than that can be missed; never over-reported).
The kernel's peak counter is never reset (writing /proc/self/clear_refs would make every
outside measurement of the process's peak — `time -v`, a parent's RUSAGE_CHILDREN — report
only the last block). Memory of child processes (a process pool, Ray workers) is not
included. Where /proc is missing, step 2 falls back to the lifetime peak (an upper bound).
"""

from __future__ import annotations

import os
import resource
import sys
import threading
from pathlib import Path
from types import TracebackType

SAMPLE_SECONDS = 0.02
_GIB = 2**30
_STATM = Path("/proc/self/statm")
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def lifetime_peak_gib() -> float:
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return maxrss / _GIB if sys.platform == "darwin" else maxrss * 1024 / _GIB  # bytes vs KiB


def current_rss_gib() -> float | None:
    try:
        return int(_STATM.read_text().split()[1]) * _PAGE / _GIB
    except (OSError, IndexError, ValueError):
        return None


class PeakRss:
    """``with PeakRss() as peak: ...`` then ``peak.gib``: the block's peak RSS in GiB."""

    def __init__(self) -> None:
        self.gib = 0.0
        self._sampled = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, name="peak-rss", daemon=True)

    def _sample(self) -> None:
        while True:
            now = current_rss_gib()
            if now is None:
                return
            self._sampled = max(self._sampled, now)
            if self._stop.wait(SAMPLE_SECONDS):
                return

    def __enter__(self) -> PeakRss:
        self._before = lifetime_peak_gib()
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stop.set()
        self._thread.join()
        after = lifetime_peak_gib()
        now = current_rss_gib()
        if after > self._before or now is None:
            self.gib = after
        else:
            self.gib = max(self._sampled, now)
