"""Benchmark universe sizes, generated once with ``mf sample-data`` and cached."""

from __future__ import annotations

import json
import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import CACHE_DIR, run_child, say

SEED = 7


@dataclass(frozen=True)
class Size:
    """A universe size: ``tickers`` files of ``years`` of daily bars."""

    name: str
    tickers: int
    years: float
    until: str = "ml_dataset"  # the last layer of the whole-pipeline measurement

    @property
    def label(self) -> str:
        return f"{self.tickers:,} tickers x {self.years:g} y"


SIZES: dict[str, Size] = {
    "tiny": Size("tiny", 60, 10),
    "small": Size("small", 300, 20),
    "medium": Size("medium", 2000, 20),
    "large": Size("large", 8000, 25, until="features"),  # the scale targets
}


def custom(tickers: int, years: float) -> Size:
    return Size(f"custom-{tickers}x{years:g}", tickers, years)


def mf_executable() -> str:
    """The ``mf`` console script of the running interpreter's environment."""
    candidate = Path(sys.executable).parent / "mf"
    return str(candidate) if candidate.exists() else "mf"


def ensure_universe(size: Size, cache_dir: Path = CACHE_DIR) -> tuple[Path, dict[str, Any]]:
    """``<cache>/<size>/raw`` (generated if missing or made with other parameters) + facts."""
    folder = cache_dir / size.name
    raw = folder / "raw"
    marker = folder / "universe.json"
    wanted = {"tickers": size.tickers, "years": size.years, "seed": SEED}
    if marker.exists() and raw.is_dir():
        facts = json.loads(marker.read_text())
        if all(facts.get(k) == v for k, v in wanted.items()):
            return raw, {**facts, "cached": True}
    shutil.rmtree(raw, ignore_errors=True)
    folder.mkdir(parents=True, exist_ok=True)
    say(f"generating universe {size.name} ({size.label}) into {raw}")
    child = run_child([mf_executable(), "sample-data", "--out", str(raw), "--tickers",
                       str(size.tickers), "--years", f"{size.years:g}", "--seed", str(SEED)])
    if child.returncode != 0:
        raise RuntimeError(f"mf sample-data failed:\n{child.stderr[-4000:]}")
    match = re.search(r"wrote ([\d,]+) files, ([\d,]+) bars", child.stdout)
    files = [p for p in raw.rglob("*") if p.is_file() and p.suffix.lower() == ".txt"]
    facts = {
        **wanted,
        "files": len(files),
        "bytes": sum(p.stat().st_size for p in files),
        "bars": int(match.group(2).replace(",", "")) if match else None,
        "generate_seconds": round(child.wall_s, 2),
    }
    marker.write_text(json.dumps(facts, indent=2, sort_keys=True) + "\n")
    return raw, {**facts, "cached": False}
