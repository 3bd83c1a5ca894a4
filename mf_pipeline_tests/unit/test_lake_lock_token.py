"""The lake lock's token: steps of the holder's runs in other processes (Celery workers)
proceed under the holder's lock; anyone else still waits (lib/lake_lock.py)."""

import json
import threading

import pytest

from mf_pipeline.lib import lake_lock
from mf_pipeline.lib.settings import load_settings


@pytest.fixture
def settings(isolated, tmp_path):
    return isolated(tmp_path / "raw")


def test_the_holder_has_a_token_that_covers_its_runs(settings):
    root = settings.data_root
    assert lake_lock.token_of(root) is None
    with lake_lock.hold(settings):
        token = lake_lock.token_of(root)
        assert token and len(token) == 32
        assert json.loads(lake_lock.lock_path(root).read_text())["token"] == token
        assert lake_lock.covered(root, token)
        assert not lake_lock.covered(root, "0" * 32)
        assert not lake_lock.covered(root, "")
    assert lake_lock.token_of(root) is None
    assert not lake_lock.covered(root, token)  # released: the record has no token


def test_a_token_left_by_a_killed_holder_covers_nothing(settings):
    path = lake_lock.lock_path(settings.data_root)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"pid": 999_999, "token": "ab" * 16}))  # lock not held
    assert not lake_lock.covered(settings.data_root, "ab" * 16)


def enter_in_thread(enter) -> BaseException | None:
    errors: list[BaseException] = []

    def run() -> None:
        try:
            with enter():
                pass
        except BaseException as error:  # noqa: BLE001 - handed to the test
            errors.append(error)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(10)
    assert not thread.is_alive()
    return errors[0] if errors else None


def hold_in_thread(token: str | None) -> BaseException | None:
    """``hold`` entered from another thread (a stand-in for another process) with a short
    timeout, on behalf of ``token``; returns what it raised."""
    return enter_in_thread(lambda: lake_lock.hold(load_settings(), timeout=0.3,
                                                  on_behalf_of=token))


def test_a_step_of_the_holders_run_proceeds_and_others_wait(settings):
    with lake_lock.hold(settings):
        token = lake_lock.token_of(settings.data_root)
        assert hold_in_thread(token) is None
        assert isinstance(hold_in_thread(None), lake_lock.LakeLockTimeout)
        assert isinstance(hold_in_thread("f" * 32), lake_lock.LakeLockTimeout)


def test_runs_on_disjoint_shards_proceed_and_overlapping_or_whole_lake_ones_wait(settings):
    root = settings.data_root

    def shards(*keys: str):
        return lambda: lake_lock.shard_lock(root, keys, timeout=0.3)

    def whole():
        return lake_lock.lake_lock(root, timeout=0.3)

    with lake_lock.shard_lock(root, ["03", "01", "02"]):
        assert enter_in_thread(shards("04", "05")) is None
        assert isinstance(enter_in_thread(shards("00", "01")), lake_lock.LakeLockTimeout)
        assert isinstance(enter_in_thread(whole), lake_lock.LakeLockTimeout)
    assert enter_in_thread(whole) is None  # all released
    with lake_lock.hold(settings):
        assert isinstance(enter_in_thread(shards("09")), lake_lock.LakeLockTimeout)
        with lake_lock.shard_lock(root, ["09"]):  # this thread holds the whole lake already
            pass
