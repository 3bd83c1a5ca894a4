"""Policy overlay (backtest_ops.md §6): join, gates, coverage verdict, artifacts' numbers.

The main fixture: seven primary rows and eight overlay rows written with untidy keys
(" aaa ", text dates) that normalize onto the primary's. Per primary row the class is

    row  ticker date        cluster  class             join
    0    AAA    2023-12-29  1        ALLOW             MATCHED
    1    AAA    2024-01-02  2        WATCH             MATCHED
    2    AAA    2024-01-03  3        BLOCK             MATCHED
    3    AAA    2024-01-04  9        UNKNOWN (no rule) MATCHED
    4    BBB    2023-12-29  1        ALLOW             MATCHED
    5    BBB    2024-01-02  -        UNKNOWN           UNMATCHED_PRIMARY
    6    BBB    2024-01-03  2        WATCH             MATCHED

and the overlay's CCC row matches nothing.
"""

from __future__ import annotations

import math
from datetime import date

import polars as pl
import pytest

from mf_pipeline.lib.backtest import overlay as ov

POLICY = {
    "per_state": [
        {"state_id": 1, "class_label": "allow", "allow_direction_hint": "long_bias",
         "tradability_score": 80.5, "reasons": []},
        {"state_id": 2, "class_label": "WATCH", "allow_direction_hint": "SHORT_BIAS",
         "tradability_score": 50.0, "reasons": ["x"]},
        {"state_id": 3, "class_label": "BLOCK", "allow_direction_hint": None,
         "tradability_score": float("nan"), "reasons": []},
        {"state_id": "4", "class_label": "ALLOW"},  # not an integer id: skipped
    ]
}  # fmt: skip
CLASSES = ["ALLOW", "WATCH", "BLOCK", "UNKNOWN", "ALLOW", "UNKNOWN", "WATCH"]
T, F = True, False


def primary() -> pl.DataFrame:
    rows = [
        ("AAA", date(2023, 12, 29)), ("AAA", date(2024, 1, 2)), ("AAA", date(2024, 1, 3)),
        ("AAA", date(2024, 1, 4)), ("BBB", date(2023, 12, 29)), ("BBB", date(2024, 1, 2)),
        ("BBB", date(2024, 1, 3)),
    ]  # fmt: skip
    return pl.DataFrame(rows, schema=["ticker", "trade_date"], orient="row").with_columns(
        close=pl.int_range(pl.len()).cast(pl.Float64) + 10.0
    )


def overlay_rows() -> pl.DataFrame:
    rows = [
        (" aaa ", "2023-12-29", 1), ("aaa", "2024-01-02", 2), ("AAA", "2024-01-03", 3),
        ("AAA", "2024-01-04", 9), ("BBB", "2023-12-29", 1), ("BBB", "2024-01-03", 2),
        ("CCC", "2024-01-02", 1), ("BBB", "not a date", 3),
    ]  # fmt: skip
    return pl.DataFrame(rows, schema=["ticker", "trade_date", "cluster_id"], orient="row")


def run(mode: str = "none", handling: str = "treat_unknown_as_pass", **kw) -> ov.OverlayResult:
    th = ov.CoverageThresholds(unknown_handling=handling, **kw)
    return ov.apply_overlay(primary(), overlay_rows(), POLICY, mode, "ticker,trade_date", th)


# --- join and gates -------------------------------------------------------------------------


def test_join_columns_row_by_row() -> None:
    res = run()
    f = res.frame
    assert f.columns == ["ticker", "trade_date", "close", *ov.OVERLAY_SCHEMA]
    assert dict(f.select(list(ov.OVERLAY_SCHEMA)).schema) == ov.OVERLAY_SCHEMA
    assert f.select("ticker", "trade_date", "close").equals(primary())
    assert f["overlay_cluster_state"].to_list() == [1, 2, 3, 9, 1, None, 2]
    assert f["overlay_policy_class"].to_list() == CLASSES
    assert f["overlay_direction_hint"].to_list() == [
        "LONG_BIAS", "SHORT_BIAS", "UNCONFIRMED", "UNCONFIRMED", "LONG_BIAS", "UNCONFIRMED",
        "SHORT_BIAS",
    ]  # fmt: skip
    assert f["overlay_tradability_score"].to_list() == [80.5, 50.0, None, None, 80.5, None, 50.0]
    assert f["overlay_join_status"].to_list() == ["MATCHED"] * 5 + [
        "UNMATCHED_PRIMARY",
        "MATCHED",
    ]
    assert f["overlay_mode"].to_list() == ["none"] * 7
    assert f["overlay_enabled"].to_list() == [True] * 7


GATES = {
    ("none", "treat_unknown_as_pass"): [T, T, T, T, T, T, T],
    ("none", "treat_unknown_as_block"): [T, T, T, T, T, T, T],
    ("allow_only", "treat_unknown_as_pass"): [T, F, F, F, T, F, F],
    ("allow_only", "treat_unknown_as_block"): [T, F, F, F, T, F, F],
    ("allow_watch", "treat_unknown_as_pass"): [T, T, F, F, T, F, T],
    ("allow_watch", "treat_unknown_as_block"): [T, T, F, F, T, F, T],
    ("allow_or_unknown", "treat_unknown_as_pass"): [T, F, F, T, T, T, F],
    ("allow_or_unknown", "treat_unknown_as_block"): [T, F, F, F, T, F, F],
    ("block_veto", "treat_unknown_as_pass"): [T, T, F, T, T, T, T],
    ("block_veto", "treat_unknown_as_block"): [T, T, F, F, T, F, T],
}


@pytest.mark.parametrize(("mode", "handling"), list(GATES))
def test_gate_every_mode_and_unknown_handling(mode: str, handling: str) -> None:
    f = run(mode, handling).frame
    assert f["overlay_allow_signal"].to_list() == GATES[(mode, handling)]
    assert f["overlay_policy_class"].to_list() == CLASSES
    assert set(f["overlay_mode"].to_list()) == {mode}


def test_block_veto_passes_a_class_outside_the_three() -> None:
    policy = {"per_state": [{"state_id": 1, "class_label": "ALLOW"},
                            {"state_id": 2, "class_label": "other"}]}  # fmt: skip
    res = ov.apply_overlay(primary(), overlay_rows(), policy, "block_veto")
    assert res.frame["overlay_policy_class"][1] == "OTHER"
    assert res.frame["overlay_allow_signal"][1] is True


def test_coverage_metrics_by_year_and_mix() -> None:
    res = run()
    s = res.join_summary
    assert s["primary_rows_total"] == 7
    assert s["primary_rows_matched"] == 6 and s["primary_rows_unmatched"] == 1
    assert s["match_rate"] == pytest.approx(6 / 7)
    assert s["overlay_rows_total"] == 8 and s["overlay_rows_used"] == 6
    assert (s["overlay_allow_rate"], s["overlay_watch_rate"], s["overlay_block_rate"]) == (
        pytest.approx(2 / 7), pytest.approx(2 / 7), pytest.approx(1 / 7))  # fmt: skip
    assert s["unknown_rate"] == s["overlay_unknown_rate"] == pytest.approx(2 / 7)
    assert s["year_min_match_rate"] == pytest.approx(0.8)
    assert s["year_p10_match_rate"] == pytest.approx(0.8)
    assert s["year_fail_years"] == []
    assert res.duplicate_keys is None
    assert res.coverage_by_year.rows() == [
        (2023, 2, 2, 0, 0, 1.0, 0.0),
        (2024, 5, 4, 1, 2, 0.8, 0.4),
    ]
    assert res.coverage_by_year.columns == [
        "year", "primary_rows", "matched_rows", "unmatched_rows", "unknown_rows", "match_rate",
        "unknown_rate",
    ]  # fmt: skip
    assert res.policy_mix.rows() == [
        ("ALLOW", 2, 2 / 7), ("UNKNOWN", 2, 2 / 7), ("WATCH", 2, 2 / 7), ("BLOCK", 1, 1 / 7),
    ]  # fmt: skip


def test_summary_and_verdict_keys_and_values() -> None:
    res = run("allow_only", coverage_mode="strict_fail")
    s, v = res.join_summary, res.verdict
    six = {"min_match_rate_warn": 0.8, "min_match_rate_fail": 0.6,
           "min_year_match_rate_warn": 0.7, "min_year_match_rate_fail": 0.5,
           "unknown_rate_warn": 0.25, "unknown_rate_fail": 0.5}  # fmt: skip
    assert set(s) == {
        "overlay_enabled", "overlay_mode", "join_keys", "primary_rows_total",
        "primary_rows_matched", "primary_rows_unmatched", "match_rate", "overlay_rows_total",
        "overlay_rows_used", "duplicate_key_count_primary", "duplicate_key_count_overlay",
        "overlay_allow_rate", "overlay_watch_rate", "overlay_block_rate", "overlay_unknown_rate",
        "unknown_rate", "unknown_handling", "year_min_match_rate", "year_p10_match_rate",
        "year_fail_years", "coverage_status", "coverage_reasons", "coverage_mode", *six,
    }  # fmt: skip
    assert {k: s[k] for k in six} == six
    assert s["join_keys"] == ["ticker", "trade_date"] and s["overlay_mode"] == "allow_only"
    # unknown 2/7 = 0.2857 > 0.25: the only breached test.
    reason = "unknown_rate_above_warn threshold=0.2500 value=0.2857"
    assert (s["coverage_status"], s["coverage_reasons"]) == ("WARN_HIGH_UNKNOWN", [reason])
    assert v == {
        "coverage_mode": "strict_fail",
        "unknown_handling": "treat_unknown_as_pass",
        "thresholds": six,
        "summary": {
            "match_rate": s["match_rate"], "unknown_rate": s["unknown_rate"],
            "year_min_match_rate": 0.8, "year_p10_match_rate": 0.8, "year_fail_years": [],
            "duplicate_key_count_primary": 0, "duplicate_key_count_overlay": 0,
        },
        "status": "WARN_HIGH_UNKNOWN",
        "reasons": [reason],
        "strict_fail_triggered": False,
    }  # fmt: skip


def test_extra_join_key_normalized_on_both_sides() -> None:
    p = primary().with_columns(timeframe=pl.lit("D1"))
    o = overlay_rows().with_columns(timeframe=pl.Series([" d1", "D1", "W1", "D1", "d1 ", "D1",
                                                         "D1", "D1"]))  # fmt: skip
    res = ov.apply_overlay(p, o, POLICY, "none", " ticker, trade_date ,timeframe,")
    assert res.join_summary["join_keys"] == ["ticker", "trade_date", "timeframe"]
    assert res.frame["overlay_join_status"].to_list() == [
        "MATCHED", "MATCHED", "UNMATCHED_PRIMARY", "MATCHED", "MATCHED", "UNMATCHED_PRIMARY",
        "MATCHED",
    ]  # fmt: skip


def test_datetime_trade_date_key_matches_by_date() -> None:
    o = overlay_rows().with_columns(
        pl.col("trade_date").str.to_date(strict=False).cast(pl.Datetime("us")),
        pl.col("ticker").str.strip_chars().str.to_uppercase(),
    )
    res = ov.apply_overlay(primary(), o, POLICY)
    assert res.frame["overlay_policy_class"].to_list() == CLASSES


# --- duplicates and the dedupe ---------------------------------------------------------------


def test_duplicate_counts_are_sums_of_group_sizes() -> None:
    # primary: AAA 2024-01-02 three times and BBB 2024-01-03 twice -> 3 + 2 = 5
    p = pl.concat([primary(), primary()[[1, 1, 6]]])
    # overlay: AAA 2024-01-02 twice (one written " aaa ") -> 2
    o = pl.concat([overlay_rows(), pl.DataFrame({"ticker": [" aaa "], "trade_date": ["2024-01-02"],
                                                 "cluster_id": [1]})])  # fmt: skip
    res = ov.apply_overlay(p, o, POLICY)
    assert res.join_summary["duplicate_key_count_primary"] == 5
    assert res.join_summary["duplicate_key_count_overlay"] == 2
    assert res.duplicate_keys.rows() == [
        ("overlay", "AAA", date(2024, 1, 2), 2),
        ("primary", "AAA", date(2024, 1, 2), 3),
        ("primary", "BBB", date(2024, 1, 3), 2),
    ]
    assert res.duplicate_keys.columns == ["dataset", "ticker", "trade_date", "duplicate_count"]
    assert res.verdict["status"] == "FAIL_DUPLICATES"
    assert res.verdict["reasons"] == ["duplicate_keys primary=5 overlay=2"]
    # the deduped overlay has one row per key: 9 rows - 1 repeat
    assert res.join_summary["overlay_rows_total"] == 8
    assert res.frame.height == 10  # primary rows are never dropped


@pytest.mark.parametrize(("clusters", "expected"), [([3, 1], "BLOCK"), ([1, 3], "ALLOW")])
def test_dedupe_keeps_the_first_row_in_input_order(clusters: list[int], expected: str) -> None:
    o = pl.DataFrame({"ticker": ["AAA", "ZZZ", "AAA"], "trade_date": ["2024-01-02"] * 3,
                      "cluster_id": [clusters[0], 2, clusters[1]]})  # fmt: skip
    res = ov.apply_overlay(primary(), o, POLICY)
    assert res.frame["overlay_policy_class"][1] == expected
    assert res.join_summary["overlay_rows_total"] == 2


# --- verdict rules ---------------------------------------------------------------------------

TH = ov.CoverageThresholds()


@pytest.mark.parametrize(
    ("metrics", "status", "reasons"),
    [
        ((0.1, 0.1, 0.9, 1, 0), "FAIL_DUPLICATES", ["duplicate_keys primary=1 overlay=0"]),
        ((1.0, 1.0, 0.0, 0, 4), "FAIL_DUPLICATES", ["duplicate_keys primary=0 overlay=4"]),
        ((0.5, 0.4, 0.9, 0, 0), "FAIL_LOW_MATCH",
         ["match_rate_below_fail threshold=0.6000 value=0.5000",
          "year_min_match_rate_below_fail threshold=0.5000 value=0.4000"]),
        ((0.9, 0.123456, 0.0, 0, 0), "FAIL_LOW_MATCH",
         ["year_min_match_rate_below_fail threshold=0.5000 value=0.1235"]),
        ((0.7, 0.6, 0.6, 0, 0), "FAIL_HIGH_UNKNOWN",
         ["unknown_rate_above_fail threshold=0.5000 value=0.6000"]),
        ((0.6, 0.9, 0.5, 0, 0), "WARN_LOW_MATCH",  # equal to a fail threshold is no breach
         ["match_rate_below_warn threshold=0.8000 value=0.6000"]),
        ((0.7, 0.65, 0.1, 0, 0), "WARN_LOW_MATCH",
         ["match_rate_below_warn threshold=0.8000 value=0.7000",
          "year_min_match_rate_below_warn threshold=0.7000 value=0.6500"]),
        ((0.9, 0.9, 0.5, 0, 0), "WARN_HIGH_UNKNOWN",
         ["unknown_rate_above_warn threshold=0.2500 value=0.5000"]),
        ((0.8, 0.7, 0.25, 0, 0), "OK", []),
        ((None, None, None, 0, 0), "OK", []),
        ((0.5, None, None, 0, 0), "FAIL_LOW_MATCH",
         ["match_rate_below_fail threshold=0.6000 value=0.5000"]),
    ],
)  # fmt: skip
def test_verdict_rules_first_match_wins(metrics: tuple, status: str, reasons: list[str]) -> None:
    match, year_min, unknown, dup_p, dup_o = metrics
    got = ov.coverage_status(
        match_rate=match, year_min_match_rate=year_min, unknown_rate=unknown,
        duplicate_key_count_primary=dup_p, duplicate_key_count_overlay=dup_o, thresholds=TH,
    )  # fmt: skip
    assert got == (status, reasons)


def test_verdict_uses_the_given_thresholds() -> None:
    th = ov.CoverageThresholds(min_match_rate_fail=0.9, unknown_rate_warn=0.5)
    got = ov.coverage_status(match_rate=6 / 7, year_min_match_rate=0.8, unknown_rate=2 / 7,
                             duplicate_key_count_primary=0, duplicate_key_count_overlay=0,
                             thresholds=th)  # fmt: skip
    assert got == ("FAIL_LOW_MATCH", ["match_rate_below_fail threshold=0.9000 value=0.8571"])


def test_year_min_p10_and_fail_years() -> None:
    # rows per year (matched of rows): 2019 1/4, 2020 1/2, 2021-2023 1/1, 2024 0/1
    years = [2019] * 4 + [2020] * 2 + [2021, 2022, 2023, 2024]
    p = pl.DataFrame({"ticker": [f"T{i}" for i in range(10)],
                      "trade_date": [date(y, 6, 1) for y in years]})  # fmt: skip
    matched = [0, 4, 6, 7, 8]
    o = p[matched].with_columns(cluster_id=pl.lit(1))
    res = ov.apply_overlay(p, o, POLICY, "allow_only")
    s = res.join_summary
    assert res.coverage_by_year["match_rate"].to_list() == [0.25, 0.5, 1.0, 1.0, 1.0, 0.0]
    assert s["year_min_match_rate"] == 0.0
    # sorted rates 0, .25, .5, 1, 1, 1: nearest rank round(0.1 * 5) = 1 -> 0.25 (linear: 0.125)
    assert s["year_p10_match_rate"] == 0.25
    assert s["year_fail_years"] == [2019, 2024]
    assert s["coverage_status"] == "FAIL_LOW_MATCH"
    assert s["coverage_reasons"] == [
        "match_rate_below_fail threshold=0.6000 value=0.5000",
        "year_min_match_rate_below_fail threshold=0.5000 value=0.0000",
    ]
    assert res.verdict["strict_fail_triggered"] is False


# --- strict fail, zero coverage, empty primary -----------------------------------------------


def test_strict_fail_raises_unless_bypassed() -> None:
    verdict = {"status": "FAIL_LOW_MATCH", "reasons": ["a x", "b y"]}
    with pytest.raises(ov.OverlayCoveragePolicyError) as err:
        ov.check_strict(verdict, "strict_fail", bypass=False)
    assert str(err.value) == "overlay_coverage_strict_fail:FAIL_LOW_MATCH reasons=a x;b y"
    assert isinstance(err.value, ValueError)
    ov.check_strict(verdict, "strict_fail", bypass=True)
    ov.check_strict(verdict, "warn_only", bypass=False)
    ov.check_strict({"status": "WARN_LOW_MATCH", "reasons": ["r"]}, "strict_fail", bypass=False)


def test_strict_fail_from_a_run_verdict() -> None:
    p = pl.concat([primary(), primary()[[0]]])
    strict = ov.CoverageThresholds(coverage_mode="strict_fail")
    res = ov.apply_overlay(p, overlay_rows(), POLICY, "allow_only", thresholds=strict)
    assert res.verdict["strict_fail_triggered"] is True
    with pytest.raises(ov.OverlayCoveragePolicyError, match=r"^overlay_coverage_strict_fail:"
                       r"FAIL_DUPLICATES reasons=duplicate_keys primary=2 overlay=0$"):  # fmt: skip
        ov.check_strict(res.verdict, "strict_fail", bypass=False)


def test_zero_coverage_is_an_error_unless_mode_none() -> None:
    o = overlay_rows().with_columns(ticker=pl.format("Z{}", pl.int_range(pl.len())))
    for mode in ov.OVERLAY_MODES[1:]:
        with pytest.raises(ValueError, match="requires non-zero join coverage"):
            ov.apply_overlay(primary(), o, POLICY, mode)
    res = ov.apply_overlay(primary(), o, POLICY, "none")
    assert res.join_summary["match_rate"] == 0.0
    assert res.verdict["status"] == "FAIL_LOW_MATCH"
    assert res.frame["overlay_allow_signal"].all()


def test_empty_primary_short_circuits() -> None:
    p = primary().head(0)
    o = pl.concat([overlay_rows(), overlay_rows()])  # duplicates are not even looked at
    res = ov.apply_overlay(p, o, POLICY, "allow_only")
    assert res.frame.height == 0
    assert res.frame.columns == ["ticker", "trade_date", "close", *ov.OVERLAY_SCHEMA]
    s = res.join_summary
    assert s["primary_rows_total"] == s["overlay_rows_total"] == 0
    assert s["duplicate_key_count_overlay"] == 0
    assert s["match_rate"] is None and s["unknown_rate"] is None
    assert s["year_min_match_rate"] is None and s["year_fail_years"] == []
    assert (res.verdict["status"], res.verdict["reasons"]) == ("OK", [])
    assert res.coverage_by_year.height == 0 and res.policy_mix.height == 0
    assert res.duplicate_keys is None


def test_no_overlay_passes_everything() -> None:
    f = ov.no_overlay(primary())
    assert f.columns == ["ticker", "trade_date", "close", *ov.OVERLAY_SCHEMA]
    assert dict(f.select(list(ov.OVERLAY_SCHEMA)).schema) == ov.OVERLAY_SCHEMA
    assert f["overlay_allow_signal"].to_list() == [True] * 7
    assert f["overlay_enabled"].to_list() == [False] * 7
    others = [c for c in ov.OVERLAY_SCHEMA if c not in ("overlay_allow_signal", "overlay_enabled")]
    assert all(f[c].null_count() == 7 for c in others)


# --- inputs ----------------------------------------------------------------------------------


def test_policy_table_values_and_errors() -> None:
    t = ov.policy_table(POLICY)
    assert t.rows() == [(1, "ALLOW", "LONG_BIAS", 80.5), (2, "WATCH", "SHORT_BIAS", 50.0),
                        (3, "BLOCK", "UNCONFIRMED", None)]  # fmt: skip
    dup = ov.policy_table({"per_state": [{"state_id": 5}, {"state_id": 5, "class_label": "BLOCK"},
                                         {"state_id": 6, "class_label": "WATCH"}]})  # fmt: skip
    assert dup.rows() == [(5, "UNKNOWN", "UNCONFIRMED", None), (6, "WATCH", "UNCONFIRMED", None)]
    with pytest.raises(ValueError, match="not a list"):
        ov.policy_table({"per_state": {"1": "ALLOW"}})
    with pytest.raises(ValueError, match="not a list"):
        ov.policy_table({})
    with pytest.raises(ValueError, match="integer state_id"):
        ov.policy_table({"per_state": [{"state_id": "1"}, {"state_id": True}, {"state_id": 1.5}]})
    with pytest.raises(ValueError, match="ALLOW, WATCH or BLOCK"):
        ov.policy_table({"per_state": [{"state_id": 1, "class_label": "maybe"}]})


def test_input_errors() -> None:
    with pytest.raises(ValueError, match="cluster_id"):
        ov.read_overlay_rows(overlay_rows().drop("cluster_id"))
    with pytest.raises(ValueError, match="not allowed"):
        ov.apply_overlay(primary(), overlay_rows(), POLICY, join_keys=["ticker", "close"])
    with pytest.raises(ValueError, match=r"overlay rows have no key column\(s\) \['timeframe'\]"):
        ov.apply_overlay(primary().with_columns(timeframe=pl.lit("D1")), overlay_rows(), POLICY,
                         join_keys="ticker,timeframe")  # fmt: skip
    with pytest.raises(ValueError, match="overlay mode"):
        ov.apply_overlay(primary(), overlay_rows(), POLICY, "allow")
    with pytest.raises(ValueError, match="coverage_mode"):
        ov.CoverageThresholds(coverage_mode="strict")
    assert ov.parse_join_keys("") == ov.parse_join_keys(None) == ("ticker", "trade_date")


# --- §6.6 artifacts --------------------------------------------------------------------------


def test_signal_effect_summary_by_year() -> None:
    signals = pl.DataFrame({
        "trade_date": [date(2023, 5, 1), date(2023, 5, 2), date(2024, 1, 2), date(2024, 1, 3),
                       date(2024, 1, 4), date(2025, 1, 2)],
        "primary_eligible": [True, True, True, True, False, False],
        "overlay_candidate_after": [True, False, False, False, False, False],
        "overlay_vetoed_signal": [False, True, True, True, False, False],
    })  # fmt: skip
    diag = {"overlay_enabled": True, "overlay_mode": "allow_only",
            "candidate_signals_before_overlay": 4, "candidate_signals_after_overlay": 1,
            "overlay_vetoed_signal_count": 3, "overlay_vetoed_signal_share": 0.75,
            "overlay_passed_signal_count": 1, "overlay_vetoed_by_policy_class": {"BLOCK": 3},
            "overlay_direction_conflict_count": 2, "overlay_direction_conflict_share": 0.5,
            "rows": 6}  # fmt: skip
    got = ov.signal_effect_summary(signals, diag)
    assert got == {
        "overlay_enabled": True, "overlay_mode": "allow_only",
        "candidate_signals_before_overlay": 4, "candidate_signals_after_overlay": 1,
        "vetoed_count": 3, "vetoed_share": 0.75, "overlay_passed_signal_count": 1,
        "overlay_vetoed_by_policy_class": {"BLOCK": 3},
        "overlay_direction_conflict_count": 2, "overlay_direction_conflict_share": 0.5,
        "by_year": [
            {"year": 2023, "candidate_before": 2, "candidate_after": 1, "vetoed": 1,
             "vetoed_share": 0.5},
            {"year": 2024, "candidate_before": 2, "candidate_after": 0, "vetoed": 2,
             "vetoed_share": 1.0},
            {"year": 2025, "candidate_before": 0, "candidate_after": 0, "vetoed": 0,
             "vetoed_share": None},
        ],
    }  # fmt: skip


def test_performance_breakdown_hand_computed() -> None:
    classes = ["ALLOW"] * 6 + ["BLOCK"] * 2 + ["UNKNOWN"] * 2
    returns = [0.10, -0.05, 0.02, 0.03, 0.5, float("nan"), 0.04, 0.01, 0.0, 0.0]
    valid = [True, True, True, True, False, True, True, True, True, True]
    trades = pl.DataFrame({"entry_overlay_policy_class": classes, "net_return": returns,
                           "is_valid_trade": valid})  # fmt: skip
    b = ov.performance_breakdown(trades)
    assert b["entry_overlay_policy_class"].to_list() == ["ALLOW", "BLOCK", "UNKNOWN"]
    allow, block, unknown = b.to_dicts()
    # ALLOW: -0.05, 0.02, 0.03, 0.10 (the invalid 0.5 and the NaN are dropped); mean 0.025;
    # deviations ±0.075, ±0.005 -> var0 = (2*0.005625 + 2*0.000025)/4 = 0.002825
    std = math.sqrt(0.002825)
    assert allow == pytest.approx({
        "entry_overlay_policy_class": "ALLOW", "trade_count": 4, "avg_return": 0.025,
        "median_return": 0.025, "return_std": std,
        "ret_p10": -0.05,  # nearest rank round(0.3) = 0
        "ret_p90": 0.10,  # nearest rank round(2.7) = 3
        "worst_trade_return": -0.05, "best_trade_return": 0.10, "win_count": 3,
        "gross_win": 0.15, "gross_loss": -0.05, "win_rate": 0.75, "profit_factor": 3.0,
        "profit_factor_inf": False, "ret_cv": std / 0.025,
    })  # fmt: skip
    assert block == pytest.approx({
        "entry_overlay_policy_class": "BLOCK", "trade_count": 2, "avg_return": 0.025,
        "median_return": 0.025, "return_std": 0.015, "ret_p10": 0.01, "ret_p90": 0.04,
        "worst_trade_return": 0.01, "best_trade_return": 0.04, "win_count": 2,
        "gross_win": 0.05, "gross_loss": 0.0, "win_rate": 1.0, "profit_factor": math.inf,
        "profit_factor_inf": True, "ret_cv": 0.6,
    })  # fmt: skip
    assert unknown["trade_count"] == 2 and unknown["win_count"] == 0
    assert unknown["profit_factor"] is None and unknown["profit_factor_inf"] is False
    assert unknown["ret_cv"] is None and unknown["win_rate"] == 0.0
