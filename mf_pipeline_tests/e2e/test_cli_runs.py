"""What a command prints around a Dagster run: one-line errors, progress on stderr, the result
(a human summary, or with --json the run's metadata and nothing else) on stdout."""

import json
import re

import dagster as dg
import polars as pl
import pytest
from typer.testing import CliRunner, Result

from mf_pipeline.cli import app
from mf_pipeline.orchestration import runner


def mf(*args: str, code: int = 0) -> Result:
    result = CliRunner().invoke(app, list(args), catch_exceptions=False)
    assert result.exit_code == code, result.output
    return result


@pytest.mark.parametrize(("args", "message"), [
    (("--dataset", "{tmp}/nope.parquet"), "dataset not found: {tmp}/nope.parquet"),
    (("--dataset", "{tmp}/text.parquet"), "--dataset {tmp}/text.parquet: not a readable "
                                          "parquet file ("),
    (("--cluster-labels-file", "{tmp}/text.parquet"), "--cluster-labels-file {tmp}/text.parquet: "
                                                      "not a readable parquet file ("),
    (("--train-end", "2024-13-01"), "bad split: "),
    (("--date-from", "yesterday"), "--date-from must be a YYYY-MM-DD date, got 'yesterday'"),
])
def test_bad_input_is_one_line_and_launches_no_run(isolated, messy_universe, tmp_path, args,
                                                  message):
    settings = isolated(messy_universe)
    (tmp_path / "text.parquet").write_text("not parquet")
    dataset = tmp_path / "dataset.parquet"
    pl.DataFrame({"ticker": ["A.US"]}).write_parquet(dataset)
    filled = [a.format(tmp=tmp_path) for a in args]
    given = filled if "--dataset" in filled else [*filled, "--dataset", str(dataset)]
    result = mf("research-hmm-run", *given, code=2)
    assert result.stdout == ""
    [line] = result.stderr.splitlines()
    assert line.startswith("error: " + message.format(tmp=tmp_path)), line
    assert runner.instance(settings).get_runs_count() == 0


def test_a_failed_run_is_one_line_naming_the_asset_run_and_traceback(isolated, messy_universe,
                                                                      tmp_path):
    settings = isolated(messy_universe)
    dataset = tmp_path / "dataset.parquet"
    pl.DataFrame({"ticker": ["A.US"], "x": [1.0]}).write_parquet(dataset)  # readable, no columns
    result = mf("research-hmm-run", "--dataset", str(dataset), code=1)
    [run] = runner.instance(settings).get_runs()
    assert run.status == dg.DagsterRunStatus.FAILURE  # the failure stays recorded
    log = settings.logs_root / "runs" / f"{run.run_id}.log"
    assert result.stderr.splitlines()[-1] == (
        "error: hmm_model failed: ValueError: Dataset must include close to compute forward "
        f"outcomes (Dagster run {run.run_id}; full traceback: the run's page in the UI, "
        f"or {log})")
    assert "Stack Trace" not in result.output and "Traceback" not in result.output
    assert "Dataset must include close" in log.read_text() and "Stack Trace" in log.read_text()
    verbose = mf("--verbose", "research-hmm-run", "--dataset", str(dataset), code=1)
    assert "Stack Trace" in verbose.stderr


def _materializations(instance: dg.DagsterInstance, run_id: str) -> dict[str, list[dict]]:
    found: dict[str, list[dict]] = {}
    for record in instance.get_records_for_run(
            run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION).records:
        mat = record.event_log_entry.dagster_event.event_specific_data.materialization
        found.setdefault(mat.asset_key.to_user_string(), []).append(
            {key: value.value for key, value in mat.metadata.items()})
    return found


def test_json_is_the_runs_metadata_alone_and_progress_goes_to_stderr(isolated, messy_universe):
    settings = isolated(messy_universe)
    result = mf("run", "--until", "silver", "--json")
    payload = json.loads(result.stdout)  # stdout holds the JSON and nothing else
    instance = runner.instance(settings)
    [run] = instance.get_runs()
    recorded = _materializations(instance, run.run_id)
    assert set(payload) == set(recorded) == {"manifest", "bronze", "silver"}
    [manifest] = recorded["manifest"]
    assert payload["manifest"] == json.loads(json.dumps(manifest, default=str))
    for layer in ("bronze", "silver"):  # one materialization per shard, one entry per asset
        assert set(payload[layer]) <= {key for shard in recorded[layer] for key in shard}
    lines = result.stderr.splitlines()
    for step in ("manifest", "bronze", "silver"):
        assert any(re.fullmatch(rf"\[\d\d:\d\d:\d\d\] {step}: done in \d+\.\ds", line)
                   for line in lines), (step, lines)
    assert not any("━" in line for line in lines)  # no bars off a terminal


def test_without_json_the_result_is_a_short_summary(isolated, messy_universe):
    settings = isolated(messy_universe)
    result = mf("run", "--until", "silver")
    [run] = runner.instance(settings).get_runs()
    lines = result.stdout.splitlines()
    assert lines[-2].endswith(f"Dagster run {run.run_id}")
    assert lines[-1] == f"details: --json, or `make ui` then http://127.0.0.1:3000/runs/" \
                        f"{run.run_id}"
    assert [line.split()[0] for line in lines[:-2]] == ["manifest", "bronze", "silver"]
    assert re.fullmatch(r"  silver +\d+ tickers written, [\d,]+ rows.*", lines[2])
