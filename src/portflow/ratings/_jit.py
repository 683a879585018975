"""numba configuration shared by the ratings kernels.

Compilation cache (``cache=True`` on every kernel):

1. If ``NUMBA_CACHE_DIR`` is set, numba writes and reads compiled machine code there first.
2. Otherwise it uses ``__pycache__`` next to the source file. For the editable install that is
   ``src/portflow/ratings/__pycache__``, so a second process loads the compiled kernels instead
   of recompiling them (seconds saved per process, e.g. every Ray or pool worker).
3. If that directory is not writable (a read-only site-packages, a container image), numba
   falls back to the user-wide cache (``~/.cache/numba``); where even that is not writable, set
   ``NUMBA_CACHE_DIR`` to a writable path. Cache entries are keyed by the source's content
   hash, so an edited kernel is recompiled rather than served stale.

All kernels use ``error_model="numpy"``: a division by zero yields inf/NaN like numpy instead of
raising inside a hot loop (every such division is guarded explicitly anyway), and no
``fastmath``, because it would break NaN tests and the exact-tie guarantees.

Signature pinning (:class:`Pinned`): the panel engine is compiled for exactly one signature
whose inputs are 2-D float64 arrays of any layout ('A') and read-only. Writable, read-only,
C-, F-ordered and strided views (pandas 3 copy-on-write hands out read-only arrays) all convert
to it, so one compiled version serves every caller and no call compiles a new variant.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar, cast

import numba
from numba import types

F = TypeVar("F", bound=Callable[..., Any])

_serial = numba.njit(cache=True, nogil=True, error_model="numpy")
_parallel = numba.njit(cache=True, nogil=True, error_model="numpy", parallel=True)


def jit(func: F) -> F:
    """Compile a serial kernel (per-symbol column code); keeps the function's type for mypy."""
    return cast(F, _serial(func))


def pjit(func: F) -> F:
    """Compile a kernel that spreads symbols over threads with ``numba.prange``."""
    return cast(F, _parallel(func))


#: numba type of a read-only 2-D float64 input of any memory layout.
F8_2D_IN = types.Array(types.float64, 2, "A", readonly=True)
#: numba type of a writable C-ordered 2-D float64 output.
F8_2D_OUT = types.Array(types.float64, 2, "C")


class Pinned:
    """Call a numba dispatcher through one signature compiled (or loaded from cache) lazily.

    Compiling on first use rather than at import keeps ``import portflow.ratings`` cheap; after
    the first call the dispatcher refuses to compile further variants, so an argument that
    cannot convert to the pinned signature raises numba's ``TypeError`` instead of silently
    compiling a slow path.
    """

    def __init__(self, dispatcher: Any, signature: tuple[Any, ...]) -> None:
        self._dispatcher = dispatcher
        self._signature = signature
        self._lock = threading.Lock()
        self._ready = False

    def __call__(self, *args: Any) -> Any:
        if not self._ready:
            with self._lock:
                if not self._ready:
                    self._dispatcher.compile(self._signature)
                    self._dispatcher.disable_compile()
                    self._ready = True
        return self._dispatcher(*args)
