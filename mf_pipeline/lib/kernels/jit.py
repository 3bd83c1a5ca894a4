"""Numba's ``njit`` and ``prange`` for our kernel modules, with Numba imported on first use.

Importing Numba costs ~0.3 s, and loading the Dagster definitions imports every kernel module
(the assets import their steps, the steps their kernels). Without this, every ``mf`` command
would pay it, even one with nothing to compute (a run with no change, the UI).
A kernel decorated here is a :class:`Kernel` until the first kernel is used (called, or asked
for a dispatcher attribute such as ``signatures``); then Numba is imported and every kernel of
every loaded kernel module becomes the plain Numba dispatcher, so kernels calling kernels
compile exactly as with ``numba.njit``. Same options, same on-disk cache.
"""

from __future__ import annotations

import functools
import sys
import threading
from collections.abc import Callable
from typing import Any

KERNEL_MODULES = "mf_pipeline.lib.kernels."
prange = range  # each kernel module's ``prange`` becomes ``numba.prange`` when Numba loads
_LOCK = threading.Lock()


class Kernel:
    """A kernel whose Numba dispatcher is made on first use (see the module docstring)."""

    def __init__(self, func: Callable[..., Any], options: dict[str, Any]) -> None:
        functools.update_wrapper(self, func)
        self.py_func = func
        self.options = options
        self.compiled: Any = None

    def __call__(self, *args: Any) -> Any:
        return self.dispatcher(*args)

    @property
    def dispatcher(self) -> Any:
        if self.compiled is None:
            load_numba()
        return self.compiled

    def __getattr__(self, name: str) -> Any:  # signatures, py_func… of the dispatcher
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(self.dispatcher, name)


def njit(*args: Any, **options: Any) -> Any:
    """``numba.njit`` with Numba imported on first use: ``@njit(cache=True)`` or ``@njit``."""
    if args and callable(args[0]):
        return Kernel(args[0], options)
    return lambda func: Kernel(func, options)


def load_numba() -> None:
    """Import Numba and turn every kernel of the loaded kernel modules into its dispatcher.

    Module globals are rebound too, so a kernel calling another (or a module's ``prange``)
    resolves to Numba's object when the caller compiles. Called again when a kernel module
    loaded later is first used."""
    with _LOCK:
        import numba

        _skip_blas_probe()
        for name, module in list(sys.modules.items()):
            if not name.startswith(KERNEL_MODULES) or module is None:
                continue
            namespace = vars(module)
            for attr, value in list(namespace.items()):
                if isinstance(value, Kernel):
                    if value.compiled is None:
                        value.compiled = numba.njit(**value.options)(value.py_func)
                    namespace[attr] = value.compiled
                elif attr == "prange" and value is range:
                    namespace[attr] = numba.prange


def _no_blas() -> None:
    raise ImportError("BLAS probe skipped by mf_pipeline.lib.kernels.jit")


def _skip_blas_probe() -> None:
    """Import ``numba.np.arraymath`` without its BLAS probe, which imports ``scipy.linalg``
    (and ``numpy.f2py``): 0.1-0.2 s of the 0.3-0.5 s the first kernel load costs a process
    (``-X importtime`` in a 300-ticker run: ``numba.np.arraymath`` 124 ms -> 7 ms).

    The probe only picks how ``np.correlate``/``np.convolve`` compile (BLAS or a plain loop);
    no kernel of ours calls them, and ``np.dot``/``np.linalg`` still check for BLAS themselves
    when they compile. Nothing is skipped once SciPy's linear algebra is loaded anyway.
    """
    if "numba.np.arraymath" in sys.modules or "scipy.linalg" in sys.modules:
        return
    import numba.np.linalg as linalg

    probe = linalg.ensure_blas
    linalg.ensure_blas = _no_blas
    try:
        import numba.np.arraymath  # noqa: F401  (binds the stand-in, probes once, keeps False)
    finally:
        linalg.ensure_blas = probe
