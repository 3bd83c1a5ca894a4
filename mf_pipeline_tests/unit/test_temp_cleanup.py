"""Leftover temp files of killed writers, and the lake lock (issue #16 items 2 and 9).

Every atomic write names its temp file after its writer (pid, process start time, host); a
sweep removes the files of writers that are gone and never a live writer's. The lake lock
(``lib/lake_lock.py``) runs the sweep when the previous holder was killed.
"""

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from mf_pipeline.lib import lake, lake_lock

WRITER = textwrap.dedent("""
    import sys, time
    from contextlib import ExitStack
    from pathlib import Path
    from mf_pipeline.lib import lake, lake_lock

    root, hold, *targets = sys.argv[1:]
    with ExitStack() as stack:
        if hold == "lock":
            stack.enter_context(lake_lock.lake_lock(Path(root), log=lambda m: None))
        for target in targets:
            temp = stack.enter_context(lake.atomic_target(Path(target)))
            temp.write_bytes(b"half a parquet file")
        print("ready", flush=True)
        time.sleep(600)
""")


def start_writer(root: Path, *targets: Path, lock: bool = False) -> subprocess.Popen:
    """A process that is writing ``targets`` (temp files in place), optionally holding the
    lake lock, until it is killed."""
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(root), "lock" if lock else "-", *map(str, targets)],
        stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    return proc


def kill(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)


def temps(root: Path) -> list[Path]:
    return sorted(Path(e.path) for e in lake.temp_files([root]))


def test_temp_names_carry_their_writer(tmp_path):
    temp = lake._temp_path(tmp_path / "part-000.parquet")
    assert temp.name.startswith(f".part-000.parquet.w{os.getpid()}-")
    assert temp.name.endswith(".tmp")
    assert not lake.is_stale_temp(temp.name)  # this process is alive
    other_start = temp.name.replace(f"w{os.getpid()}-", f"w{os.getpid()}-9")
    assert lake.is_stale_temp(other_start)  # same pid, another start time: a reused pid


def test_sweep_removes_a_killed_writers_temps_and_keeps_live_ones(tmp_path):
    folder = tmp_path / "silver" / "exchange=NYSE" / "prefix=A" / "ticker=AA.US"
    dead = start_writer(tmp_path, folder / "part-000.parquet", tmp_path / "_carry" / "x.parquet")
    kill(dead)
    live = start_writer(tmp_path, folder / "part-d20260102.parquet")
    try:
        with lake.atomic_target(tmp_path / "mine.json") as mine:
            mine.write_text("{}")
            old_legacy = folder / f".part-000.parquet.{'a' * 32}.tmp"
            new_legacy = folder / f".part-000.parquet.{'b' * 32}.tmp"
            for path in (old_legacy, new_legacy):
                path.write_bytes(b"x")
            os.utime(old_legacy, (time.time() - 2 * lake.LEGACY_TEMP_AGE_SECONDS,) * 2)
            assert len(temps(tmp_path)) == 6
            outcome = lake.sweep_temp_files([tmp_path, tmp_path / "silver"])
            left = temps(tmp_path)
            assert len(outcome.removed) == 3
            assert old_legacy not in left and new_legacy in left and mine in left
            assert [p for p in left if f".w{live.pid}-" in p.name]
            assert not [p for p in left if f".w{dead.pid}-" in p.name]
    finally:
        kill(live)


def test_lock_is_reentrant_in_a_thread_and_excludes_other_threads(tmp_path):
    got = []

    def other():
        try:
            with lake_lock.lake_lock(tmp_path, timeout=0.3, log=got.append):
                got.append("acquired")
        except lake_lock.LakeLockTimeout:
            got.append("timeout")

    with lake_lock.lake_lock(tmp_path, log=got.append):
        with lake_lock.lake_lock(tmp_path, log=got.append):
            assert lake_lock.held_here(tmp_path)
            assert lake_lock.holder(tmp_path)["pid"] == os.getpid()
        thread = threading.Thread(target=other)
        thread.start()
        thread.join()
        assert got == ["timeout"]
    assert not lake_lock.held_here(tmp_path)
    assert lake_lock.holder(tmp_path) is None  # released cleanly
    thread = threading.Thread(target=other)
    thread.start()
    thread.join()
    assert got[-1] == "acquired"


def test_a_second_process_waits_says_so_and_times_out(tmp_path, monkeypatch):
    holder = start_writer(tmp_path, lock=True)
    try:
        messages: list[str] = []
        monkeypatch.setenv(lake_lock.TIMEOUT_ENV, "0.5")
        started = time.monotonic()
        with pytest.raises(lake_lock.LakeLockTimeout, match=f"pid {holder.pid}"), \
                lake_lock.lake_lock(tmp_path, log=messages.append):
            pass
        assert time.monotonic() - started >= 0.5
        assert len(messages) == 1
        assert messages[0].startswith(f"waiting for the lake lock held by pid {holder.pid} since ")
    finally:
        kill(holder)
    with lake_lock.lake_lock(tmp_path, log=messages.append):  # the kernel released it
        pass


def test_the_lock_sweeps_only_after_a_killed_holder(tmp_path, monkeypatch):
    folder = tmp_path / "gold" / "_carry"
    calls = []
    real = lake.sweep_temp_files

    def counting(roots):
        calls.append(1)
        return real(roots)

    monkeypatch.setattr(lake, "sweep_temp_files", counting)
    with lake_lock.lake_lock(tmp_path, [tmp_path], log=print):
        pass
    assert len(calls) == 1  # a lake's first lock sweeps once
    with lake_lock.lake_lock(tmp_path, [tmp_path], log=print):
        pass
    assert len(calls) == 1  # the last holder released cleanly: nothing to sweep
    killed = start_writer(tmp_path, folder / "events.parquet", lock=True)
    kill(killed)
    assert len(temps(tmp_path)) == 1
    assert lake_lock.holder(tmp_path)["pid"] == killed.pid  # left behind by the killed holder
    messages: list[str] = []
    with lake_lock.lake_lock(tmp_path, [tmp_path], log=messages.append):
        assert temps(tmp_path) == []
    assert len(calls) == 2
    assert any("did not release" in m for m in messages)
