"""Survivors of the mutation samples of the candidate drift, candidate selection, nightly
ledger and ops report modules (docs/CANDIDATES.md, "Mutation testing"), killed on values
worked out by hand."""

import polars as pl

from mf_pipeline.lib.candidates import drift, select
from mf_pipeline.lib.ops import ledger
from mf_pipeline.lib.settings import CandidateDriftSettings

T = CandidateDriftSettings()
EPS = 1e-12
BASE = {"expectancy": 10.0, "profit_factor": 2.0, "robustness_v2": 60.0, "ret_cv": 2.0,
        "trade_count": 10, "zero_trade_share": 0.0, "ret_p10": -0.02, "downside_std": 0.01,
        "exec_eligibility_rate": 0.625, "overlay_match_rate": 0.9}


def _record(**observed) -> dict:
    cov = drift.coverage_drift(None, None, None, None, drift.coverage_thresholds(T))
    return drift.drift_record(BASE, {**BASE, **observed}, cov, T, EPS)


def test_one_observed_trade_is_a_trade_count_drop_not_a_zero_trade_run() -> None:
    # (1 - 10) / 10 = -0.9 < -0.4: one flag, WARN; zero_trade_observed needs <= 0 trades
    rec = _record(trade_count=1)
    assert rec["drift_flags"] == ["trade_count_drop"]
    assert rec["drift_status"] == "DRIFT_WARN"
    assert rec["delta_trade_count_pct"] == -0.9


def _metrics(rows: list[dict]) -> pl.DataFrame:
    """A grid metrics table: hmm SUCCESS rows with the ranking columns."""
    base = {"source_type": "hmm", "status": "SUCCESS", "is_zero_trade_combo": False,
            "robustness_score_v2": 50.0, "expectancy": 0.01, "profit_factor": 1.5,
            "ret_cv": 2.0}  # fmt: skip
    return pl.DataFrame([base | r for r in rows], infer_schema_length=None)


def test_a_combo_with_one_trade_is_in_the_pool_and_wins_at_min_trades_one() -> None:
    table = _metrics([{"combo_id": "one", "trade_count": 1},
                      {"combo_id": "none", "trade_count": 0, "robustness_score_v2": 99.0}])
    assert select.candidate_pool(table)["combo_id"].to_list() == ["one"]
    picked = select.select(table, select.ALPHA, 1)
    assert (picked.row["combo_id"], picked.threshold, picked.warnings) == ("one", 1, ())


def test_best_first_reads_each_keys_own_direction() -> None:
    # best_first takes any "<column> asc|desc" ranking, not only the two of the spec
    frame = _metrics([{"combo_id": "a", "trade_count": 5, "expectancy": 0.3},
                      {"combo_id": "b", "trade_count": 5, "expectancy": 0.1},
                      {"combo_id": "c", "trade_count": 5, "expectancy": 0.1},
                      {"combo_id": "d", "trade_count": 5, "expectancy": None}])
    order = select.best_first(frame, ("expectancy asc", "combo_id desc"))
    assert order["combo_id"].to_list() == ["c", "b", "a", "d"]  # lowest first, null last


def test_ledger_row_values_are_cast_to_the_schema(tmp_path) -> None:
    # an int where the ledger keeps a float (and the reverse) is stored, not refused
    path = tmp_path / "ledger.csv"
    frame = ledger.upsert(path, {"as_of_tag": "2024-01-02", "alpha_pf": 2, "alpha_trades": 7.0,
                                 "exec_overlay_match_rate": 1})
    assert frame.row(0, named=True) | {} == {**dict.fromkeys(ledger.SCHEMA),
                                             "as_of_tag": "2024-01-02", "alpha_pf": 2.0,
                                             "alpha_trades": 7, "exec_overlay_match_rate": 1.0}
    assert frame.schema == pl.Schema(ledger.SCHEMA)


def test_ledger_view_shows_ten_nights_by_default() -> None:
    rows = [{"as_of_tag": f"2024-01-{d:02d}", "built_ts": f"2024-02-{d:02d}"} for d in range(1, 12)]
    frame = pl.DataFrame(rows).with_columns(
        pl.lit(None, dtype).alias(name) for name, dtype in ledger.SCHEMA.items()
        if name not in ("as_of_tag", "built_ts"))
    shown = ledger.view(frame)
    assert shown["as_of"].to_list() == [f"2024-01-{d:02d}" for d in range(11, 1, -1)]
