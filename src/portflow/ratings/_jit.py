"""numba configuration shared by the ratings kernels.

Compilation cache (``cache=True`` on every kernel):

1. numba keys a cached kernel on its *own* source file only, but the engine inlines kernels
   from the other files of this package: after an upgrade that touched only ``_core.py`` it
   would serve stale machine code. So the cache directory is keyed by a hash of every source
   file of ``portflow.ratings`` and the numba version (:func:`_cache_dir`), set before any
   kernel is decorated: a changed file means a fresh directory and a recompile, never stale
   code.
2. The directory is ``<NUMBA_CACHE_DIR>/portflow-ratings-<hash>`` when ``NUMBA_CACHE_DIR`` is
   set, else ``__pycache__/numba-<hash>`` next to this file (the editable install), else
   ``~/.cache/portflow/numba-<hash>`` when the package directory is read-only. A second process
   loads the compiled kernels instead of recompiling them (30-40 s saved once per machine).

All kernels use ``error_model="numpy"``: a division by zero yields inf/NaN like numpy instead of
raising inside a hot loop (every such division is guarded explicitly anyway), and no
``fastmath``, because it would break NaN tests and the exact-tie guarantees.

Signature pinning (:class:`Pinned`): the panel engine is compiled for exactly one signature
whose inputs are 2-D float64 arrays of any layout ('A') and read-only. Writable, read-only,
C-, F-ordered and strided views (pandas 3 copy-on-write hands out read-only arrays) all convert
to it, so one compiled version serves every caller and no call compiles a new variant.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar, cast

import numba
from numba import types

F = TypeVar("F", bound=Callable[..., Any])


def _cache_dir() -> Path:
    """Rule 1-2 of the module docstring: a cache directory keyed by this package's sources."""
    here = Path(__file__).resolve().parent
    digest = hashlib.sha256(numba.__version__.encode())
    for src in sorted(here.glob("*.py")):
        digest.update(src.name.encode() + src.read_bytes())
    key = digest.hexdigest()[:16]
    if os.environ.get("NUMBA_CACHE_DIR"):
        return Path(os.environ["NUMBA_CACHE_DIR"]) / f"portflow-ratings-{key}"
    local = here / "__pycache__"
    if os.access(here, os.W_OK) and (not local.exists() or os.access(local, os.W_OK)):
        return local / f"numba-{key}"
    return Path.home() / ".cache" / "portflow" / f"numba-{key}"


numba.config.CACHE_DIR = str(_cache_dir())  # type: ignore[attr-defined]

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
