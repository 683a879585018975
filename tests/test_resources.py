"""Peak memory of a block (run.json `peak_rss_gib`), without resetting the kernel's peak."""

from __future__ import annotations

import subprocess
import sys


def test_block_peak_sees_its_allocation_and_leaves_the_process_peak_alone() -> None:
    # a fresh process, so earlier tests' memory does not set the lifetime peak
    code = """
import time, numpy as np
from portflow.resources import PeakRss, lifetime_peak_gib
big = np.ones(2**27); big[::512] = 2; del big          # ~1 GiB, before the blocks
with PeakRss() as small:
    a = np.ones(2**25); a[::512] = 2; time.sleep(0.1); del a  # ~0.25 GiB inside
with PeakRss() as idle:
    time.sleep(0.05)
print(small.gib, idle.gib, lifetime_peak_gib())
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    small, idle, lifetime = map(float, out)
    assert lifetime > 0.95  # the 1 GiB array still counts: no reset happened
    assert small - idle > 0.2  # the block's own 0.25 GiB shows, sampled
    assert small < 0.9 and idle < small  # and not the earlier, larger peak
