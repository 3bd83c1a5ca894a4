"""State mapping (spec §1.2, §3): every direction source, policy filter mode and error."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

from mf_pipeline.lib.backtest.mapping import (
    FlowMapping,
    directions_from_scorecard,
    directions_from_state_map,
    map_states,
)


def bars(states: list[int], source: str = "FLOW") -> pl.DataFrame:
    """One ticker, one bar per state, as the adapter leaves it."""
    n = len(states)
    return pl.DataFrame(
        {
            "ticker": ["A"] * n,
            "trade_date": [dt.date(2024, 1, 1) + dt.timedelta(days=i) for i in range(n)],
            "close": [1.0] * n,
            "state_source": [source] * n,
            "state_id": pl.Series(states, dtype=pl.Int32),
            "state_direction_hint": ["UNCONFIRMED"] * n,
            "state_class": ["NA"] * n,
            "state_score": pl.Series([None] * n, dtype=pl.Float64),
            "signal_eligible": [False] * n,
        }
    )


def col(frame: pl.DataFrame, name: str) -> list:
    return frame[name].to_list()


# ---------------------------------------------------------------- flow


def test_flow_default_lists_and_unmapped_code() -> None:
    out, summary, snapshot = map_states(bars([0, 1, 2, 3, 4, 7]), "flow")
    assert col(out, "state_direction_hint") == [
        "UNCONFIRMED", "LONG_BIAS", "LONG_BIAS", "SHORT_BIAS", "SHORT_BIAS", "UNCONFIRMED",
    ]  # fmt: skip
    assert col(out, "policy_reason_flags") == ["FLOW_DEFAULT_MAPPING"] * 5 + ["FLOW_UNMAPPED"]
    assert col(out, "state_class") == ["NA"] * 6
    assert out["state_score"].null_count() == 6
    assert col(out, "signal_eligible") == [False, True, True, True, True, False]
    assert col(out, "state_id") == [0, 1, 2, 3, 4, 7]  # row order kept
    assert summary == {
        "mapping_source": "flow_default",
        "eligible_rows": 4,
        "direction_counts": [
            {"state_direction_hint": "LONG_BIAS", "rows": 2},
            {"state_direction_hint": "SHORT_BIAS", "rows": 2},
            {"state_direction_hint": "UNCONFIRMED", "rows": 2},
        ],
    }
    assert snapshot is None


def test_flow_custom_lists_include_state_ids_and_allow_unconfirmed() -> None:
    mapping = FlowMapping(long_states=(3, 4), short_states=(1, 4), ignore_states=(0, 1))
    out, _, _ = map_states(bars([0, 1, 3, 4, 7]), "flow", flow_mapping=mapping)
    # long wins over short, short over ignore
    assert col(out, "state_direction_hint") == [
        "UNCONFIRMED", "SHORT_BIAS", "LONG_BIAS", "LONG_BIAS", "UNCONFIRMED",
    ]  # fmt: skip
    only, summary, _ = map_states(bars([0, 1, 2, 3]), "flow", include_state_ids=[2, 0])
    assert col(only, "signal_eligible") == [False, False, True, False]
    assert summary["eligible_rows"] == 1
    unconf, _, _ = map_states(bars([0, 1, 7]), "flow", allow_unconfirmed=True)
    assert col(unconf, "signal_eligible") == [True, True, True]
    both, _, _ = map_states(bars([0, 1, 7]), "flow", allow_unconfirmed=True,
                            include_state_ids=[7])  # fmt: skip
    assert col(both, "signal_eligible") == [False, False, True]


# ---------------------------------------------------------------- HMM direction sources


def test_state_map_both_shapes_and_value_normalisation() -> None:
    flat = {"0": " long_bias ", "1": "SHORT_BIAS", "2": "sideways", "3": None}
    expected = {0: "LONG_BIAS", 1: "SHORT_BIAS", 2: "UNCONFIRMED", 3: "UNCONFIRMED"}
    assert directions_from_state_map(flat) == expected
    assert directions_from_state_map({"mapping": flat, "note": "x"}) == expected


def test_state_map_bad_key() -> None:
    with pytest.raises(ValueError, match="'up'"):
        directions_from_state_map({"mapping": {"1": "LONG_BIAS", "up": "LONG_BIAS"}})
    with pytest.raises(ValueError, match="JSON object"):
        directions_from_state_map(["LONG_BIAS"])  # type: ignore[arg-type]


def scorecard() -> pl.DataFrame:
    nan, inf = float("nan"), float("inf")
    rows = [  # state, mean, ci_lo, ci_hi
        (0, -0.001, 0.01, 0.03),  # CI above 0 wins over the mean's sign
        (1, 0.002, -0.02, -0.01),  # CI below 0
        (2, 0.004, -0.01, 0.02),  # CI straddles 0 -> sign of the mean
        (3, 0.0, -0.01, 0.01),  # zero mean -> SHORT_BIAS (fault 18)
        (4, -0.003, 0.0, 0.02),  # CI touching 0 -> sign of the mean
        (5, None, None, None),  # nothing finite
        (6, nan, 0.01, inf),  # non-finite CI bound and mean
        (7, 0.006, None, 0.02),  # missing bound -> mean
    ]
    return pl.DataFrame(
        rows,
        schema=["state_id", "fwd_ret_10_mean", "fwd_ret_10_ci_lo", "fwd_ret_10_ci_hi"],
        orient="row",
    )


def test_scorecard_rules_with_the_default_threshold() -> None:
    assert directions_from_scorecard(scorecard()) == {
        0: "LONG_BIAS", 1: "SHORT_BIAS", 2: "LONG_BIAS", 3: "SHORT_BIAS", 4: "SHORT_BIAS",
        5: "UNCONFIRMED", 6: "UNCONFIRMED", 7: "LONG_BIAS",
    }  # fmt: skip


def test_scorecard_threshold_leaves_weak_means_unconfirmed() -> None:
    assert directions_from_scorecard(scorecard(), min_abs_forward_mean=0.005) == {
        0: "LONG_BIAS", 1: "SHORT_BIAS", 2: "UNCONFIRMED", 3: "UNCONFIRMED", 4: "UNCONFIRMED",
        5: "UNCONFIRMED", 6: "UNCONFIRMED", 7: "LONG_BIAS",
    }  # fmt: skip


def test_scorecard_missing_columns() -> None:
    with pytest.raises(ValueError, match="fwd_ret_10_ci_hi"):
        directions_from_scorecard(scorecard().drop("fwd_ret_10_ci_hi"))


# ---------------------------------------------------------------- HMM mapping


def test_hmm_mapping_reasons_unmapped_states_and_snapshot() -> None:
    out, summary, snapshot = map_states(
        bars([2, 0, 1, 9], "HMM"), "hmm",
        hmm_directions={1: "SHORT_BIAS", 0: "LONG_BIAS", 2: "UNCONFIRMED"},
        hmm_mapping_source="validation_scorecard",
    )  # fmt: skip
    assert col(out, "state_direction_hint") == [
        "UNCONFIRMED", "LONG_BIAS", "SHORT_BIAS", "UNCONFIRMED",
    ]  # fmt: skip
    assert col(out, "policy_reason_flags") == [
        "HMM_MAPPING_validation_scorecard", "HMM_MAPPING_validation_scorecard",
        "HMM_MAPPING_validation_scorecard", "HMM_UNMAPPED",
    ]  # fmt: skip
    assert col(out, "state_class") == ["NA"] * 4
    assert col(out, "signal_eligible") == [False, True, True, False]
    assert summary["mapping_source"] == "validation_scorecard"
    assert summary["eligible_rows"] == 2
    assert snapshot == {
        "mapping_source": "validation_scorecard",
        "direction_map": {0: "LONG_BIAS", 1: "SHORT_BIAS", 2: "UNCONFIRMED"},
    }


def test_hmm_without_directions() -> None:
    with pytest.raises(ValueError, match="--validation-run-dir"):
        map_states(bars([0, 1], "HMM"), "hmm")
    with pytest.raises(ValueError, match="--state-map-file"):
        map_states(bars([0, 1], "HMM"), "hmm", hmm_directions={}, hmm_mapping_source="state_map")
    out, summary, snapshot = map_states(bars([0, 1], "HMM"), "hmm", allow_unconfirmed=True)
    assert col(out, "state_direction_hint") == ["UNCONFIRMED"] * 2
    assert col(out, "policy_reason_flags") == ["HMM_UNMAPPED"] * 2
    assert col(out, "signal_eligible") == [True, True]  # eligible, yet no side: zero trades
    assert summary["mapping_source"] == "none"
    assert snapshot == {"mapping_source": "none", "direction_map": {}}


def test_hmm_bad_mapping_source() -> None:
    with pytest.raises(ValueError, match="hmm_mapping_source"):
        map_states(bars([0]), "hmm", hmm_directions={0: "LONG_BIAS"}, hmm_mapping_source="fwd")
    with pytest.raises(ValueError, match="'none'"):
        map_states(bars([0]), "hmm", hmm_directions={0: "LONG_BIAS"})


# ---------------------------------------------------------------- cluster policy

POLICY = {
    "policy_version": "v1",
    "per_state": [
        {"state_id": 0, "class_label": "allow", "allow_direction_hint": "LONG_BIAS",
         "tradability_score": 81.5, "reasons": []},
        {"state_id": 1, "class_label": "WATCH", "allow_direction_hint": " short_bias",
         "tradability_score": 50.0, "reasons": ["WATCH_EDGE_NOT_SIGNIFICANT", "LOW_N"]},
        {"state_id": 2, "class_label": "BLOCK", "allow_direction_hint": "LONG_BIAS",
         "tradability_score": "nan", "reasons": ["HARD_LOW_N"]},
        {"state_id": 4, "allow_direction_hint": "sideways", "tradability_score": None},
        {"state_id": "x", "class_label": "ALLOW"},
        "not an entry",
    ],
}  # fmt: skip
CLUSTER_STATES = [0, 1, 2, 3, 4]


def cluster(**kwargs) -> tuple[pl.DataFrame, dict, dict | None]:
    return map_states(bars(CLUSTER_STATES, "CLUSTER"), "cluster", cluster_policy=POLICY, **kwargs)


def test_cluster_policy_columns_and_unmapped_cluster() -> None:
    out, summary, snapshot = cluster()
    assert col(out, "state_class") == ["ALLOW", "WATCH", "BLOCK", "BLOCK", "BLOCK"]
    assert col(out, "state_direction_hint") == [
        "LONG_BIAS", "SHORT_BIAS", "LONG_BIAS", "UNCONFIRMED", "UNCONFIRMED",
    ]  # fmt: skip
    assert col(out, "state_score") == [81.5, 50.0, None, None, None]
    assert col(out, "policy_reason_flags") == [
        "", "WATCH_EDGE_NOT_SIGNIFICANT,LOW_N", "HARD_LOW_N", "CLUSTER_UNMAPPED", "",
    ]  # fmt: skip
    assert col(out, "signal_eligible") == [True, False, False, False, False]
    assert summary == {
        "mapping_source": "cluster_hardening_policy",
        "eligible_rows": 1,
        "direction_counts": [
            {"state_direction_hint": "LONG_BIAS", "rows": 2},
            {"state_direction_hint": "SHORT_BIAS", "rows": 1},
            {"state_direction_hint": "UNCONFIRMED", "rows": 2},
        ],
        "policy_filter_mode": "allow_only",
        "class_counts": [
            {"state_class": "ALLOW", "rows": 1},
            {"state_class": "BLOCK", "rows": 3},
            {"state_class": "WATCH", "rows": 1},
        ],
        "allowed_classes": ["ALLOW"],
    }
    assert snapshot == POLICY


@pytest.mark.parametrize(
    ("kwargs", "eligible", "allowed"),
    [
        ({"include_watch": True}, [0, 1], ["ALLOW", "WATCH"]),
        ({"policy_filter_mode": "allow_watch"}, [0, 1], ["ALLOW", "WATCH"]),
        ({"policy_filter_mode": " ALL_STATES "}, [0, 1, 2], ["ALLOW", "BLOCK", "WATCH"]),
        ({"policy_filter_mode": "all_states", "allow_unconfirmed": True}, [0, 1, 2, 3, 4],
         ["ALLOW", "BLOCK", "WATCH"]),
        ({"allow_unconfirmed": True}, [0], ["ALLOW"]),
        ({"default_classes": ("watch",)}, [1], ["WATCH"]),
        ({"default_classes": ()}, [0], ["ALLOW"]),
        ({"policy_filter_mode": "all_states", "include_state_ids": [2, 3]}, [2],
         ["ALLOW", "BLOCK", "WATCH"]),
    ],
)  # fmt: skip
def test_cluster_filter_modes(kwargs: dict, eligible: list[int], allowed: list[str]) -> None:
    out, summary, _ = cluster(**kwargs)
    assert out.filter("signal_eligible")["state_id"].to_list() == eligible
    assert summary["allowed_classes"] == allowed
    assert summary["eligible_rows"] == len(eligible)


def test_cluster_errors_and_duplicate_policy_entry() -> None:
    with pytest.raises(ValueError, match="run cluster-hardening-run first"):
        map_states(bars([0]), "cluster")
    with pytest.raises(ValueError, match="policy_filter_mode"):
        cluster(policy_filter_mode="watch_only")
    with pytest.raises(ValueError, match="per_state"):
        map_states(bars([0]), "cluster", cluster_policy={"per_state": {"0": {}}})
    twice = {"per_state": [{"state_id": 0, "class_label": "BLOCK"},
                           {"state_id": 0, "class_label": "ALLOW",
                            "allow_direction_hint": "SHORT_BIAS"}]}  # fmt: skip
    out, _, _ = map_states(bars([0, 0]), "cluster", cluster_policy=twice)
    assert out.height == 2  # the join does not duplicate rows; the last entry wins
    assert col(out, "state_class") == ["ALLOW", "ALLOW"]
    with pytest.raises(ValueError, match="input_type"):
        map_states(bars([0]), "generic")
