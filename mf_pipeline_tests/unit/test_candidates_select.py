"""Candidate selection (backtest_ops.md §9.2) on small hand-made metrics tables: the pool,
the relax rule and the two orderings with the ranking fixes (+inf profit factor first, nulls
and NaN last, stable ties, faults 10, 13, 15)."""

import math

import polars as pl
import pytest

from mf_pipeline.lib.candidates import select

INF = math.inf


def table(rows: list[dict]) -> pl.DataFrame:
    """Metrics rows with defaults: hmm SUCCESS rows with 30 trades and null metrics."""
    base = {"source_type": "hmm", "status": "SUCCESS", "is_zero_trade_combo": False,
            "trade_count": 30, "robustness_score_v2": None, "expectancy": None,
            "profit_factor": None, "ret_cv": None}  # fmt: skip
    return pl.DataFrame([base | r for r in rows], infer_schema_length=None,
                        schema_overrides={k: pl.Float64 for k in (
                            "robustness_score_v2", "expectancy", "profit_factor", "ret_cv")})


def winner(rows: list[dict], label: str = select.ALPHA, min_trades: int = 25) -> str:
    return select.select(table(rows), label, min_trades).row["combo_id"]


def test_alpha_ordering_keys_in_turn_with_nulls_last() -> None:
    rows = [{"combo_id": "a", "robustness_score_v2": None, "expectancy": 9.0},
            {"combo_id": "b", "robustness_score_v2": 60.0, "expectancy": 0.01},
            {"combo_id": "c", "robustness_score_v2": 60.0, "expectancy": 0.02}]
    assert winner(rows) == "c"  # robustness tie -> expectancy desc; null robustness last
    rows[2]["expectancy"] = 0.01  # tie on both -> profit factor desc, null last
    rows[1]["profit_factor"] = 1.2
    assert winner(rows) == "b"
    rows[2]["profit_factor"] = INF  # +inf is the best profit factor
    assert winner(rows) == "c"
    rows[1]["profit_factor"] = INF  # tie -> trade_count desc
    rows[1]["trade_count"] = 40
    assert winner(rows) == "b"
    rows[2]["trade_count"] = 40  # full tie -> combo_id asc
    assert winner(rows) == "b"
    assert winner(list(reversed(rows))) == "b"  # never row order


def test_exec_ordering_inf_pf_first_then_robustness_then_ret_cv_ascending() -> None:
    rows = [{"combo_id": "fin", "profit_factor": 3.0, "robustness_score_v2": 90.0},
            {"combo_id": "inf", "profit_factor": INF, "robustness_score_v2": 10.0},
            {"combo_id": "nul", "profit_factor": None, "robustness_score_v2": 99.0},
            {"combo_id": "nan", "profit_factor": math.nan, "robustness_score_v2": 99.0}]
    assert winner(rows, select.EXEC) == "inf"  # the old tool: PF null -> ranked last
    rows[1]["profit_factor"] = 3.0  # PF tie -> robustness desc
    assert winner(rows, select.EXEC) == "fin"
    rows[1]["robustness_score_v2"] = 90.0  # -> ret_cv ascending, null last
    rows[0]["ret_cv"], rows[1]["ret_cv"] = 4.0, 2.5
    assert winner(rows, select.EXEC) == "inf"
    rows[1]["ret_cv"] = None
    assert winner(rows, select.EXEC) == "fin"
    # EXEC_2 uses the same ordering
    assert winner(rows, select.EXEC_2) == "fin"


def test_best_first_whole_order_and_missing_combo_id_as_tilde() -> None:
    frame = table([{"combo_id": None, "profit_factor": 2.0},
                   {"combo_id": "z", "profit_factor": 2.0},
                   {"combo_id": "b", "profit_factor": None},
                   {"combo_id": "a", "profit_factor": INF}])
    order = select.best_first(frame, select.EXEC_RANKING)["combo_id"].to_list()
    assert order == ["a", "z", None, "b"]  # "~" sorts after "z"; null PF last


def test_zero_trade_failed_and_other_sources_are_never_selected() -> None:
    rows = [{"combo_id": "zero", "robustness_score_v2": 99.0, "is_zero_trade_combo": True},
            {"combo_id": "no_trades", "robustness_score_v2": 98.0, "trade_count": 0,
             "is_zero_trade_combo": None},
            {"combo_id": "null_count", "robustness_score_v2": 97.0, "trade_count": None},
            {"combo_id": "failed", "robustness_score_v2": 96.0, "status": "FAILED"},
            {"combo_id": "flow", "robustness_score_v2": 95.0, "source_type": "flow"},
            {"combo_id": "null_flag", "robustness_score_v2": 1.0, "is_zero_trade_combo": None}]
    assert winner(rows) == "null_flag"  # a null zero-trade flag with trades is a candidate
    pool = select.candidate_pool(table(rows))
    assert pool["combo_id"].to_list() == ["null_flag"]
    with pytest.raises(ValueError, match="No non-zero successful combos available for exec"):
        select.select(table(rows[:5]), select.EXEC, 25)


def test_min_trades_threshold_and_relax_rule() -> None:
    rows = [{"combo_id": "many", "trade_count": 30, "robustness_score_v2": 10.0},
            {"combo_id": "few", "trade_count": 12, "robustness_score_v2": 90.0}]
    picked = select.select(table(rows), select.ALPHA, 25)
    assert (picked.row["combo_id"], picked.threshold, picked.warnings) == ("many", 25, ())
    picked = select.select(table(rows), select.ALPHA, 12)  # the threshold is inclusive
    assert (picked.row["combo_id"], picked.threshold) == ("few", 12)
    # nothing reaches 40 -> relaxed to 10 with the spec's warning
    picked = select.select(table(rows), select.EXEC, 40)
    assert (picked.row["combo_id"], picked.threshold) == ("few", 10)
    assert picked.warnings == ("exec: no combos with trade_count >= 40; relaxed to "
                               "trade_count >= 10.",)  # fmt: skip
    # below 10 trades there is nothing to relax to
    low = [{"combo_id": "x", "trade_count": 9}]
    with pytest.raises(ValueError, match="alpha: no combos with trade_count >= 10"):
        select.select(table(low), select.ALPHA, 25)
    # min_trades <= 10 is never relaxed
    with pytest.raises(ValueError, match="alpha: no combos with trade_count >= 10"):
        select.select(table(low), select.ALPHA, 10)
    assert select.select(table(low), select.ALPHA, 9).threshold == 9
    with pytest.raises(ValueError, match="min_trades"):
        select.select(table(low), select.ALPHA, 0)
