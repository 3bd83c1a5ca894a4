"""The validation and the policy in the viewer, over what ``mf demo``'s validation assets wrote
(conftest): the loader follows the assets' IO records, the chart's policy strips, the
Validation tab (IN-SAMPLE label, scorecard rows, CI and transition plots) and its absence."""

import json
import shutil
from pathlib import Path

import polars as pl
import pytest

from mf_pipeline.lib.steps.validation import policy as policy_step
from mf_pipeline.lib.steps.validation import run as run_step
from mf_pipeline_tests.viewer.test_app import legends, run_app, toggles
from viewer import data, registry
from viewer import validation_data as vd

SOURCES = ("flow", "hmm", "cluster")


def record(settings, asset: str) -> dict:
    return json.loads((settings.data_root / "_io" / asset / "full.json").read_text())


def policy_file(settings, source: str) -> dict:
    """The policy file the ``state_policy_<source>`` asset recorded (read without the viewer)."""
    folder = Path(record(settings, f"state_policy_{source}")["output_dir"])
    return json.loads((folder / policy_step.POLICY_FILE).read_text())


def state_table(settings, source: str) -> pl.DataFrame:
    folder = Path(record(settings, f"state_policy_{source}")["output_dir"])
    return pl.read_csv(folder / "cluster_hardening_state_table.csv").sort("state_id")


def chart_of(at, key: str) -> dict:
    """The plotly figure the page drew with ``key``."""
    [chart] = [c for c in at.get("plotly_chart") if c.proto.id.endswith(f"-{key}")]
    return json.loads(chart.proto.spec)


def scorecards(at) -> list:
    """The Validation tab's scorecard tables (the chart's data preview has no ``reasons``)."""
    return [d for d in at.dataframe if "reasons" in d.value.columns]


def open_validation(**state):
    return run_app(view="Validation", **state)


def without_records(settings, assets) -> None:
    for asset in assets:
        shutil.rmtree(settings.data_root / "_io" / asset)


def test_file_names_are_the_validation_steps(demo_settings):
    assert vd.RUN_SUMMARY == run_step.RUN_SUMMARY
    assert vd.POLICY_FILE == policy_step.POLICY_FILE
    run, _ = vd.load_run(demo_settings, "hmm")
    assert run.policy_dir == run.folder / policy_step.POLICY_DIR


@pytest.mark.parametrize("source", SOURCES)
def test_the_loader_returns_the_policy_files_classes(demo_settings, source):
    run, why = vd.load_run(demo_settings, source)
    assert why is None and run.notes == []
    assert run.folder == Path(record(demo_settings, f"state_validation_{source}")["output_dir"])
    assert run.in_sample and run.split == "full"
    expected = {s["state_id"]: (s["class_label"], s["allow_direction_hint"], s["reasons"])
                for s in policy_file(demo_settings, source)["per_state"]}
    got = {row["state_id"]: (row["class_label"], row["allow_direction_hint"],
                             row["reasons"].split(", "))
           for row in run.policy.iter_rows(named=True)}
    assert got == expected and len(got) >= 2
    # the scorecard: the policy step's own state table (mean, CI, Holm p, class, direction)
    table = state_table(demo_settings, source)
    card = vd.scorecard(run)
    assert card["state_id"].to_list() == table["state_id"].to_list()
    for column in ("n_rows", "fwd_ret_10_mean", "fwd_ret_10_ci_lo", "fwd_ret_10_ci_hi",
                   "edge_p_adjusted", "class_label", "allow_direction_hint",
                   "tradability_score"):
        assert card[column].to_list() == pytest.approx(table[column].to_list()), column
    assert card["reasons"].str.replace_all(", ", ",").to_list() == table["reasons"].to_list()
    if source == "flow":
        assert card["state"].to_list() == [registry.FLOW_LABELS[s] for s in card["state_id"]]


def test_a_newer_folder_on_disk_is_not_what_the_viewer_shows(demo_settings):
    """Records, not mtimes: a later run folder under the artifacts root that no asset
    recorded (here with every state ALLOWed) changes nothing."""
    run, _ = vd.load_run(demo_settings, "hmm")
    decoy = demo_settings.artifacts_root / "validation_runs" / f"{run.folder.name}_later"
    shutil.copytree(run.folder, decoy)
    policy = decoy / policy_step.POLICY_DIR / policy_step.POLICY_FILE
    payload = json.loads(policy.read_text())
    for state in payload["per_state"]:
        state["class_label"] = "ALLOW"
    policy.write_text(json.dumps(payload))
    again, _ = vd.load_run(demo_settings, "hmm")
    assert again.folder == run.folder != decoy
    assert again.policy["class_label"].to_list() == run.policy["class_label"].to_list()
    assert "ALLOW" not in again.policy["class_label"].to_list()


def test_a_policy_of_another_validation_run_is_not_painted(demo_settings, tmp_path):
    """The validation was re-run (new record) but its policy was not: the old policy's
    classes are not shown as this run's."""
    path = vd.record_path(demo_settings, "state_validation_hmm")
    old = record(demo_settings, "state_validation_hmm")
    shutil.copytree(old["output_dir"], tmp_path / "rerun")
    path.write_text(json.dumps({**old, "output_dir": str(tmp_path / "rerun")}))
    run, _ = vd.load_run(demo_settings, "hmm")
    assert run.folder == tmp_path / "rerun" and run.policy is None and run.policy_dir is None
    assert "classified another validation run" in run.notes[0]
    assert old["output_dir"] in run.notes[0]


def test_policy_classes_split_allow_by_direction():
    per_state = [
        {"state_id": 0, "class_label": "ALLOW", "allow_direction_hint": "LONG_BIAS"},
        {"state_id": 1, "class_label": "ALLOW", "allow_direction_hint": "SHORT_BIAS"},
        {"state_id": 2, "class_label": "ALLOW", "allow_direction_hint": "UNCONFIRMED"},
        {"state_id": 3, "class_label": "WATCH", "allow_direction_hint": "LONG_BIAS"},
        {"state_id": 5, "class_label": "BLOCK", "allow_direction_hint": "SHORT_BIAS",
         "reasons": ["BLOCK_LOW_SCORE", "QA_X"]},
    ]
    policy = vd.policy_table({"per_state": per_state})
    assert policy["class_code"].to_list() == [registry.CLASS_ALLOW_LONG,
                                              registry.CLASS_ALLOW_SHORT, registry.CLASS_ALLOW,
                                              registry.CLASS_WATCH, registry.CLASS_BLOCK]
    assert policy["reasons"].to_list() == ["", "", "", "", "BLOCK_LOW_SCORE, QA_X"]
    # every row's state -> its class; a state the policy lacks -> "no policy"; no state -> null
    states = pl.Series([5.0, 0.0, float("nan"), None, 4.0, 1.0, 3.0])
    codes = vd.policy_codes(states, policy).to_list()
    assert codes == [registry.CLASS_BLOCK, registry.CLASS_ALLOW_LONG, None, None,
                     registry.CLASS_NONE, registry.CLASS_ALLOW_SHORT, registry.CLASS_WATCH]


def test_the_validation_tab_shows_the_scorecard_in_sample(demo_settings):
    at = open_validation()
    assert at.selectbox(key="validation_source").value == "hmm"
    assert any(m.value.startswith(":red-badge[IN-SAMPLE]") for m in at.markdown)
    [table] = scorecards(at)
    shown = pl.from_pandas(table.value)
    policy = {s["state_id"]: s for s in policy_file(demo_settings, "hmm")["per_state"]}
    assert shown["state"].to_list() == [str(s) for s in sorted(policy)]
    assert shown["class"].to_list() == [policy[s]["class_label"] for s in sorted(policy)]
    assert shown["allow_direction_hint"].to_list() == [
        policy[s]["allow_direction_hint"] for s in sorted(policy)]
    assert shown["reasons"].to_list() == [", ".join(policy[s]["reasons"]) for s in sorted(policy)]
    table = state_table(demo_settings, "hmm")
    assert shown["mean"].to_list() == pytest.approx(table["fwd_ret_10_mean"].to_list())
    assert shown["edge_p_adjusted"].to_list() == pytest.approx(table["edge_p_adjusted"].to_list())
    # the CI plot: a point per state at its mean (%), error bars to the CI ends, by class
    ci = chart_of(at, "validation_ci")
    points = {}
    for trace in ci["data"]:
        for x, y, plus, minus in zip(trace["x"], trace["y"], trace["error_y"]["array"],
                                     trace["error_y"]["arrayminus"], strict=True):
            points[int(x)] = (trace["name"], y, y + plus, y - minus)
    for row in table.iter_rows(named=True):
        name, mean, hi, lo = points[row["state_id"]]
        assert name == row["class_label"]  # WATCH / BLOCK (no ALLOW state in the demo)
        assert (mean, hi, lo) == pytest.approx((100 * row["fwd_ret_10_mean"],
                                                100 * row["fwd_ret_10_ci_hi"],
                                                100 * row["fwd_ret_10_ci_lo"]))
    assert ci["layout"]["shapes"][0]["y0"] == 0  # the zero line
    # the transition paths: the five transitions with the most events, by rel_bar
    events = pl.read_parquet(Path(record(demo_settings, "state_validation_hmm")["output_dir"])
                             / vd.TRANSITIONS).sort(["count_events", "transition_code"],
                                                    descending=[True, False]).head(5)
    paths = chart_of(at, "validation_paths")["data"]
    assert [t["name"] for t in paths] == [f"{c} ({n:,} events)" for c, n in
                                          events.select("transition_code", "count_events").rows()]
    assert 0 in paths[0]["x"] and paths[0]["x"] == sorted(paths[0]["x"])


def test_the_tab_switches_source_and_not_in_sample_runs_lose_the_label(demo_settings, tmp_path):
    at = open_validation(validation_source="flow")
    [table] = scorecards(at)
    assert set(pl.from_pandas(table.value)["state"]) <= set(registry.FLOW_LABELS.values())
    # a run recorded as not in sample (a walk-forward test window) carries no IN-SAMPLE label
    run, _ = vd.load_run(demo_settings, "cluster")
    copy = tmp_path / "oos"
    shutil.copytree(run.folder, copy)
    summary = json.loads((copy / vd.RUN_SUMMARY).read_text())
    (copy / vd.RUN_SUMMARY).write_text(json.dumps({**summary, "in_sample": False}))
    vd.record_path(demo_settings, "state_validation_cluster").write_text(json.dumps(
        {**record(demo_settings, "state_validation_cluster"), "output_dir": str(copy)}))
    at = open_validation(validation_source="cluster")
    assert not any("IN-SAMPLE" in m.value for m in at.markdown)
    assert f"Validation folder: `{copy}`" in " ".join(c.value for c in at.caption)


def test_the_chart_paints_each_states_policy_class(demo_lake, demo_settings):
    ticker = demo_lake.banded
    at = run_app(ticker=ticker)
    named = legends(at)
    frame = data.load_ticker(demo_settings, ticker).frame
    window = frame.filter(pl.col("trade_date") >= at.sidebar.date_input(key=f"from_{ticker}")
                          .value)
    for source, title in (("flow", "Flow policy, in-sample"),
                          ("hmm", "HMM policy (filtered state), in-sample"),
                          ("cluster", "Cluster policy, in-sample")):
        classes = {s["state_id"]: (s["class_label"], s["allow_direction_hint"])
                   for s in policy_file(demo_settings, source)["per_state"]}
        column = vd.STATE_COLUMNS[source]
        seen = window[column].drop_nulls().cast(pl.Int64).unique().to_list()
        expected = set()
        for state in seen:
            label, hint = classes.get(state, ("no policy", None))
            if label == "ALLOW":
                label = {"LONG_BIAS": "ALLOW long", "SHORT_BIAS": "ALLOW short"}.get(
                    hint, "ALLOW (direction unconfirmed)")
            expected.add(label)
        assert set(named[title]) == expected and expected, (source, named[title])
    # each policy strip sits right under its state strip
    titles = list(named)
    assert titles.index("HMM policy (filtered state), in-sample") == titles.index("HMM state") + 1
    at = run_app(ticker=ticker, show_policy_strips=False, show_candidate_policy=False)
    assert not any("policy" in title for title in legends(at))


def test_without_a_validation_the_page_says_so(demo_lake, demo_settings):
    without_records(demo_settings, [f"state_{kind}_{source}" for kind in ("validation", "policy")
                                    for source in SOURCES])
    at = open_validation(ticker=demo_lake.banded)
    assert "No validation recorded yet for the `full` split" in at.info[0].value
    assert "state_validation_hmm" in at.info[0].value
    assert not scorecards(at)
    value, disabled = toggles(at)["Show policy class strips"]
    assert (value, disabled) == (False, True)
    assert not any("policy" in title for title in legends(at))
    chart = [c for c in at.get("plotly_chart") if c.proto.id.endswith("-chart")]
    assert len(at.get("plotly_chart")) == len(chart) == 1


def test_a_validation_without_policy_shows_the_scorecard_without_classes(demo_settings):
    states = state_table(demo_settings, "hmm").height
    without_records(demo_settings, ["state_policy_hmm"])
    at = open_validation()
    assert any("No policy for these states yet" in i.value and "state_policy_hmm" in i.value
               for i in at.info)
    [table] = scorecards(at)
    shown = pl.from_pandas(table.value)
    assert shown.height == states
    assert shown["class"].is_null().all()
    ci = chart_of(at, "validation_ci")
    assert [t["name"] for t in ci["data"]] == ["no policy"]
