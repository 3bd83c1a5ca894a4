"""`mf sql` on the lake a real `mf demo` wrote: a view for every source, every row printed or
the cut said, and --csv/--parquet carrying every row."""

import io

import polars as pl
import pytest
from typer.testing import CliRunner, Result

from mf_pipeline.cli import app
from mf_pipeline.lib import lake, registry
from mf_pipeline.lib.layers.bronze.qa import symbol_master_paths
from mf_pipeline.lib.settings import Settings, load_settings
from mf_pipeline.lib.sql import VIEWS
from mf_pipeline.lib.steps.bronze_step import paths
from mf_pipeline.lib.steps.dataset_step import latest_export
from mf_pipeline_tests.viewer.conftest import UNSET, demo_lake, roots_env  # noqa: F401

NAMED = {"bronze", "silver", "indicators", "events", "features", "ml_dataset", "symbol_master",
         "manifest", "ledger", "rejects", "cluster_labels", "hmm_states", "cluster_runs",
         "hmm_runs"}
"""The sources issue #18 names; later layers add theirs to ``lib/sql.VIEWS``."""


@pytest.fixture
def demo(demo_lake, monkeypatch) -> Settings:  # noqa: F811 - the imported session fixture
    for name, value in roots_env(demo_lake.root).items():
        monkeypatch.setenv(name, value)
    for name in UNSET:
        monkeypatch.delenv(name, raising=False)
    return load_settings()


def mf(*args: str, code: int = 0) -> Result:
    result = CliRunner().invoke(app, list(args), catch_exceptions=False)
    assert result.exit_code == code, result.output
    return result


def count(view: str) -> int:
    return int(mf("sql", f"SELECT count(*) AS n FROM {view}", "--csv", "-").stdout.split()[1])


def expected_rows(settings: Settings) -> dict[str, int]:
    """Each view's row count, read from its files with Polars (not through DuckDB)."""
    def read(path) -> int:
        return pl.read_parquet(path).height

    def live_rows(root) -> int:
        """The rows of the tickers the layer's snapshot says are live in each file it names
        (a file may still hold rows of a replaced ticker until it is merged)."""
        index = lake.snapshot(root).index
        return sum(pl.read_parquet(root / name).filter(pl.col("ticker").is_in(tickers)).height
                   for name, tickers in index.group_by("file").agg("ticker").iter_rows())

    out = {name: live_rows(lake.LAYERS[name].root(settings)) for name in registry.PER_TICKER}
    bronze = paths(settings)
    out |= {"ml_dataset": read(latest_export(settings)),
            "symbol_master": read(symbol_master_paths(settings.bronze_root)[0]),
            "manifest": read(bronze.current_manifest), "ledger": read(bronze.ledger),
            "rejects": read(bronze.rejects)}
    research = settings.gold_root / "research"
    for table in ("cluster_labels", "hmm_states"):
        out[table] = sum(map(read, research.glob(f"{table}/split=*/{table}.parquet")))
    for view, folder in (("cluster_runs", "research_runs"), ("hmm_runs", "hmm_runs")):
        out[view] = len(list((settings.artifacts_root / folder).glob("*/run_summary.json")))
    return out


def test_every_named_source_has_a_view_with_all_its_rows(demo):
    assert {view.name for view in VIEWS} >= NAMED
    listed = mf("sql", "--list").stdout
    want = expected_rows(demo)
    for name in NAMED:
        assert f"{name}\n" in listed
        assert want[name] > 0, name
        assert count(name) == want[name], name


def test_rows_beyond_the_limit_are_counted_not_dropped_silently(demo, demo_lake):  # noqa: F811
    query = "SELECT ticker, count(*) AS n FROM bronze GROUP BY 1 ORDER BY 1"
    tickers = len(demo_lake.bars)
    assert tickers > 3
    cut = mf("sql", query, "--limit", "2").stdout
    assert cut.splitlines()[-1] == (f"… {tickers - 2:,} more rows not shown ({tickers:,} in all; "
                                    "use --limit 0, or --csv PATH / --parquet PATH for every row)")
    shown = [t for t in demo_lake.bars if t in cut]
    assert shown == sorted(demo_lake.bars)[:2]
    whole = mf("sql", query, "--limit", "0").stdout
    assert all(t in whole for t in demo_lake.bars)
    assert whole.splitlines()[-1] == f"{tickers:,} rows"


def test_csv_and_parquet_carry_every_row(demo, demo_lake, tmp_path):  # noqa: F811
    query = "SELECT ticker, count(*) AS n FROM bronze GROUP BY 1 ORDER BY 1"
    want = pl.DataFrame({"ticker": sorted(demo_lake.bars),
                         "n": [demo_lake.bars[t] for t in sorted(demo_lake.bars)]})
    mf("sql", query, "--csv", str(tmp_path / "out.csv"), "--parquet", str(tmp_path / "out.pq"))
    stdout = mf("sql", query, "--csv", "-").stdout
    for frame in (pl.read_csv(tmp_path / "out.csv"), pl.read_parquet(tmp_path / "out.pq"),
                  pl.read_csv(io.StringIO(stdout))):
        assert frame.cast({"n": pl.Int64}).equals(want)


def test_a_query_on_a_view_without_files_says_so(demo, tmp_path, monkeypatch):
    monkeypatch.setenv("MF_PIPELINE_PATHS__ARTIFACTS_ROOT", str(tmp_path))
    result = mf("sql", "SELECT * FROM hmm_runs", code=2)
    assert result.stderr.startswith("error: Catalog Error")
    assert result.stderr.rstrip().endswith("; no view hmm_runs (no files yet)")
