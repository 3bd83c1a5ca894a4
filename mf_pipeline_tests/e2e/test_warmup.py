"""The setup warm-up runs the real command twice in a throw-away folder, never the user's."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from mf_pipeline import warmup

RECORDER = """
import json, os, sys
from pathlib import Path
raw = Path(os.environ["MF_PIPELINE_PATHS__RAW_ROOT"])
sizes = sorted(p.stat().st_size for p in raw.rglob("*.txt") if "_truth" not in p.parts)
with open(sys.argv[1], "a") as out:
    out.write(json.dumps({"argv": sys.argv[2:], "sizes": sizes,
                          "env": {k: v for k, v in os.environ.items()
                                  if k.startswith(("MF_PIPELINE_", "DAGSTER_HOME"))}}) + "\\n")
sys.exit(int(os.environ.get("FAKE_MF_EXIT", "0")))
"""


@pytest.fixture
def fake_mf(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    script = tmp_path / "fake_mf.py"
    script.write_text(RECORDER)
    calls = tmp_path / "calls.jsonl"
    monkeypatch.setattr(warmup, "_mf_command", lambda: [sys.executable, str(script), str(calls)])
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "users_home"))
    monkeypatch.setenv("MF_PIPELINE_PATHS__DATA_ROOT", str(tmp_path / "users_lake"))
    return calls


def test_runs_cold_then_after_an_appended_bar_in_a_temp_folder(fake_mf: Path,
                                                               tmp_path: Path) -> None:
    warmup.warm_up(log=lambda _: None)
    cold, appended = (json.loads(line) for line in fake_mf.read_text().splitlines())
    assert cold["argv"] == appended["argv"] == ["run", "--until", "ml_dataset"]
    assert len(cold["sizes"]) == warmup.WARM_TICKERS
    assert all(new > old for old, new in zip(cold["sizes"], appended["sizes"], strict=True))
    for key in ("DAGSTER_HOME", "MF_PIPELINE_PATHS__DATA_ROOT", "MF_PIPELINE_PATHS__RAW_ROOT",
                "MF_PIPELINE_PATHS__ARTIFACTS_ROOT"):
        assert str(tmp_path) not in cold["env"][key]  # never the user's folders
        assert "mf-warm-up-" in cold["env"][key]


def test_a_failing_run_stops_setup(fake_mf: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_MF_EXIT", "3")
    with pytest.raises(RuntimeError, match="warm-up cold run failed"):
        warmup.warm_up(log=lambda _: None)
