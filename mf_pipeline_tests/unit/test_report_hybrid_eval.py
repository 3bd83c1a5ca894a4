"""Hybrid overlay evaluation report (§8): combo and single-run scores by hand, label and
veto boundaries, WF consistency with and without common splits (fault 25: 0 is a real 0, no
common split = null and no adjustment), final ranking, and the whole report on real grid and
walk-forward folders checked against a plain-Python recomputation."""

import json
import re

import polars as pl
import pytest

from mf_pipeline.lib.grids.compare import compare_grids
from mf_pipeline.lib.reports import hybrid_eval as he
from mf_pipeline.lib.reports.discover import Loaded
from mf_pipeline_tests.unit.test_report_discover import SPLITS, build_lake, make_wf

lake_fixture = pytest.fixture(scope="module", name="lake")(build_lake)

INF = float("inf")
BASE, ALLOW, BLOCK, FLOW = he.LABELS.values()


def test_combo_candidate_score_by_hand() -> None:
    metrics = pl.DataFrame({
        "combo_id": ["a", "b", "c"], "source_type": ["hmm"] * 3,
        "expectancy": [0.02, 0.01, None], "profit_factor": [INF, 1.5, None],
        "robustness_score_v2": [80.0, 40.0, 0.0], "ret_cv": [2.0, 4.0, None],
        "downside_std": [0.01, 0.01, None], "trade_count": [50, 150, 0],
        "is_zero_trade_combo": [False, False, True],
    })  # fmt: skip
    got = he.with_combo_scores(metrics)["combo_candidate_score"].to_list()
    # a: exp 1, pf 1 (+inf), rob 1, ret_cv 1, downside 0.5 (equal), trades 1/3
    # b: exp 0, pf 0.5 (lone finite), rob 0.5, ret_cv 0, downside 0.5, trades 1
    # c: nulls 0, rob 0, trades 0 -> 0 - 20 -> clipped to 0
    assert got == pytest.approx([
        100 * (0.32 + 0.20 + 0.24 + 0.13 + 0.06 * 0.5 + 0.05 / 3),
        100 * (0.20 * 0.5 + 0.24 * 0.5 + 0.06 * 0.5 + 0.05), 0.0])


def test_top_combo_order_ties_and_nulls_last() -> None:
    scored = pl.DataFrame({
        "combo_id": ["d", "c", "b", "a"], "source_type": ["hmm"] * 4,
        "combo_candidate_score": [50.0, 50.0, 50.0, 50.0],
        "expectancy": [None, 0.01, 0.01, 0.01], "profit_factor": [9.0, 2.0, INF, INF]})
    for perm in ([0, 1, 2, 3], [3, 2, 1, 0]):
        assert he.best_row(scored[perm], he.TOP_COMBO_ORDER)["combo_id"] == "a"


def _run(label, exp, pf, rob, cv, down, zero, trades, mode="none", veto=None, status="OK"):
    return {"run_label": label, "status": status, "overlay_mode": mode,
            "overlay_enabled": mode != "none", "best_expectancy": exp, "best_pf": pf,
            "best_robustness_v2": rob, "best_ret_cv": cv, "best_downside_std": down,
            "best_zero_trade_share": zero, "best_trade_count": trades,
            "overlay_vetoed_signal_share": veto}


def test_single_candidate_score_by_hand_and_the_veto_penalty() -> None:
    rows = [_run(BASE, 0.01, 1.5, 60.0, 3.0, 0.02, 0.0, 100),
            _run(ALLOW, 0.02, 2.0, 80.0, 2.0, 0.01, 0.5, 40, "allow_only", 0.80),
            _run(BLOCK, None, None, None, None, None, None, None, "block_veto",
                 status="MISSING")]
    scores = dict(zip(*he.score_runs(rows, 20.0).select("run_label", "single_candidate_score")
                      .to_dict(as_series=False).values(), strict=True))
    # the missing row has no value: base is the minimum (0) of every metric but the zero-trade
    # share, where it is the best (1)
    assert scores[BASE] == pytest.approx(100 * 0.03)
    # allow: best everywhere but the zero-trade share (0); veto 0.80 is not > 0.80
    assert scores[ALLOW] == pytest.approx(100 * (0.30 + 0.20 + 0.25 + 0.15 + 0.07))
    assert scores[BLOCK] == 0.0
    rows[1]["overlay_vetoed_signal_share"] = 0.81
    penalised = he.score_runs(rows, 20.0).filter(pl.col("run_label") == ALLOW)
    assert penalised["single_candidate_score"][0] == pytest.approx(100 * 0.97 - 5)


def _labels(rows, max_ret_cv=20.0) -> list[str]:
    table = pl.DataFrame(rows, schema={**he.TABLE_SCHEMA, "single_candidate_score": pl.Float64})
    return he.recommendation_labels(table, max_ret_cv)["recommendation_label"].to_list()


def test_recommendation_label_boundaries() -> None:
    def row(label=BASE, score=80.0, zero=0.0, cv=5.0, mode="none", veto=None, trades=100,
            status="OK"):
        return {**_run(label, 0.0, 1.0, 1.0, cv, 0.0, zero, trades, mode, veto, status),
                "single_candidate_score": score}

    assert _labels([row(score=72.0), row(score=71.99), row(score=56.0), row(score=55.99)]) \
        == ["PROMOTE", "KEEP_AS_BENCH", "KEEP_AS_BENCH", "RESEARCH_ONLY"]
    assert _labels([row(zero=0.25), row(zero=0.2501), row(zero=None)]) \
        == ["PROMOTE", "KEEP_AS_BENCH", "PROMOTE"]
    assert _labels([row(cv=20.0), row(cv=20.01), row(cv=None)]) \
        == ["PROMOTE", "KEEP_AS_BENCH", "PROMOTE"]
    assert _labels([row(cv=25.0)], max_ret_cv=30.0) == ["PROMOTE"]  # the setting decides
    assert _labels([row(status="NO_SUCCESS_ROWS")]) == ["RESEARCH_ONLY"]
    # overlay rows below the PROMOTE bar: NICHE_FILTER by veto share or by few trades
    overlay = {"label": ALLOW, "score": 60.0, "mode": "allow_only"}
    assert _labels([row(score=60.0), row(**overlay, veto=0.50), row(**overlay, veto=0.49)]) \
        == ["KEEP_AS_BENCH", "NICHE_FILTER", "RESEARCH_ONLY"]
    assert _labels([row(score=60.0), row(**overlay, veto=0.0, trades=59),
                    row(**overlay, veto=0.0, trades=60)]) \
        == ["KEEP_AS_BENCH", "NICHE_FILTER", "RESEARCH_ONLY"]
    assert _labels([row(score=60.0, trades=None), row(**overlay, veto=0.0, trades=1)]) \
        == ["KEEP_AS_BENCH", "RESEARCH_ONLY"]  # unknown baseline trades: no ratio rule


def _stats(n, exp=0, pf=0, rob=0, cv=0):
    return {"split_count": n, "hybrid_wins_expectancy": exp, "hybrid_wins_pf": pf,
            "hybrid_wins_robustness_v2": rob, "hybrid_wins_ret_cv": cv}


def test_wf_consistency_score_zero_is_real_and_no_split_is_null() -> None:
    assert he.wf_consistency_score(_stats(2, 1, 2, 0, 1)) == pytest.approx(
        100 * (0.30 + 0.20 * 2 + 0.20) / 2)
    assert he.wf_consistency_score(_stats(3)) == 0.0  # lost everything: 0, not 50
    assert he.wf_consistency_score(_stats(0)) is None


def test_final_ranking_uses_a_zero_score_and_skips_a_null_one() -> None:
    rows = [_run(BASE, 0.01, 1.5, 60.0, 3.0, 0.02, 0.0, 100),
            _run(ALLOW, 0.01, 1.5, 60.0, 3.0, 0.02, 0.0, 100, "allow_only", 0.1),
            _run(BLOCK, 0.01, 1.5, 60.0, 3.0, 0.02, 0.0, 100, "block_veto", 0.1)]
    table = he.score_runs(rows, 20.0)  # identical rows: every single score is 50
    assert table["single_candidate_score"].to_list() == [50.0] * 3

    def ranked(wfc):
        out, verdicts = he.final_ranking(table, wfc)
        return dict(zip(out["run_label"], out["final_rank_score"], strict=True)), verdicts

    scores, v = ranked(0.0)  # fault 25: the hybrid lost every split
    assert scores == {BASE: 50 + 12.5, ALLOW: 50 - 20.0, BLOCK: 50 - 2.5}
    assert v == {"PRIMARY_CANDIDATE": BASE, "SECONDARY_CANDIDATE": BLOCK,
                 "NEXT_EXPERIMENT": ALLOW,
                 "run_recommendations": {BASE: "PROMOTE", BLOCK: "KEEP_AS_BENCH",
                                         ALLOW: "NICHE_FILTER"}}
    scores, v = ranked(None)  # no common split: no walk-forward adjustment
    assert scores == {BASE: 50.0, ALLOW: 50.0, BLOCK: 47.5}
    assert (v["PRIMARY_CANDIDATE"], v["SECONDARY_CANDIDATE"]) == (ALLOW, BASE)  # label asc
    scores, _ = ranked(100.0)
    assert scores == {BASE: 50 - 12.5, ALLOW: 50 + 20.0, BLOCK: 47.5}


# ------------------------------------------------------------------ on real grid folders


def _ref_scale(values, up):
    """Plain-Python min-max of finite values (None -> 0, all equal -> 0.5, none -> 0.5)."""
    ok = [v for v in values if v is not None]
    if not ok:
        return [0.5] * len(values)
    lo, hi = min(ok), max(ok)
    out = []
    for v in values:
        if v is None:
            out.append(0.0)
            continue
        s = 0.5 if hi == lo else (v - lo) / (hi - lo)
        out.append(s if up else 1.0 - s)
    return out


def _ref_weighted(rows, weights):
    scaled = {c: _ref_scale([r[c] for r in rows], up) for c, (_, up) in weights.items()}
    return [100 * sum(w * scaled[c][i] for c, (w, _) in weights.items())
            for i in range(len(rows))]


def _ref_top(folder):
    rows = pl.read_parquet(folder / "grid_metrics_table.parquet").to_dicts()
    weights = {"expectancy": (0.32, True), "profit_factor": (0.20, True),
               "robustness_score_v2": (0.24, True), "ret_cv": (0.13, False),
               "downside_std": (0.06, False), "trade_count": (0.05, True)}
    raw = _ref_weighted(rows, weights)
    for r, s in zip(rows, raw, strict=True):
        r["score"] = max(0.0, min(100.0, s - 20 * r["is_zero_trade_combo"]))
    best = max(rows, key=lambda r: (r["score"], r["expectancy"] or -1e9,
                                    r["profit_factor"] or -1e9))
    return best, sum(r["is_zero_trade_combo"] for r in rows) / len(rows)


def test_report_on_real_grids_matches_an_independent_recomputation(lake, tmp_path) -> None:
    settings, grids = lake
    out = he.hybrid_eval_report(settings, {}, tmp_path)
    assert re.fullmatch(r"hybrid-eval-[0-9a-f]{12}", out["run_id"])
    folder = tmp_path / f"{out['run_id']}_hybrid_eval_v1"
    assert [p.name for p in tmp_path.iterdir()] == [folder.name]
    for name in ("hybrid_eval_summary.json", "hybrid_eval_table.csv",
                 "hybrid_eval_wf_table.csv", "hybrid_eval_report.md", "hybrid_eval_report.html"):
        assert (folder / name).is_file(), name
    # the newest overlay-none hmm grid (lite), then overlay grids of the same profile
    expected = {"hmm_baseline": grids["hmm_lite"],
                "hmm_allow_only": grids["hmm_overlay_allow_lite"],
                "hmm_block_veto": grids["hmm_overlay_block_lite"],
                "wf_hmm_baseline": grids["wf_baseline"], "wf_hmm_hybrid": grids["wf_hybrid"]}
    assert {k: v for k, v in out["inputs"].items() if v["how"] == "discovered"} == \
        {k: {"dir": str(p), "how": "discovered"} for k, p in expected.items()}
    assert out["inputs"]["flow_allow_only"] == {"dir": None, "how": "missing"}
    table = pl.read_csv(folder / "hybrid_eval_table.csv")
    rows = {r["run_label"]: r for r in table.iter_rows(named=True)}
    assert sorted(rows) == sorted([BASE, ALLOW, BLOCK])  # no flow row unless given
    for key, label in (("hmm_baseline", BASE), ("hmm_allow_only", ALLOW),
                       ("hmm_block_veto", BLOCK)):
        best, share = _ref_top(expected[key])
        row = rows[label]
        summary = json.loads((expected[key] / "grid_summary.json").read_text())
        assert row["best_combo_id"] == best["combo_id"]
        assert row["combo_candidate_score"] == pytest.approx(best["score"])
        assert row["best_zero_trade_share"] == pytest.approx(share) == 0.5  # grid-level (§8.1)
        assert row["best_is_zero_trade_combo"] is False
        assert row["pbo"] == pytest.approx(summary["overfitting"]["hmm"]["pbo"])
        assert row["fluke_risk"] == summary["overfitting"]["hmm"]["fluke_risk"]
    ordered = [rows[x] for x in (BASE, ALLOW, BLOCK)]
    singles = _ref_weighted(ordered, he.SINGLE_WEIGHTS)
    singles = [max(0.0, min(100.0, s - 5 * ((r["overlay_vetoed_signal_share"] or 0) > 0.8)))
               for s, r in zip(singles, ordered, strict=True)]
    assert [r["single_candidate_score"] for r in ordered] == pytest.approx(singles)
    # WF consistency from the split grids' top combos
    pairs = [(_ref_top(grids["wf_baseline"] / "splits" / te)[0],
              _ref_top(grids["wf_hybrid"] / "splits" / te)[0]) for te in SPLITS]
    wins = {"expectancy": sum(h["expectancy"] > b["expectancy"] for b, h in pairs),
            "pf": sum(h["profit_factor"] > b["profit_factor"] for b, h in pairs),
            "robustness_v2": sum(h["robustness_score_v2"] > b["robustness_score_v2"]
                                 for b, h in pairs),
            "ret_cv": sum(h["ret_cv"] < b["ret_cv"] for b, h in pairs)}
    wfc = 100 * sum(he.WF_WIN_WEIGHTS[k] * n for k, n in wins.items()) / len(pairs)
    wf = out["wf_consistency"]
    assert (wf["status"], wf["split_count"]) == ("OK", 2)
    assert {k: wf[f"hybrid_wins_{k}"] for k in wins} == wins
    assert wf["wf_consistency_score"] == pytest.approx(wfc)
    assert wf["baseline_overlay_vetoed_signal_share"] == 0.0
    assert 0.0 < wf["hybrid_overlay_vetoed_signal_share"] < 1.0
    final = {BASE: singles[0] + (50 - wfc) * 0.25, ALLOW: singles[1] + (wfc - 50) * 0.40,
             BLOCK: singles[2] - 2.5}
    assert {r: rows[r]["final_rank_score"] for r in rows} == pytest.approx(final)
    ranking = sorted(final, key=lambda x: (-final[x], x))
    assert table["run_label"].to_list() == ranking
    assert out["final_verdicts"]["PRIMARY_CANDIDATE"] == ranking[0]
    assert out["key_deltas"]["baseline_vs_block_veto"]["delta_trade_count"] == \
        rows[BLOCK]["best_trade_count"] - rows[BASE]["best_trade_count"]
    assert out["compare_run_summary"] is None
    assert out["sanity"]["status"] == "ok" and out["sanity"]["non_finite_cells_detected"] == 0
    md = (folder / "hybrid_eval_report.md").read_text()
    assert "a high PBO means the grid's winner is likely a fluke" in md


def test_overlay_grids_must_share_the_baseline_profile(lake, tmp_path) -> None:
    settings, grids = lake
    out = he.hybrid_eval_report(settings, {"hmm_baseline": grids["hmm_none"]}, tmp_path)
    status = {r["run_label"]: r["status"] for r in out["compared_runs"]}
    assert status == {BASE: "OK", ALLOW: "MISSING", BLOCK: "MISSING"}  # no profile-none overlay
    assert out["sanity"]["status"] == "partial"
    assert out["sanity"]["missing_files"] == [f"{k}: no folder given or discovered" for k in
                                              ("hmm_allow_only", "hmm_block_veto",
                                               "wf_hmm_baseline", "wf_hmm_hybrid")]
    wf = out["wf_consistency"]
    assert (wf["status"], wf["wf_consistency_score"]) == ("MISSING_WF_INPUTS", None)
    top = {r["run_label"]: r for r in out["top_combo_per_run"]}
    assert top[ALLOW]["wf_adjustment"] == 0.0 and top[BASE]["wf_adjustment"] == 0.0
    assert "the score is null and the ranking has no walk-forward adjustment" in \
        (tmp_path / f"{out['run_id']}_hybrid_eval_v1" / "hybrid_eval_report.md").read_text()


def test_optional_flow_run_and_compare_folder(lake, tmp_path) -> None:
    settings, grids = lake
    compare = compare_grids([grids["hmm_lite"], grids["hmm_overlay_allow_lite"]], None,
                            "expectancy", tmp_path / "compare")
    compare_dir = next((tmp_path / "compare").iterdir())
    out = he.hybrid_eval_report(settings, {"flow_allow_only": grids["flow_allow_lite"],
                                           "compare_run": compare_dir}, tmp_path / "out")
    rows = {r["run_label"]: r for r in out["top_combo_per_run"]}
    assert rows[FLOW]["status"] == "OK" and rows[FLOW]["overlay_mode"] == "allow_only"
    assert rows[FLOW]["best_source_type"] == "flow"
    assert out["inputs"]["flow_allow_only"]["how"] == "given"
    assert out["compare_run_summary"]["compare_id"] == compare["compare_id"]
    gone = he.hybrid_eval_report(settings, {"hmm_block_veto": tmp_path / "deleted"},
                                 tmp_path / "gone")
    assert {r["run_label"]: r["status"] for r in gone["compared_runs"]}[BLOCK] == "MISSING"
    assert gone["sanity"]["missing_files"] == [str((tmp_path / "deleted").resolve())]
    with pytest.raises(ValueError, match="unknown report input"):
        he.hybrid_eval_report(settings, {"hmm_baseline_grid": None}, tmp_path / "x")


def test_walk_forward_grids_without_a_common_split(lake) -> None:
    """Fault 25: nothing to compare is a null score (and no adjustment), not a neutral 50."""
    settings, grids = lake
    other = make_wf(settings, "allow_only", "strict", "wfgrid-other-splits", {"2019-12-31": 23})
    wf = he.wf_consistency(grids["wf_baseline"], other, Loaded())
    assert (wf["status"], wf["split_count"], wf["wf_consistency_score"]) == \
        ("NO_SHARED_SPLITS", 0, None)
    assert wf["hybrid_wins_expectancy"] == 0 and wf["avg_delta_expectancy"] is None


def test_a_missing_run_is_never_a_candidate() -> None:
    """A run without a grid (status MISSING) ranks after every real run and gets no candidate
    label, even when the walk-forward adjustment would lift it (ours; §8.5 ranked it)."""
    table = pl.DataFrame({
        "run_label": [BASE, ALLOW, BLOCK],
        "overlay_mode": ["none", "allow_only", "block_veto"],
        "overlay_enabled": [False, True, True],
        "single_candidate_score": [40.0, 0.0, 60.0],
        "status": ["OK", "MISSING", "OK"]})  # fmt: skip
    ranked, verdicts = he.final_ranking(table, wfc=100.0)  # allow_only would get +20
    assert ranked["run_label"].to_list() == [BLOCK, BASE, ALLOW]
    assert (verdicts["PRIMARY_CANDIDATE"], verdicts["SECONDARY_CANDIDATE"]) == (BLOCK, BASE)
    assert verdicts["NEXT_EXPERIMENT"] is None
    assert verdicts["run_recommendations"][ALLOW] == "RESEARCH_ONLY"
