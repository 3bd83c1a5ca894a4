"""Imported first by a child ``mf`` process: the process dies right before its K-th commit.

Every durable write of the pipeline ends in an atomic rename (``os.replace``/``os.rename``), so
"before the K-th rename" enumerates every point where a crash leaves the lake between two
commits. ``MF_CRASH_AT=K`` kills the process with ``os._exit`` (no cleanup, no ``finally``: as
a ``kill -9`` would) just before rename K; ``MF_CRASH_COUNT_FILE`` makes a run that does not
crash write how many renames it made.
"""

import os
import threading

_AT = int(os.environ.get("MF_CRASH_AT", "0"))
_COUNT_FILE = os.environ.get("MF_CRASH_COUNT_FILE")
_lock = threading.Lock()
_count = 0
_real_exit = os._exit


def _wrap(real):
    def commit(*args, **kwargs):
        global _count
        with _lock:
            _count += 1
            if _count == _AT:
                _real_exit(137)
        return real(*args, **kwargs)

    return commit


os.replace = _wrap(os.replace)
os.rename = _wrap(os.rename)


def _exit(code: int) -> None:
    """``mf`` ends with ``os._exit`` (no teardown): record the count first."""
    if _COUNT_FILE:
        with open(_COUNT_FILE, "w") as handle:
            handle.write(str(_count))
    _real_exit(code)


os._exit = _exit
