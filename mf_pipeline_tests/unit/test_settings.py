import os
from pathlib import Path

import pytest

from mf_pipeline.lib.settings import SettingsError, _memoized, load_settings


def test_defaults_and_derived_roots(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    settings = load_settings()
    assert settings.bronze_root == (tmp_path / "data" / "bronze").resolve()
    assert settings.gold_root == (tmp_path / "data" / "gold").resolve()
    assert settings.uses_sample and settings.raw_root == settings.data_root / "sample_raw"
    assert settings.indicators.tmf_period == 21
    assert settings.event_grammar.activity_windows == [5, 20]


def test_project_yaml_and_env_overrides(tmp_path, monkeypatch):
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "settings.yaml").write_text(
        "paths:\n  data_root: ./lake\nindicators:\n  tmf_period: 10\n"
    )
    sub = tmp_path / "deep" / "folder"
    sub.mkdir(parents=True)
    monkeypatch.chdir(sub)
    monkeypatch.setenv("MF_PIPELINE_PATHS__ARTIFACTS_ROOT", "/tmp/mf-art")
    monkeypatch.setenv("MF_PIPELINE_EVENT_GRAMMAR__ACTIVITY_WINDOWS", "[5,20,60]")
    settings = load_settings()
    assert settings.data_root == (tmp_path / "lake").resolve()  # relative to the project root
    assert settings.silver_root == (tmp_path / "lake" / "silver").resolve()
    assert settings.indicators.tmf_period == 10  # from YAML
    assert settings.artifacts_root == Path("/tmp/mf-art")  # env beats YAML
    assert settings.event_grammar.activity_windows == [5, 20, 60]


def test_settings_file_env(tmp_path, monkeypatch):
    custom = tmp_path / "elsewhere.yaml"
    custom.write_text("parquet:\n  compression: snappy\n")
    monkeypatch.setenv("MF_PIPELINE_SETTINGS_FILE", str(custom))
    assert load_settings().parquet.compression == "snappy"


def test_bad_value_names_key_and_value(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MF_PIPELINE_INDICATORS__TMF_PERIOD", "0")
    with pytest.raises(SettingsError, match=r"indicators\.tmf_period.*'0'"):
        load_settings()


def test_unknown_key_in_a_group_is_an_error(tmp_path, monkeypatch):
    custom = tmp_path / "bad.yaml"
    custom.write_text("validation:\n  gap_days_warn_treshold: 3\n")
    with pytest.raises(SettingsError, match="gap_days_warn_treshold"):
        load_settings(custom)


def test_missing_settings_file(tmp_path):
    with pytest.raises(SettingsError, match="not found"):
        load_settings(tmp_path / "nope.yaml")


def test_repo_settings_file_loads():
    repo = Path(__file__).resolve().parents[2]
    settings = load_settings(repo / "configs" / "settings.yaml")
    assert settings.research_clustering.forward_windows == [5, 10, 20]
    assert settings.research_hmm.hmm.tol == 1e-3  # kept, though not read yet
    assert len(settings.validation_walkforward.train_end_list_default) == 5


def test_cache_sees_env_file_and_dotenv_changes(tmp_path, monkeypatch):
    """Memoized loads still follow every input: env vars, the YAML's bytes, ``.env``."""
    (tmp_path / "configs").mkdir()
    yaml_file = tmp_path / "configs" / "settings.yaml"
    yaml_file.write_text("indicators:\n  tmf_period: 10\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MF_PIPELINE_SETTINGS_FILE", raising=False)
    monkeypatch.delenv("MF_PIPELINE_INDICATORS__TMF_PERIOD", raising=False)
    first = load_settings()
    hits = _memoized.cache_info().hits
    again = load_settings()
    assert _memoized.cache_info().hits == hits + 1  # not validated again
    assert again == first and again is not first
    again.event_grammar.activity_windows.append(60)  # a caller's edit stays its own
    assert load_settings().event_grammar.activity_windows == [5, 20]

    stat = yaml_file.stat()
    yaml_file.write_text("indicators:\n  tmf_period: 12\n")  # same size and mtime
    os.utime(yaml_file, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert load_settings().indicators.tmf_period == 12
    monkeypatch.setenv("MF_PIPELINE_INDICATORS__TMF_PERIOD", "14")
    assert load_settings().indicators.tmf_period == 14
    monkeypatch.delenv("MF_PIPELINE_INDICATORS__TMF_PERIOD")
    (tmp_path / ".env").write_text("MF_PIPELINE_INDICATORS__TMF_PERIOD=16\n")
    assert load_settings().indicators.tmf_period == 16
    (tmp_path / ".env").unlink()
    assert load_settings().indicators.tmf_period == 12


def test_bad_research_choice_names_the_nested_key(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MF_PIPELINE_RESEARCH_HMM__HMM__COVARIANCE_TYPE", "bogus")
    with pytest.raises(SettingsError, match=r"research_hmm\.hmm\.covariance_type.*'bogus'"):
        load_settings()
