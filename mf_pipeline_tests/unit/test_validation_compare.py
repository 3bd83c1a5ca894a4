"""Issue #19 (H3), fix #28: two runs are compared on states matched by outcome profile.

Run B below is run A with its state ids permuted (and its outcomes slightly perturbed), which
is what a refit of a clustering or HMM typically produces. The old compare joined on
``state_id`` and reported every class as changed; the matching recovers the permutation.
"""

import numpy as np
import polars as pl
import pytest

from mf_pipeline.lib.validation.compare import (
    ID_ALIGNED,
    MATCHED,
    hardening_compare,
    id_alignment,
    match_states,
    outcome_profile,
    validation_compare,
)

PERM = {0: 2, 1: 0, 2: 1, 3: 3}  # state id in A -> id of the same regime in B


def _summary(means: dict[int, tuple[float, float, float]], hits: dict[int, float],
             n: dict[int, int]) -> pl.DataFrame:  # fmt: skip
    rows = []
    for s, (m5, m10, m20) in means.items():
        for name, m in (("fwd_ret_5", m5), ("fwd_ret_10", m10), ("fwd_ret_20", m20)):
            rows.append({"state_id": s, "outcome_name": name, "n": n[s], "mean_obs": m,
                         "hit_rate_obs": hits[s] if name == "fwd_ret_10" else 0.5})
        rows.append({"state_id": s, "outcome_name": "fwd_abs_ret_10", "n": n[s],
                     "mean_obs": 0.05, "hit_rate_obs": None})
    return pl.DataFrame(rows).with_columns(pl.col("state_id").cast(pl.Int32))


MEANS_A = {0: (0.004, 0.010, 0.018), 1: (-0.003, -0.008, -0.015), 2: (0.0, 0.001, 0.002),
           3: (0.002, 0.004, 0.009)}  # fmt: skip
HITS_A = {0: 0.56, 1: 0.44, 2: 0.50, 3: 0.52}
N_A = {0: 3000, 1: 2000, 2: 4000, 3: 1000}
SUMMARY_A = _summary(MEANS_A, HITS_A, N_A)
SUMMARY_B = _summary(
    {PERM[s]: (m5 * 1.05, m10 * 0.97, m20 * 1.02) for s, (m5, m10, m20) in MEANS_A.items()},
    {PERM[s]: h + 0.005 for s, h in HITS_A.items()},
    {PERM[s]: int(v * 1.1) for s, v in N_A.items()},
)


def test_outcome_profile():
    prof = outcome_profile(SUMMARY_A)
    assert prof.columns == ["state_id", "fwd_ret_5_mean", "fwd_ret_10_mean", "fwd_ret_20_mean",
                            "hit_rate", "state_share"]  # fmt: skip
    assert prof["state_id"].to_list() == [0, 1, 2, 3]
    assert prof["fwd_ret_20_mean"].to_list() == [0.018, -0.015, 0.002, 0.009]
    assert prof["state_share"].to_list() == pytest.approx([0.3, 0.2, 0.4, 0.1])


def test_matching_recovers_a_permutation():
    pa, pb = outcome_profile(SUMMARY_A), outcome_profile(SUMMARY_B)
    m = match_states(pa, pb)
    assert dict(zip(m["state_id_a"].to_list(), m["state_id_b"].to_list(), strict=True)) == PERM
    # the cost is the distance of standardised profiles: recompute it independently
    cols = ["fwd_ret_5_mean", "fwd_ret_10_mean", "fwd_ret_20_mean", "hit_rate", "state_share"]
    both = np.vstack([pa.select(cols).to_numpy(), pb.select(cols).to_numpy()])
    z = (both - both.mean(axis=0)) / both.std(axis=0)
    za, zb = z[:4], z[4:]
    for a, b, cost in m.iter_rows():
        assert cost == pytest.approx(np.linalg.norm(za[a] - zb[b]))
    # the id-aligned pairing (the old one) costs far more than the matching
    aligned = id_alignment(pa, pb)
    assert aligned["state_id_a"].to_list() == aligned["state_id_b"].to_list() == [0, 1, 2, 3]
    assert aligned["match_cost"].sum() > 5 * m["match_cost"].sum()


def test_matching_with_different_state_counts():
    pa = outcome_profile(SUMMARY_A)
    pb = outcome_profile(SUMMARY_B.filter(pl.col("state_id") != PERM[3]))
    m = match_states(pa, pb)
    assert m.rows()[-1] == (3, None, None)  # A's state 3 has no partner in B
    pairs = m.drop_nulls()
    assert dict(zip(pairs["state_id_a"], pairs["state_id_b"], strict=True)) == {
        s: PERM[s] for s in (0, 1, 2)}  # fmt: skip


def _table(classes: dict[int, str], scores: dict[int, float]) -> pl.DataFrame:
    hint = {"ALLOW": "LONG_BIAS", "WATCH": "UNCONFIRMED", "BLOCK": "UNCONFIRMED"}
    return pl.DataFrame({
        "state_id": list(classes), "class_label": list(classes.values()),
        "tradability_score": [scores[s] for s in classes],
        "allow_direction_hint": [hint[c] for c in classes.values()],
        "reasons": [f"R_{c}" for c in classes.values()],
    }).with_columns(pl.col("state_id").cast(pl.Int32))  # fmt: skip


def test_hardening_compare_on_matched_states():
    """#28: with ids permuted, the old id join reported every state as changed."""
    classes_a = {0: "ALLOW", 1: "WATCH", 2: "BLOCK", 3: "WATCH"}
    scores_a = {0: 80.0, 1: 60.0, 2: 20.0, 3: 55.0}
    table_a = _table(classes_a, scores_a)
    # same regimes in B under permuted ids; regime 3 moves from WATCH to ALLOW
    classes_b = {PERM[s]: c for s, c in classes_a.items()} | {3: "ALLOW"}
    table_b = _table(classes_b, {PERM[s]: v + 1.0 for s, v in scores_a.items()} | {3: 75.0})
    out = hardening_compare(table_a, table_b, outcome_profile(SUMMARY_A),
                            outcome_profile(SUMMARY_B))  # fmt: skip
    matched = out.tables["matched"]
    assert matched["alignment"].unique().to_list() == [MATCHED]
    assert matched.rows()[0][:2] == (3, 3)  # the changed state sorts first
    rows = {r["state_id_a"]: r for r in matched.to_dicts()}
    assert {a: r["state_id_b"] for a, r in rows.items()} == PERM
    assert [rows[s]["class_changed"] for s in (0, 1, 2, 3)] == [False, False, False, True]
    assert (rows[3]["class_a"], rows[3]["class_b"]) == ("WATCH", "ALLOW")
    assert [rows[s]["delta_score_b_minus_a"] for s in (0, 1, 2, 3)] == [1.0, 1.0, 1.0, 20.0]
    assert rows[0]["reasons_b"] == "R_ALLOW" and rows[0]["direction_b"] == "LONG_BIAS"
    aligned = out.tables["id_aligned"]
    assert aligned["alignment"].unique().to_list() == [ID_ALIGNED]
    assert aligned["class_changed"].to_list() == [True, True, True, True]
    s = out.summary
    assert (s["class_changed_states"], s["class_changed_states_id_aligned"]) == (1, 4)
    assert (s["run_a_allow_count"], s["run_b_allow_count"]) == (1, 2)
    assert (s["run_a_watch_count"], s["run_b_watch_count"]) == (2, 1)
    assert s["matching_is_identity"] is False and s["matched_pairs"] == 4
    assert s["match_total_cost"] < s["id_aligned_total_cost"]


def test_class_changed_when_a_side_is_missing():
    scores = dict.fromkeys(range(4), 50.0)
    table_a = _table({0: "ALLOW", 1: "WATCH", 2: "BLOCK", 3: "WATCH"}, scores)
    table_b = _table({2: "ALLOW", 0: "WATCH", 1: "BLOCK"}, scores)
    pb = outcome_profile(SUMMARY_B.filter(pl.col("state_id") != 3))
    out = hardening_compare(table_a, table_b, outcome_profile(SUMMARY_A), pb)
    lone = out.tables["matched"].filter(pl.col("state_id_b").is_null()).to_dicts()
    assert len(lone) == 1 and lone[0]["state_id_a"] == 3
    assert lone[0]["class_changed"] is True and lone[0]["class_b"] is None


def test_validation_compare_metrics_and_states():
    sc_a = {"n_states": 4, "total_rows": 10_000, "forward_separation_score": 0.018,
            "pairwise_diff_significant_share": 0.5, "avg_ci_width_fwd_ret_10": 0.02,
            "avg_state_sign_consistency": 0.7, "avg_state_ret_cv": 2.0,
            "validation_grade": "B", "input_type": "cluster"}  # fmt: skip
    sc_b = {**sc_a, "total_rows": 11_000, "forward_separation_score": None,
            "pairwise_diff_significant_share": 0.25, "validation_grade": "C"}  # fmt: skip
    states_a = pl.DataFrame({"state_id": [0, 1, 2, 3], "n_rows": [3000, 2000, 4000, 1000],
                             "fwd_ret_10_mean": [0.010, -0.008, 0.001, 0.004],
                             "hit_rate": [0.56, 0.44, 0.5, 0.52], "ci_width": [0.01] * 4,
                             "confidence_score": [80.0, 70.0, 40.0, 60.0],
                             "edge_significant": [True, True, False, True]})  # fmt: skip
    states_b = states_a.with_columns(
        pl.col("state_id").replace_strict(PERM), pl.col("confidence_score") + 2.0)
    out = validation_compare(sc_a, sc_b, states_a, states_b, outcome_profile(SUMMARY_A),
                             outcome_profile(SUMMARY_B))  # fmt: skip
    metrics = {r["metric"]: r for r in out.tables["metrics"].to_dicts()}
    assert list(metrics) == ["n_states", "total_rows", "forward_separation_score",
                             "pairwise_diff_significant_share", "avg_ci_width_fwd_ret_10",
                             "avg_state_sign_consistency", "avg_state_ret_cv"]  # fmt: skip
    assert metrics["total_rows"]["delta_b_minus_a"] == 1000.0
    assert metrics["pairwise_diff_significant_share"]["delta_b_minus_a"] == -0.25
    assert metrics["forward_separation_score"]["delta_b_minus_a"] is None
    matched = {r["state_id_a"]: r for r in out.tables["matched"].to_dicts()}
    assert all(r["delta_fwd_ret_10_mean_b_minus_a"] == 0.0 for r in matched.values())
    assert all(r["delta_confidence_score_b_minus_a"] == 2.0 for r in matched.values())
    aligned = {r["state_id_a"]: r for r in out.tables["id_aligned"].to_dicts()}
    # id 0 of B is regime 1 of A: the raw join compares 0.010 with -0.008
    assert aligned[0]["delta_fwd_ret_10_mean_b_minus_a"] == pytest.approx(-0.018)
    s = out.summary
    assert (s["run_a_validation_grade"], s["run_b_validation_grade"]) == ("B", "C")
    assert s["matching"][0] == {"state_id_a": 0, "state_id_b": 2,
                                "match_cost": pytest.approx(matched[0]["match_cost"])}
