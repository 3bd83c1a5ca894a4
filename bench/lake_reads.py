"""What readers pay on a built lake: the viewer's one-ticker read, a whole-layer SQL aggregate
and the number of Parquet files (issue #23's targets).

``python -m bench.lake_reads --data-root D --artifacts-root A [--tickers 20] --json OUT`` writes
one JSON object (``make bench`` runs it on the lake of the ``mf_run`` section after its nightly
append: :func:`measure`). It uses only interfaces both lake layouts offer
(``viewer.data.load_ticker``, ``lib.sql.connect``), so the same script measures a v1 lake with
the v1 code and a v2 lake with the v2 code, side by side. Each read is timed warm (the second of
two reads of the same ticker: the page's steady state, file system cache warm) and the SQL query
as the median of 3.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import time
from pathlib import Path
from typing import Any

SQL = ("SELECT ticker, count(*) AS n, avg(close) AS mean_close, max(trade_date) AS last "
       "FROM silver GROUP BY ticker")


def _parquet_files(root: Path) -> int:
    return sum(1 for _ in root.rglob("*.parquet"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data-root", type=Path, required=True)
    parser.add_argument("--artifacts-root", type=Path, required=True)
    parser.add_argument("--tickers", type=int, default=20)
    parser.add_argument("--json", type=Path, required=True)
    args = parser.parse_args()
    os.environ["MF_PIPELINE_PATHS__DATA_ROOT"] = str(args.data_root)
    os.environ["MF_PIPELINE_PATHS__ARTIFACTS_ROOT"] = str(args.artifacts_root)
    from mf_pipeline.lib import lake, sql
    from mf_pipeline.lib.settings import load_settings
    from viewer.data import load_ticker

    settings = load_settings()
    universe = lake.symbol_tickers(lake.LAYERS["bronze"].root(settings))
    chosen = random.Random(7).sample(universe, min(args.tickers, len(universe)))
    cold, warm = [], []
    for ticker in chosen:
        for bucket in (cold, warm):
            started = time.perf_counter()
            data = load_ticker(settings, ticker)
            bucket.append(time.perf_counter() - started)
            assert data.frame.height > 0, ticker
    seconds = []
    for _ in range(3):
        started = time.perf_counter()
        connection, _missing = sql.connect(settings)
        rows = connection.execute(SQL).fetchall()
        seconds.append(time.perf_counter() - started)
    args.json.write_text(json.dumps({
        "tickers_in_lake": len(universe),
        "viewer_read_ms_first": round(statistics.median(cold) * 1000, 1),
        "viewer_read_ms_again": round(statistics.median(warm) * 1000, 1),
        "sql_aggregate_s": round(statistics.median(seconds), 3),
        "sql_rows": len(rows),
        "parquet_files": _parquet_files(args.data_root),
    }))


def measure(work: Path) -> dict[str, Any]:
    """The reads of the lake an ``mf_run`` measurement built under ``work``."""
    from bench.common import run_json_child

    return run_json_child("bench.lake_reads", ["--data-root", str(work / "data"),
                                               "--artifacts-root", str(work / "artifacts")])


if __name__ == "__main__":
    main()
