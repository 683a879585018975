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
   ``~/.cache/portflow/numba-<hash>`` when the package directory is read-only, else (a
   read-only home too, e.g. a service account) ``<tmp>/portflow-numba-<uid>/<hash>``: the first
   of these that can be written, because numba refuses to decorate a cached kernel without a
   writable directory. A second process loads the compiled kernels instead of recompiling them
   (30-40 s saved once per machine).

All kernels use ``error_model="numpy"``: a division by zero yields inf/NaN like numpy instead of
raising inside a hot loop (every such division is guarded explicitly anyway), and no
``fastmath``, because it would break NaN tests and the exact-tie guarantees.

Signature pinning (:class:`Pinned`): the panel engine is compiled for exactly one signature
whose inputs are 2-D float64 arrays of any layout ('A') and read-only. Writable, read-only,
C-, F-ordered and strided views (pandas 3 copy-on-write hands out read-only arrays) all convert
to it, so one compiled version serves every caller and no call compiles a new variant.

Prefetch hints (:data:`prefetch_read`, :data:`prefetch_write`): LLVM's ``llvm.prefetch`` on
the address of ``a[i, j]``, for loops that walk a C-ordered panel down a block of columns.
Each row of the block is a short run of cache lines one whole panel row away from the last,
too far for the hardware prefetchers, so without the hint every run is a demand miss. A
prefetch never faults and changes no value.

First use on a machine (or after an upgrade) compiles for ~40 s; when the cache holds no index
file of the kernel about to compile, one line on stderr says so (once per process), so the
first run is not silently stuck.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar, cast

import numba
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from portflow.ui import log

F = TypeVar("F", bound=Callable[..., Any])


def _cache_dir() -> Path:
    """Rule 1-2 of the module docstring: a cache directory keyed by this package's sources."""
    here = Path(__file__).resolve().parent
    digest = hashlib.sha256(numba.__version__.encode())
    for src in sorted(here.glob("*.py")):
        digest.update(src.name.encode() + src.read_bytes())
    key = digest.hexdigest()[:16]
    if os.environ.get("NUMBA_CACHE_DIR"):
        choices = [Path(os.environ["NUMBA_CACHE_DIR"]) / f"portflow-ratings-{key}"]
    else:
        choices = [here / "__pycache__" / f"numba-{key}",
                   Path.home() / ".cache" / "portflow" / f"numba-{key}"]
    choices.append(Path(tempfile.gettempdir()) / f"portflow-numba-{os.getuid()}" / key)
    return next((c for c in choices if _writable(c)), choices[-1])


def _writable(folder: Path) -> bool:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return False
    return os.access(folder, os.W_OK | os.X_OK)


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


def _prefetch(write: int) -> Any:
    @intrinsic
    def prefetch(typingctx, a, i, j):
        if not (isinstance(a, types.Array) and a.ndim == 2):
            return None

        def codegen(context, builder, sig, args):
            arr = context.make_array(sig.args[0])(context, builder, args[0])
            ptr = cgutils.get_item_pointer(
                context, builder, sig.args[0], arr, args[1:], wraparound=False, boundscheck=False
            )
            i8p = ir.PointerType(ir.IntType(8))
            i32 = ir.IntType(32)
            fn = builder.module.declare_intrinsic(
                "llvm.prefetch", [i8p], ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32])
            )
            # (address, 0 read / 1 write, locality 3: keep in all cache levels, 1: data)
            builder.call(fn, [builder.bitcast(ptr, i8p), i32(write), i32(3), i32(1)])
            return context.get_dummy_value()

        return types.void(a, i, j), codegen

    return prefetch


#: ``prefetch_read(a, i, j)``: ask for the cache line of ``a[i, j]`` (2-D array) to be read.
prefetch_read = _prefetch(0)
#: ``prefetch_write(a, i, j)``: the same, for a line about to be written (fetched exclusive).
prefetch_write = _prefetch(1)


COMPILE_NOTICE = ("compiling the ratings kernels (first run after an install or upgrade,"
                  " ~40 s; cached for later runs)")
_noticed = threading.Event()


def is_cached(dispatcher: Any) -> bool:
    """Whether the compilation cache holds an index file of `dispatcher`'s function."""
    name = dispatcher.py_func.__qualname__
    return any(Path(numba.config.CACHE_DIR).rglob(f"*.{name}-*.nbi"))  # type: ignore[attr-defined]


def _notice_compile() -> None:
    if not _noticed.is_set():
        _noticed.set()
        log(COMPILE_NOTICE)


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
                    if not is_cached(self._dispatcher):
                        _notice_compile()
                    self._dispatcher.compile(self._signature)
                    self._dispatcher.disable_compile()
                    self._ready = True
        return self._dispatcher(*args)
