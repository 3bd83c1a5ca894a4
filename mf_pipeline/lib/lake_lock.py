"""One writer at a time per lake: an exclusive ``fcntl.flock`` on ``<data_root>/.lake.lock``.

Two ``mf run`` at once stay correct without it (every write is atomic), but both do the same
work. Every Dagster run that writes the lake holds this lock for the whole run: the CLI's runner
around the run (``orchestration/runner.py``) and the ``settings`` resource every asset uses, for
runs launched from the UI, the sensor or the daemon. A second run waits and says so
(``waiting for the lake lock held by pid N since …``); ``MF_LAKE_LOCK_TIMEOUT`` (seconds) or the
``timeout`` argument make it give up instead.

The lock is re-entrant within one thread of one process (the CLI holds it, then the in-process
run's resource takes it again); another thread of the same process waits like another process.
The kernel releases a ``flock`` when its holder dies, so a killed run never leaves the lake
locked.

Steps that run in other processes for the holder (Celery workers executing the steps of the
runs an ``mf`` command launched while it holds the lock) must not wait for it: the holder's
record carries a random ``token``, the runs carry it as the tag ``mf/lake_lock``, and a step
whose run names the token of the live holder proceeds under that holder's lock
(:func:`covered`). The holder's runs may run side by side on different shards: lake-v2 commits
keep their writes apart (``lib/lake_table.py``).

The lock file also records its holder (pid, start, command) while held and is emptied on a clean
release. An acquirer that finds a holder record left behind knows the previous run was killed
and sweeps the temp files of dead writers from the lake and artifact roots
(:func:`mf_pipeline.lib.lake.sweep_temp_files`); so does the first run on a lake and any run
more than a day after the last sweep (for writers that do not take the lock). Otherwise the
sweep is skipped: it walks every folder (~0.3 s on 8,000 tickers x 5 layers).
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
import sys
import threading
import time
import uuid
from collections.abc import Callable, Collection, Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mf_pipeline.lib import lake

if TYPE_CHECKING:
    from mf_pipeline.lib.settings import Settings

LOCK_NAME = ".lake.lock"
TIMEOUT_ENV = "MF_LAKE_LOCK_TIMEOUT"
SWEEP_EVERY_SECONDS = 24 * 3600.0
SHARD_LOCK_DIR = ".lake.lock.shards"
RUN_TAG = "mf/lake_lock"
"""Run tag naming the token of the lake lock held for the run by the process that launched it."""
POLL_SECONDS = 0.2

Log = Callable[[str], None]


class LakeLockTimeout(TimeoutError):
    """The lake lock was not free within the timeout."""


@dataclass
class _Held:
    owner: int
    count: int = 1
    fd: int | None = None
    locked: bool = False
    swept: str | None = None
    token: str | None = None


_guard = threading.Condition()
_held: dict[str, _Held] = {}


def lock_path(data_root: Path) -> Path:
    return Path(data_root) / LOCK_NAME


def lake_roots(settings: Settings) -> list[Path]:
    """Every folder the pipeline writes into: the data root, the three tiers (which may live
    elsewhere) and the artifacts root."""
    return [settings.data_root, settings.bronze_root, settings.silver_root, settings.gold_root,
            settings.artifacts_root]


def holder(data_root: Path) -> dict[str, Any] | None:
    """The record of the process holding (or last killed while holding) the lock, if any."""
    record = _read(lock_path(data_root))
    return record if record and "pid" in record else None


def _read(path: Path) -> dict[str, Any] | None:
    try:
        text = path.read_text(encoding="utf-8")
    except (FileNotFoundError, UnicodeDecodeError):
        return None
    try:
        record = json.loads(text) if text.strip() else {}
    except json.JSONDecodeError:
        return None
    return record if isinstance(record, dict) else None


def _write(fd: int, record: dict[str, Any]) -> None:
    data = json.dumps(record, sort_keys=True).encode()
    os.ftruncate(fd, 0)
    os.pwrite(fd, data, 0)


def _timeout(timeout: float | None) -> float | None:
    if timeout is not None:
        return timeout
    value = os.environ.get(TIMEOUT_ENV, "").strip()
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        raise ValueError(f"{TIMEOUT_ENV}={value!r} is not a number of seconds") from None


def _describe(record: dict[str, Any] | None) -> str:
    if not record or "pid" not in record:
        return "another process"
    text = f"pid {record['pid']} since {record.get('since', '?')}"
    if record.get("command"):
        text += f" ({record['command']})"
    return text


def _command() -> str:
    name = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "python"
    return " ".join([name, *sys.argv[1:]])[:200]


def _acquire_flock(fd: int, path: Path, deadline: float | None, log: Log,
                   mode: int = fcntl.LOCK_EX) -> None:
    told = None
    while True:
        try:
            fcntl.flock(fd, mode | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            pass
        record = _read(path)
        who = _describe(record)
        if who != told:
            log(f"waiting for the lake lock held by {who} ({path})")
            told = who
        if deadline is not None and time.monotonic() >= deadline:
            raise LakeLockTimeout(f"the lake lock {path} is still held by {who}; gave up "
                                  f"waiting (timeout from {TIMEOUT_ENV} or the caller)")
        time.sleep(POLL_SECONDS if deadline is None
                   else max(0.0, min(POLL_SECONDS, deadline - time.monotonic())))


def _needs_sweep(previous: dict[str, Any] | None, now: dt.datetime) -> bool:
    if previous is None or "pid" in previous or not previous.get("swept"):
        return True  # first run on this lake, unreadable record, or a killed holder
    try:
        swept = dt.datetime.fromisoformat(previous["swept"])
    except (TypeError, ValueError):
        return True
    return (now - swept).total_seconds() > SWEEP_EVERY_SECONDS


@contextmanager
def lake_lock(data_root: Path, sweep_roots: Iterable[Path] = (), log: Log = print,
              timeout: float | None = None) -> Iterator[None]:
    """Hold the lake lock of ``data_root`` (re-entrant in this thread); sweep dead writers'
    temp files under ``sweep_roots`` when the previous holder was killed (see module doc)."""
    path = lock_path(data_root)
    path.parent.mkdir(parents=True, exist_ok=True)
    key = str(path.resolve())
    me = threading.get_ident()
    deadline = None if (limit := _timeout(timeout)) is None else time.monotonic() + limit
    with _guard:
        while (entry := _held.get(key)) is not None and entry.owner != me:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise LakeLockTimeout(f"the lake lock {path} is held by another thread of "
                                      f"this process (pid {os.getpid()})")
            _guard.wait(POLL_SECONDS if left is None else min(left, POLL_SECONDS))
        if entry is not None:
            entry.count += 1
        else:
            entry = _held[key] = _Held(owner=me)
    if entry.count > 1:
        try:
            yield
        finally:
            _release(key, entry, path)
        return
    try:
        entry.fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        _acquire_flock(entry.fd, path, deadline, log)
        entry.locked = True
        previous = _read(path)
        now = dt.datetime.now(dt.UTC)
        entry.swept = (previous or {}).get("swept")
        if _needs_sweep(previous, now):
            if previous and "pid" in previous:
                log(f"lake lock: the previous holder ({_describe(previous)}) did not release it "
                    "(killed?): removing its temp files")
            outcome = lake.sweep_temp_files([*sweep_roots, Path(data_root)])
            if outcome.removed:
                log(f"removed {len(outcome.removed)} temp file(s) of dead writers "
                    f"({outcome.seconds:.2f}s)")
            entry.swept = now.isoformat(timespec="seconds")
        entry.token = uuid.uuid4().hex
        _write(entry.fd, {"pid": os.getpid(), "since": now.astimezone().isoformat(
            timespec="seconds"), "command": _command(), "swept": entry.swept,
            "token": entry.token})
    except BaseException:
        _release(key, entry, path)
        raise
    try:
        yield
    finally:
        _release(key, entry, path)


def _release(key: str, entry: _Held, path: Path) -> None:
    with _guard:
        entry.count -= 1
        if entry.count > 0:
            return
        try:
            if entry.fd is not None and entry.locked:
                with suppress(OSError):
                    _write(entry.fd, {"swept": entry.swept, "released": dt.datetime.now(
                        dt.UTC).isoformat(timespec="seconds")})
                fcntl.flock(entry.fd, fcntl.LOCK_UN)
            if entry.fd is not None:
                os.close(entry.fd)
        finally:
            _held.pop(key, None)
            _guard.notify_all()


def shard_lock_path(data_root: Path, shard: str) -> Path:
    return Path(data_root) / SHARD_LOCK_DIR / f"{shard}.lock"


@contextmanager
def shard_lock(data_root: Path, shards: Iterable[str], log: Log = print,
               timeout: float | None = None) -> Iterator[None]:
    """Hold the lake lock *shared* and the lock of each of ``shards`` exclusively (shard keys,
    or any part of the lake a run alone writes, e.g. ``split=wf2016-12-31``).

    Runs over disjoint shard ranges (the runs of a multi-run backfill on several workers) or
    research splits proceed side by side, overlapping ones one after another, and a
    whole-lake writer (an ``mf`` command, an unpartitioned asset) waits for all of them, as
    they wait for it. Locks
    are taken in key order, so two runs never wait for each other in a circle. A thread that
    already holds the whole lake lock holds every shard.
    """
    path = lock_path(data_root)
    with _guard:
        entry = _held.get(str(path.resolve()))
        mine = entry is not None and entry.owner == threading.get_ident()
    if mine:
        yield
        return
    deadline = None if (limit := _timeout(timeout)) is None else time.monotonic() + limit
    fds: list[int] = []
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fds.append(os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644))
        _acquire_flock(fds[-1], path, deadline, log, fcntl.LOCK_SH)
        for shard in sorted(set(shards)):
            shard_path = shard_lock_path(data_root, shard)
            shard_path.parent.mkdir(parents=True, exist_ok=True)
            fds.append(os.open(shard_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644))
            _acquire_flock(fds[-1], shard_path, deadline, log)
            _write(fds[-1], {"pid": os.getpid(), "since": dt.datetime.now().astimezone()
                             .isoformat(timespec="seconds"), "command": _command()})
        yield
    finally:
        for fd in reversed(fds):
            os.close(fd)  # closing the descriptor releases its flock


def token_of(data_root: Path) -> str | None:
    """The token of the lake lock this process holds on ``data_root`` (None if it holds none):
    runs launched under the lock carry it (``RUN_TAG``) so their out-of-process steps proceed."""
    with _guard:
        entry = _held.get(str(lock_path(data_root).resolve()))
        return entry.token if entry is not None else None


def covered(data_root: Path, token: str) -> bool:
    """Whether a live process holds the lake lock of ``data_root`` under ``token``: its record
    names the token and the lock is taken (a free lock means the holder is gone)."""
    path = lock_path(data_root)
    record = _read(path)
    if not token or not record or record.get("token") != token:
        return False
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


def held_here(data_root: Path) -> bool:
    """Whether this process holds the lake lock of ``data_root`` (for tests and asserts)."""
    with _guard:
        return str(lock_path(data_root).resolve()) in _held


@contextmanager
def hold(settings: Settings, log: Log = print, timeout: float | None = None,
         on_behalf_of: str | None = None, shards: Collection[str] | None = None
         ) -> Iterator[None]:
    """:func:`lake_lock` for the lake of ``settings``, sweeping every root it writes; only
    ``shards`` of it (:func:`shard_lock`) when given; nothing when ``on_behalf_of`` is the
    token of the live holder (see the module doc)."""
    if on_behalf_of and covered(settings.data_root, on_behalf_of):
        yield
        return
    if shards:
        with shard_lock(settings.data_root, shards, log, timeout):
            yield
        return
    with lake_lock(settings.data_root, lake_roots(settings), log, timeout):
        yield
