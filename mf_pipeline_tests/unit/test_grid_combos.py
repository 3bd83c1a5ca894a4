"""Grid combinations and combo ids (backtest_ops.md §5.1; fault 8: allow_overlap only false)."""

from __future__ import annotations

import hashlib
import random

import pytest

from mf_pipeline.lib.grids.combos import GridDimensions, combo_id, combos, state_subset_key


def _params(rows: list[dict]) -> list[tuple]:
    return [(c["hold_bars"], c["fee_bps_per_side"], c["state_subset_key"]) for c in rows]


def test_default_grid_is_twelve_combos_hold_outer_fee_inner() -> None:
    out = combos(GridDimensions(), "flow")
    assert [c["combo_index"] for c in out] == list(range(1, 13))
    # product order: hold_bars slowest, fee (the only other multi-valued axis) fastest
    assert _params(out) == [(h, f, None) for h in (5, 10, 15, 20) for f in (0.0, 5.0, 10.0)]
    first = out[0]
    assert first == {
        "hold_bars": 5, "signal_mode": "state_transition_entry", "exit_mode": "horizon_or_state",
        "fee_bps_per_side": 0.0, "slippage_bps_per_side": 0.0, "allow_overlap": False,
        "equity_mode": "event_returns_only", "include_watch": False, "include_state_ids": (),
        "state_subset_key": None, "source_type": "flow", "combo_index": 1,
        "combo_id": first["combo_id"],
    }


def test_last_dimension_varies_fastest_and_subsets_are_normalised() -> None:
    dims = GridDimensions(hold_bars=(5, 10), fee_bps_per_side=(0,),
                          include_state_sets=((), (4, 2, 2)))
    assert dims.include_state_sets == ((), (2, 4))
    assert _params(combos(dims, "hmm")) == [(5, 0.0, None), (5, 0.0, "2|4"),
                                            (10, 0.0, None), (10, 0.0, "2|4")]
    assert state_subset_key([3, 1, 3]) == "1|3"
    assert state_subset_key([]) is None


def test_shuffle_is_python_random_with_the_seed_then_truncation() -> None:
    dims = GridDimensions()
    expected = [(h, f, None) for h in (5, 10, 15, 20) for f in (0.0, 5.0, 10.0)]
    random.Random(7).shuffle(expected)
    flow = combos(dims, "flow", shuffle=True, seed=7, max_combos=5)
    assert _params(flow) == expected[:5]
    assert [c["combo_index"] for c in flow] == [1, 2, 3, 4, 5]
    hmm = combos(dims, "hmm", shuffle=True, seed=7, max_combos=5)
    assert _params(hmm) == _params(flow)  # every source runs the same combos in the same order
    assert all(a["combo_id"] != b["combo_id"] for a, b in zip(flow, hmm, strict=True))
    assert _params(combos(dims, "flow", max_combos=2)) == [(5, 0.0, None), (5, 5.0, None)]


def test_combo_id_is_sha1_of_compact_sorted_json() -> None:
    combo = {"source_type": "hmm", "hold_bars": 10, "signal_mode": "state_transition_entry",
             "exit_mode": "horizon_or_state", "fee_bps_per_side": 5, "slippage_bps_per_side": 0,
             "allow_overlap": False, "equity_mode": "event_returns_only", "include_watch": False,
             "state_subset_key": "1|2", "combo_index": 99, "overlay_mode": "allow_only"}
    # written out by hand: keys sorted, no spaces, costs as floats, ids only (no combo_index
    # nor overlay_mode)
    text = ('{"allow_overlap":false,"equity_mode":"event_returns_only",'
            '"exit_mode":"horizon_or_state","fee_bps_per_side":5.0,"hold_bars":10,'
            '"include_watch":false,"signal_mode":"state_transition_entry",'
            '"slippage_bps_per_side":0.0,"source_type":"hmm","state_subset_key":"1|2"}')
    assert combo_id(combo) == hashlib.sha1(text.encode()).hexdigest()[:16]
    null_key = text.replace('"1|2"', "null").replace('"hmm"', '"flow"')
    combo.update(state_subset_key=None, source_type="flow")
    assert combo_id(combo) == hashlib.sha1(null_key.encode()).hexdigest()[:16]


def test_combos_carry_their_own_id() -> None:
    for c in combos(GridDimensions(include_state_sets=((), (1, 2))), "cluster"):
        assert c["combo_id"] == combo_id(c)
        assert len(c["combo_id"]) == 16


def test_choices_are_normalised_and_validated() -> None:
    dims = GridDimensions(exit_mode=(" Horizon ", "STATE_EXIT"))
    assert dims.exit_mode == ("horizon", "state_exit")
    with pytest.raises(ValueError, match="signal_mode grid"):
        GridDimensions(signal_mode=("nope",))
    with pytest.raises(ValueError, match="hold_bars"):
        GridDimensions(hold_bars=(0, 5))


def test_allow_overlap_true_is_refused_with_the_reason() -> None:
    with pytest.raises(ValueError, match="never overlap"):
        GridDimensions(allow_overlap=(False, True))


def test_no_combination_is_an_error() -> None:
    with pytest.raises(ValueError, match="no combination"):
        combos(GridDimensions(hold_bars=()), "flow")
    with pytest.raises(ValueError, match="no combination"):
        combos(GridDimensions(), "flow", max_combos=0)


def test_product_size_is_the_product_of_axis_lengths() -> None:
    dims = GridDimensions(hold_bars=(5, 10, 20), include_watch=(False, True),
                          include_state_sets=((), (1,), (1, 2)))
    out = combos(dims, "cluster")
    assert len(out) == 3 * 3 * 2 * 3  # hold x fee (default 0, 5, 10) x watch x subsets
    assert len({c["combo_id"] for c in out}) == len(out)
    keys = ("hold_bars", "fee_bps_per_side", "include_watch", "include_state_ids")
    assert [tuple(c[k] for k in keys) for c in out[:4]] == [
        (5, 0.0, False, ()), (5, 0.0, False, (1,)), (5, 0.0, False, (1, 2)), (5, 0.0, True, ())]
