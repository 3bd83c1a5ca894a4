"""Imported first by the Celery workers of the scale-out test: the first worker process to
commit a lake data file (an atomic rename into a ``shard=`` folder) writes its pid to
``MF_PAUSE_MARKER`` and stops there, so the test can ``kill -9`` a worker that is certainly in
the middle of a step. The marker is created exclusively: only one worker pauses; the others run
normally.
"""

import os
import time

_MARKER = os.environ.get("MF_PAUSE_MARKER")


def _wrap(real):
    def rename(src, dst, *args, **kwargs):
        if _MARKER and "shard=" in os.fspath(dst):
            try:
                fd = os.open(_MARKER, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                pass
            else:
                os.write(fd, str(os.getpid()).encode())
                os.close(fd)
                time.sleep(600)  # until the test kills this worker
        return real(src, dst, *args, **kwargs)

    return rename


os.replace = _wrap(os.replace)
os.rename = _wrap(os.rename)
