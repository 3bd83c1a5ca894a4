"""Execution realism report (§7.8): min-max scoring rules, best combo with nulls last (fault
15), thresholds from settings and the chosen combo's zero-trade flag (fault 26), NOT_TRADABLE
guard, verdict notes at their boundaries, and the whole report on real grid folders checked
against an independent plain-Python recomputation."""

import json
import math
import re

import polars as pl
import pytest

from mf_pipeline.lib.reports import realism
from mf_pipeline.lib.reports.scoring import minmax_series
from mf_pipeline_tests.unit.test_report_discover import SPLITS, build_lake

lake_fixture = pytest.fixture(scope="module", name="lake")(build_lake)

INF, NAN = float("inf"), float("nan")
LABELS = [label for label, _, _ in realism.GRID_TARGETS.values()]
NONE, LITE, STRICT, ALLOW, BLOCK = LABELS


def _mm(values, up=True):
    return minmax_series(pl.Series("x", values, dtype=pl.Float64), up).to_list()


def test_minmax_rules() -> None:
    assert _mm([1.0, 2.0, 3.0, None]) == [0.0, 0.5, 1.0, 0.0]
    assert _mm([1.0, 2.0, 3.0, None], up=False) == [1.0, 0.5, 0.0, 0.0]  # null stays 0
    assert _mm([2.0, 2.0, None]) == [0.5, 0.5, 0.0]  # all equal
    assert _mm([None, None]) == [0.5, 0.5]  # nothing finite
    assert _mm([NAN, -INF]) == [0.5, 0.5]  # NaN and -inf are missing
    assert _mm([1.0, INF, 3.0, NAN]) == [0.0, 1.0, 1.0, 0.0]  # +inf is the maximum
    assert _mm([3.0, 3.0, INF]) == [0.5, 0.5, 1.0]
    assert _mm([INF, INF, None]) == [0.5, 0.5, 0.0]


def test_best_combo_puts_nulls_last_and_inf_profit_factor_first() -> None:
    rows = pl.DataFrame({
        "combo_id": ["z0", "c1", "b2", "a3", "d4"],
        "source_type": ["hmm"] * 5,
        "robustness_score_v2": [None, 60.0, 60.0, 60.0, 50.0],  # z0: a null score never wins
        "expectancy": [0.9, 0.01, 0.01, 0.01, 0.5],
        "profit_factor": [9.0, 2.0, INF, INF, 9.0],  # +inf is the best profit factor
    })  # fmt: skip
    for perm in ([0, 1, 2, 3, 4], [4, 3, 2, 1, 0], [2, 0, 4, 1, 3]):
        best = realism.best_row(rows[perm], realism.BEST_COMBO_ORDER)
        assert best["combo_id"] == "a3"  # tie on v2, expectancy and PF -> combo_id asc
    nan_pf = rows.with_columns(profit_factor=pl.Series([9.0, NAN, NAN, NAN, 9.0]))
    assert realism.best_row(nan_pf, realism.BEST_COMBO_ORDER)["combo_id"] == "a3"  # NaN missing


def _row(label, exp, pf, rob, cv, zero, trades, status="OK"):
    return {"run_label": label, "status": status, "best_expectancy": exp, "best_pf": pf,
            "best_robustness_v2": rob, "best_ret_cv": cv, "best_zero_trade_share": zero,
            "best_trade_count": trades,
            "realism_aware_verdict": "TRADABLE" if status == "OK" else "NOT_TRADABLE"}


def _scores(rows, min_trades=30, max_zero=0.5) -> dict[str, tuple[float, str]]:
    table = realism.score_rows(rows, min_trades, max_zero)
    return {r["run_label"]: (r["candidate_score"], r["realism_aware_verdict"])
            for r in table.iter_rows(named=True)}


def test_candidate_score_by_hand() -> None:
    rows = [_row(NONE, 0.01, 1.5, 70.0, 3.0, 0.0, 100),
            _row(LITE, 0.009, INF, 60.0, 2.0, 0.0, 40),
            _row(STRICT, None, None, None, None, None, None, status="MISSING")]
    got = _scores(rows)
    # none: exp 1, PF 0.5 (lone finite value next to +inf), rob 1, ret_cv 0, zero 0.5 (equal)
    assert got[NONE] == (pytest.approx(100 * (0.30 + 0.20 * 0.5 + 0.25 + 0.10 * 0.5)),
                         "TRADABLE")
    # lite: exp 0, PF 1 (+inf), rob 0, ret_cv 1, zero 0.5
    assert got[LITE] == (pytest.approx(100 * (0.20 + 0.15 + 0.05)), "TRADABLE")
    assert got[STRICT] == (0.0, "NOT_TRADABLE")
    order = realism.score_rows(rows, 30, 0.5)["run_label"].to_list()
    assert order == [NONE, LITE, STRICT]


def test_penalties_at_their_thresholds_and_the_not_tradable_guard() -> None:
    base = [_row(NONE, 0.01, 1.5, 70.0, 3.0, 0.0, 100), _row(LITE, 0.01, 1.5, 70.0, 3.0, 0.0, 100)]
    ref = _scores(base)[LITE][0]  # identical rows: every metric 0.5 -> 50
    assert ref == pytest.approx(50.0)

    def lite(**kw):
        row = {**base[1], **kw}
        return _scores([base[0], row], **({"min_trades": 30, "max_zero": 0.5}))[LITE]

    assert lite(best_trade_count=30) == (pytest.approx(ref), "TRADABLE")  # not below 30
    assert lite(best_trade_count=29)[0] == pytest.approx(ref - 10 + 0.0)  # below: -10
    assert lite(best_trade_count=None) == (0.0, "NOT_TRADABLE")  # unknown trades -> 0 trades
    assert lite(best_trade_count=0) == (0.0, "NOT_TRADABLE")
    # zero-trade share: at 0.5 no penalty, above it -10 (the share's own score also moves)
    at = lite(best_zero_trade_share=0.5)[0]
    above = lite(best_zero_trade_share=0.6)[0]
    assert at == pytest.approx(100 * (0.30 * 0.5 + 0.20 * 0.5 + 0.25 * 0.5 + 0.15 * 0.5))
    assert above == pytest.approx(at - 10)
    assert lite(best_zero_trade_share=1.0) == (0.0, "NOT_TRADABLE")
    assert lite(status="NO_SUCCESS_ROWS") == (0.0, "NOT_TRADABLE")
    # thresholds are parameters (settings), not literals (fault 26)
    assert _scores([base[0], {**base[1], "best_trade_count": 29}], min_trades=20)[LITE][0] \
        == pytest.approx(ref)
    assert _scores([base[0], {**base[1], "best_zero_trade_share": 0.6}], max_zero=0.7)[LITE][0] \
        == pytest.approx(above + 10)


def _note(none, lite, strict=None, tradable=True):
    rows = [_row(NONE, *none, 0.0, 100), _row(LITE, *lite, 0.0, 100)]
    if strict:
        rows.append(_row(STRICT, *strict, 0.0, 100))
    if not tradable:
        rows = [{**r, "best_trade_count": 0} for r in rows]
    return realism.final_verdicts(realism.score_rows(rows, 30, 0.5))


def test_realism_sensitivity_note_boundaries() -> None:
    # (expectancy, PF, robustness, ret_cv); deltas are exact binary numbers
    v = _note((0.0, 1.5, 50.0, 4.0), (-0.001, 1.453125, 50.0, 4.5))  # d_exp = -0.001 exactly
    assert v["REALISM_SENSITIVITY_NOTE"] == ("EDGE_RETAINED_UNDER_LITE (delta_exp=-0.001000, "
                                             "delta_pf=-0.046875, delta_ret_cv=0.500000).")
    v = _note((0.0, 1.5, 50.0, 4.0), (-0.0011, 1.5, 50.0, 3.5))
    assert v["REALISM_SENSITIVITY_NOTE"].startswith("EDGE_COMPROMISED_BUT_CLEANER_UNDER_LITE")
    v = _note((0.0, 1.5, 50.0, 4.0), (0.0, 1.4375, 50.0, 3.5))  # d_pf -0.0625 < -0.05 and
    assert v["REALISM_SENSITIVITY_NOTE"].startswith("TOO_FRAGILE_UNDER_REALISM")  # d_exp not < 0
    v = _note((0.0, 1.5, 50.0, 4.0), (-0.0011, 1.5, 50.0, 4.0))  # not cleaner
    assert v["REALISM_SENSITIVITY_NOTE"].startswith("TOO_FRAGILE_UNDER_REALISM (")
    v = _note((0.0, 1.5, 50.0, 4.0), (0.0, 1.5, 50.0, 4.0), strict=(-0.25, 1.25, 40.0, 4.0))
    assert v["REALISM_SENSITIVITY_NOTE"].endswith(
        "). strict_delta_exp=-0.250000 strict_delta_pf=-0.250000.")
    v = _note((None, 1.5, 50.0, 4.0), (0.0, 1.5, 50.0, 4.0))
    assert v["REALISM_SENSITIVITY_NOTE"] == "insufficient baseline metrics"
    v = _note((0.0, 1.5, 50.0, 4.0), (0.0, 1.5, 50.0, 4.0), tradable=False)
    assert v == {"PRIMARY_CANDIDATE": "NO_TRADABLE_CANDIDATE", "SECONDARY_CANDIDATE": None,
                 "REALISM_SENSITIVITY_NOTE":
                 "NO_TRADABLE_CANDIDATE (likely over-restrictive execution filters)"}
    only = realism.score_rows([_row(STRICT, 0.0, 1.5, 50.0, 4.0, 0.0, 100)], 30, 0.5)
    assert realism.final_verdicts(only) == {"PRIMARY_CANDIDATE": STRICT,
                                            "SECONDARY_CANDIDATE": None,
                                            "REALISM_SENSITIVITY_NOTE":
                                            "baseline/lite pair not available"}


# ------------------------------------------------------------------ on real grid folders


def _ref_minmax(values, up):
    """Independent plain-Python reference of the §7.8 normalisation (finite inputs only)."""
    ok = [v for v in values if v is not None]
    if not ok:
        return [0.5] * len(values)
    lo, hi = min(ok), max(ok)
    out = []
    for v in values:
        s = 0.0 if v is None else 0.5 if hi == lo else (v - lo) / (hi - lo)
        out.append(s if v is None or up else 1.0 - s)
    return out


def _ref_scores(rows, min_trades, max_zero):
    cols = {"best_expectancy": (0.30, True), "best_pf": (0.20, True),
            "best_robustness_v2": (0.25, True), "best_ret_cv": (0.15, False),
            "best_zero_trade_share": (0.10, False)}
    scaled = {c: _ref_minmax([r[c] for r in rows], up) for c, (_, up) in cols.items()}
    out = []
    for i, r in enumerate(rows):
        s = 100 * sum(w * scaled[c][i] for c, (w, _) in cols.items())
        s -= 10 * ((r["best_trade_count"] or 0) < min_trades)
        s -= 10 * (r["best_zero_trade_share"] is not None and r["best_zero_trade_share"] > max_zero)
        out.append(max(0.0, min(100.0, s)))
    return out


def _grid_best(folder):
    metrics = pl.read_parquet(folder / "grid_metrics_table.parquet").to_dicts()
    return max(metrics, key=lambda r: tuple(-INF if r[c] is None else r[c] for c in
                                            ("robustness_score_v2", "expectancy", "profit_factor")))


def test_report_on_real_grids_matches_an_independent_recomputation(lake, tmp_path) -> None:
    settings, grids = lake
    out = realism.execution_realism_report(settings, {}, tmp_path / "reports")
    folder = tmp_path / "reports" / f"{out['run_id']}_execution_realism_v1"
    assert re.fullmatch(r"exec-realism-[0-9a-f]{12}", out["run_id"])
    assert sorted(p.name for p in (tmp_path / "reports").iterdir()) == [folder.name]
    for name in ("execution_realism_summary.json", "execution_realism_table.csv",
                 "execution_realism_wf_table.csv", "execution_realism_report.md",
                 "execution_realism_report.html"):
        assert (folder / name).is_file(), name
    keys = {"hmm_none": "hmm_none", "hmm_lite": "hmm_lite", "hmm_strict": "hmm_strict",
            "hmm_overlay_allow_lite": "hmm_overlay_allow_lite",
            "hmm_overlay_block_lite": "hmm_overlay_block_lite",
            "wf_hmm_baseline_lite": "wf_baseline", "wf_hmm_hybrid_lite": "wf_hybrid"}
    assert out["inputs"] == {k: {"dir": str(grids[g]), "how": "discovered"}
                             for k, g in keys.items()}
    table = pl.read_csv(folder / "execution_realism_table.csv")
    rows = {r["run_label"]: r for r in table.iter_rows(named=True)}
    for key, (label, mode, profile) in realism.GRID_TARGETS.items():
        row, summary = rows[label], json.loads((grids[key] / "grid_summary.json").read_text())
        best = _grid_best(grids[key])
        assert (row["status"], row["overlay_mode"], row["execution_profile"]) == \
            ("OK", mode, profile)
        assert row["best_combo_id"] == best["combo_id"]
        assert row["best_expectancy"] == pytest.approx(best["expectancy"])
        assert row["best_trade_count"] == best["trade_count"]
        # fault 26: the chosen combo's flag (it trades), the grid's share (0.5) next to it
        assert row["best_zero_trade_share"] == float(best["is_zero_trade_combo"]) == 0.0
        assert row["grid_zero_trade_combo_share"] == summary["zero_trade_combo_share"] == 0.5
        over = summary["overfitting"]["hmm"]
        assert (row["dsr"], row["pbo"], row["fluke_risk"]) == \
            (pytest.approx(over["dsr"]), pytest.approx(over["pbo"]), over["fluke_risk"])
        assert row["exec_eligibility_rate"] == pytest.approx(best["exec_eligibility_rate"])
    ordered = [rows[label] for label in LABELS]
    expected = _ref_scores(ordered, 30, 0.5)
    assert [r["candidate_score"] for r in ordered] == pytest.approx(expected)
    assert table["candidate_score"].to_list() == sorted(expected, reverse=True)
    assert out["top_combo_per_run"][LITE]["combo_id"] == rows[LITE]["best_combo_id"]
    assert out["top_combo_per_run"][LITE]["pbo"] == pytest.approx(rows[LITE]["pbo"])
    assert out["thresholds"] == {"min_trades": 30, "max_zero_trade_share": 0.5}
    assert out["sanity"]["non_finite_cells_detected"] == 0 and not out["sanity"]["missing_files"]
    d = out["key_deltas"]["lite_minus_none"]
    assert d["delta_expectancy"] == pytest.approx(rows[LITE]["best_expectancy"]
                                                  - rows[NONE]["best_expectancy"])
    assert d["delta_exec_eligibility_rate"] == pytest.approx(
        rows[LITE]["exec_eligibility_rate"] - rows[NONE]["exec_eligibility_rate"])
    assert out["key_deltas"]["allow_only_lite_minus_baseline_lite"][
        "overlay_vetoed_signal_share"] == pytest.approx(rows[ALLOW]["overlay_vetoed_signal_share"])
    # WF: per split, the best hmm combo of each side; wins and mean deltas by hand
    wf = pl.read_csv(folder / "execution_realism_wf_table.csv").row(0, named=True)
    pairs = [(_grid_best(grids["wf_baseline"] / "splits" / te),
              _grid_best(grids["wf_hybrid"] / "splits" / te)) for te in SPLITS]
    assert (wf["status"], wf["split_count"]) == ("OK", 2)
    assert wf["hybrid_wins_expectancy"] == sum(h["expectancy"] > b["expectancy"]
                                               for b, h in pairs)
    assert wf["hybrid_wins_ret_cv"] == sum(h["ret_cv"] < b["ret_cv"] for b, h in pairs)
    assert wf["avg_delta_robustness_v2"] == pytest.approx(
        sum(h["robustness_score_v2"] - b["robustness_score_v2"] for b, h in pairs) / 2)
    assert wf["hybrid_overlay_vetoed_signal_share"] == pytest.approx(
        sum(h["overlay_vetoed_signal_share"] for _, h in pairs) / 2)
    assert out["wf_consistency_stats"]["hybrid_wins_pf"] == wf["hybrid_wins_pf"]
    md = (folder / "execution_realism_report.md").read_text()
    assert "a high PBO means the grid's winner is likely a fluke" in md
    assert out["final_verdicts"]["PRIMARY_CANDIDATE"] in md


def test_given_inputs_and_settings_thresholds(lake, tmp_path) -> None:
    settings, grids = lake
    first = realism.execution_realism_report(settings, {}, tmp_path)
    # the same folders named explicitly: same digest, same folder, rewritten in place
    given = realism.execution_realism_report(settings, {"hmm_none": grids["hmm_none"]}, tmp_path)
    assert given["run_id"] == first["run_id"]
    assert given["inputs"]["hmm_none"]["how"] == "given"
    assert [p.name for p in tmp_path.iterdir()] == [f"{first['run_id']}_execution_realism_v1"]
    # fault 26: a larger report_min_trades_default costs every OK row 10 points
    strict = settings.model_copy(update={"backtest_execution_realism":
                                         settings.backtest_execution_realism.model_copy(
                                             update={"report_min_trades_default": 10_000})})
    other = realism.execution_realism_report(strict, {}, tmp_path / "strict")
    before = {r["run_label"]: r["candidate_score"] for r in first["compared_runs"]}
    after = {r["run_label"]: r["candidate_score"] for r in other["compared_runs"]}
    rows = {r["run_label"]: r for r in first["compared_runs"]}
    expected = _ref_scores([rows[label] for label in LABELS], 10_000, 0.5)
    assert [after[label] for label in LABELS] == pytest.approx(expected)
    assert any(after[x] < before[x] for x in LABELS)
    assert other["thresholds"]["min_trades"] == 10_000


def test_nothing_to_compare(tmp_path, lake) -> None:
    settings, _ = lake
    empty = settings.model_copy(update={"paths": settings.paths.model_copy(
        update={"artifacts_root": tmp_path / "empty"})})
    empty.__dict__.pop("artifacts_root", None)  # a cached property of the copied settings
    out = realism.execution_realism_report(empty, {}, tmp_path / "out")
    assert {r["status"] for r in out["compared_runs"]} == {"MISSING"}
    assert all(r["candidate_score"] == 0.0 for r in out["compared_runs"])
    assert out["final_verdicts"] == {"PRIMARY_CANDIDATE": None, "SECONDARY_CANDIDATE": None,
                                     "REALISM_SENSITIVITY_NOTE":
                                     "baseline/lite pair not available"}
    assert out["wf_consistency_stats"]["status"] == "MISSING_WF_INPUTS"
    assert out["sanity"]["status"] == "WARN"
    assert out["sanity"]["missing_files"] == [f"{k}: no folder given or discovered"
                                              for k in realism.INPUT_KEYS]
    assert all(i == {"dir": None, "how": "missing"} for i in out["inputs"].values())
    assert math.isfinite(sum(r["candidate_score"] for r in out["compared_runs"]))
