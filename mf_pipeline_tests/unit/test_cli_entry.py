"""The ``mf`` console script's wrapper around the Typer app."""

import gc

import pytest

import mf_pipeline.cli as cli


@pytest.fixture
def captured_exit(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    codes: list[int] = []
    monkeypatch.setattr(cli.os, "_exit", codes.append)
    saved = gc.get_threshold()
    yield codes
    gc.set_threshold(*saved)


def test_run_raises_gc_thresholds_and_exits_with_the_app_code(
    monkeypatch: pytest.MonkeyPatch, captured_exit: list[int]
) -> None:
    seen: list[tuple[int, int, int]] = []

    def app() -> None:
        seen.append(gc.get_threshold())
        raise SystemExit(3)

    monkeypatch.setattr(cli, "app", app)
    cli.run()
    assert seen == [cli.GC_THRESHOLDS]
    assert cli.GC_THRESHOLDS[0] > 700  # CPython's default young-generation threshold
    assert captured_exit == [3]


def test_run_turns_a_message_exit_into_code_1(
    monkeypatch: pytest.MonkeyPatch, captured_exit: list[int], capsys: pytest.CaptureFixture
) -> None:
    def app() -> None:
        raise SystemExit("bad input")

    monkeypatch.setattr(cli, "app", app)
    cli.run()
    assert captured_exit == [1]
    assert "bad input" in capsys.readouterr().err
