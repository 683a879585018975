"""Peak resident memory of this process, per step (run.json `peak_rss_gib`, benchmarks).

1. Linux keeps the process's peak RSS as `VmHWM` in /proc/self/status; writing `5` to
   /proc/self/clear_refs resets it to the current RSS (Linux >= 4.0). A step resets it when
   it starts and reads it when it ends, so each step records its own peak, not the
   process's peak so far.
2. Where either file is missing (another OS, a locked-down /proc) the fallback is
   `getrusage(RUSAGE_SELF).ru_maxrss`, the process's lifetime peak: an upper bound.
Memory of child processes (a process pool, Ray workers) is not included.
"""

from __future__ import annotations

import resource
import sys
from pathlib import Path

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")
_GIB = 2**30


def reset_peak_rss() -> bool:
    """Step 1: start a new peak window; False when the OS cannot (the peak stays cumulative)."""
    try:
        _CLEAR_REFS.write_text("5")
    except OSError:
        return False
    return True


def peak_rss_gib() -> float:
    """The peak RSS (GiB) since the last successful :func:`reset_peak_rss` (step 2 else)."""
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024 / _GIB  # kB
    except OSError:
        pass
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return maxrss / _GIB if sys.platform == "darwin" else maxrss * 1024 / _GIB  # bytes vs KiB
