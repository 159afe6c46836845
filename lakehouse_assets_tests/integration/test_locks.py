"""The file locks that keep runs and registrations apart, and the re-check before registering."""

import subprocess
import sys
import time

import pytest
from mlflow.entities import RunTag

from lakehouse_assets.defs.model.churn_model import TRAINING_KEY_TAG
from lakehouse_assets.defs.model.registered_churn_model import _version_for_run
from lakehouse_assets.lib import locks
from lakehouse_assets.lib.model.mlflow_resource import MlflowTracking
from lakehouse_assets_tests.support.helpers import MODEL, client_for, failure_messages, run_graph

HOLD = """
import sys, time
from lakehouse_assets.lib import locks
handle = locks.acquire(__import__("pathlib").Path(sys.argv[1]), "the other process", print)
print("held", flush=True)
time.sleep(float(sys.argv[2]))
locks.release(handle)
"""


def test_a_second_process_waits_for_the_lock_and_is_told_who_holds_it(tmp_path):
    path = tmp_path / "run.lock"
    other = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(path), "2"], stdout=subprocess.PIPE, text=True
    )
    assert other.stdout.readline().strip() == "held"
    said: list[str] = []
    started = time.monotonic()
    handle = locks.acquire(path, "this test", said.append)
    waited = time.monotonic() - started
    locks.release(handle)
    other.wait(10)
    assert waited > 0.5, waited
    assert said and "held by the other process" in said[0], said


def test_taking_a_lock_this_process_holds_fails_at_once(tmp_path):
    path = tmp_path / "run.lock"
    with locks.held(path, "the first holder", print):
        with pytest.raises(RuntimeError, match="already held by this process"):
            locks.acquire(path, "a second holder", print)
    locks.release(locks.acquire(path, "after release", print))


def test_a_registration_finds_the_version_an_identical_training_registered_meanwhile(
    lakehouse_home, instance
):
    first = run_graph(instance)
    assert first.success, failure_messages(first)
    resource = MlflowTracking()
    client = client_for(resource.uri())
    (version,) = client.search_model_versions(f"name = '{MODEL}'")
    trained = client.get_run(version.run_id)
    # Another run that trained the same model (same training key) and now registers it.
    twin_run = client.create_run(trained.info.experiment_id)
    client.log_batch(
        twin_run.info.run_id,
        tags=[RunTag(TRAINING_KEY_TAG, trained.data.tags[TRAINING_KEY_TAG])],
    )
    evaluation = {"model_sha256": trained.data.tags["model_sha256"]}

    registered, twin = _version_for_run(resource, client, twin_run.info.run_id, evaluation)

    assert registered == "1" and twin is not None and twin.run_id == version.run_id
    assert len(client.search_model_versions(f"name = '{MODEL}'")) == 1
