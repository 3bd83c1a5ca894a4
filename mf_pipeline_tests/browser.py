"""What the browser tests share: the system Chromium (never a downloaded one), free ports,
waiting for a server, and a headless page."""

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--no-first-run", "--disable-sync",
]  # fmt: skip
SKIP_NO_BROWSER = (
    "no Chromium executable found (looked at $MF_PIPELINE_CHROMIUM, `chromium`, "
    "`chromium-browser`, /usr/bin/chromium). Install Debian's browser with "
    "`apt-get install -y chromium`; this test never downloads one."
)


def find_chromium() -> str | None:
    candidates = [os.environ.get("MF_PIPELINE_CHROMIUM"), shutil.which("chromium"),
                  shutil.which("chromium-browser"), "/usr/bin/chromium"]
    return next((c for c in candidates if c and os.access(c, os.X_OK)), None)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_healthy(url: str, proc: subprocess.Popen, log: Path, timeout: float = 90,
                 expect: bytes | None = None) -> None:
    """Wait until ``url`` answers (with ``expect`` if given); fail with the server's log."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"server exited early ({proc.returncode}):\n{log.read_text()}")
        try:
            with urllib.request.urlopen(url, timeout=2) as reply:
                if expect is None or reply.read().strip() == expect:
                    return
        except OSError:
            time.sleep(0.3)
    pytest.fail(f"{url} not answering after {timeout}s:\n{log.read_text()}")


def stop(proc: subprocess.Popen) -> None:
    """Stop a server and, when it leads its own session (``start_new_session=True``), every
    process it started: `dagster dev` leaves its webserver, daemon and code servers running
    when only it is killed."""
    group = os.getpgid(proc.pid) if proc.poll() is None else None
    own_group = group is not None and group == proc.pid
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if own_group:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(group, sig)
        else:
            proc.send_signal(sig)
        try:
            proc.wait(timeout=20)
            break
        except subprocess.TimeoutExpired:
            continue
    if own_group:  # the children may outlive the leader by a moment
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGKILL)


@contextmanager
def browser_page(chromium: str, height: int = 1500) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright  # a dev dependency: fail if missing

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            yield browser.new_page(viewport={"width": 1440, "height": height})
        finally:
            browser.close()
