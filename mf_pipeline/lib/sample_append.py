"""Append one new daily bar to every raw file of a universe (the nightly update users see).

The new bar is the next weekday after the file's last bar, priced around its last close; the
file's own line layout (ticker, PER, TIME, OPENINT columns) is kept, so the manifest sees an
exact-prefix change (``APPENDED``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
from pathlib import Path

_TAIL_BYTES = 512


def _last_line(path: Path) -> bytes:
    with open(path, "rb") as handle:
        handle.seek(0, os.SEEK_END)
        size = handle.tell()
        handle.seek(max(0, size - _TAIL_BYTES))
        lines = handle.read().rstrip(b"\r\n").splitlines()
    return lines[-1] if lines else b""


def next_bar(last: str) -> str | None:
    """The line after ``last`` (a Stooq data line), or None when ``last`` is not one."""
    fields = last.split(",")
    if len(fields) != 10:
        return None
    try:
        day = dt.datetime.strptime(fields[2], "%Y%m%d").date()
        close = float(fields[7])
        volume = int(float(fields[8]))
    except ValueError:
        return None
    day += dt.timedelta(days=1)
    while day.weekday() >= 5:
        day += dt.timedelta(days=1)
    new_close = round(close * 1.001, 4)
    high = round(max(close, new_close) * 1.002, 4)
    low = round(min(close, new_close) * 0.998, 4)
    prices = [_num(v) for v in (close, high, low, new_close)]
    return ",".join([fields[0], fields[1], day.strftime("%Y%m%d"), fields[3], *prices,
                     str(max(volume, 1)), fields[9]])


def _num(value: float) -> str:
    """A price as Stooq writes it: plain decimals, at most four places."""
    return f"{value:.4f}".rstrip("0").rstrip(".")


def append_one_bar(raw_root: Path) -> int:
    """Append the next bar to every ``*.txt`` file under ``raw_root``; returns files changed."""
    changed = 0
    for path in sorted(raw_root.rglob("*.txt")):
        if "_truth" in path.parts:
            continue
        line = next_bar(_last_line(path).decode("utf-8", "replace"))
        if line is None:
            continue
        with open(path, "ab") as handle:
            handle.write(line.encode() + b"\n")
        changed += 1
    return changed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("raw_root", type=Path)
    args = parser.parse_args()
    print(f"appended one bar to {append_one_bar(args.raw_root)} files")


if __name__ == "__main__":
    main()
