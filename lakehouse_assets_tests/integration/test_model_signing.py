"""Signed model provenance: with $LAKEHOUSE_MODEL_SIGNING_KEY set, a pickle that someone else
uploaded and tagged (with a correct `model_sha256`) is refused before it is unpickled, by
`load_champion()`, by evaluation (as a challenger's champion) and by `churn_scores`."""

import hashlib
import pickle
from pathlib import Path

import dagster as dg
import pytest
from mlflow import MlflowClient
from mlflow.entities import Param

from lakehouse_assets import load_champion
from lakehouse_assets.lib.model.signing import SIGNATURE_TAG, sign
from lakehouse_assets_tests.support.helpers import failure_messages, run_graph, step_starts

KEY = "test-signing-key-0123456789"
MODEL = "customer_churn"
EXPERIMENT = "lakehouse_ml_pipeline"
# A challenger that differs from version 1 (so it is trained, not reused) on the same split.
CHALLENGER = {"ops": {"churn_model": {"config": {"regularization_c": 0.5}}}}


class Planted:
    """A pickle that, when unpickled, creates the file `marker` (it could do anything)."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def sqlite_uri(home: Path) -> str:
    return f"sqlite:///{home / 'mlflow.db'}"


def plant_champion(uri: str, work_dir: Path, marker: Path, signature: str | None) -> str:
    """As another MLflow user would: a run with the champion's parameters, a `model/model.pkl`
    that runs code when unpickled, a correct `model_sha256` tag (and `signature`, if any) on the
    run and on a new version, and the `champion` alias moved to it. Returns the version."""
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    champion = client.get_model_version_by_alias(MODEL, "champion")
    params = client.get_run(champion.run_id).data.params
    experiment = client.get_experiment_by_name(EXPERIMENT)
    run_id = client.create_run(experiment.experiment_id, run_name="not-the-pipeline").info.run_id
    client.log_batch(run_id, params=[Param(k, v) for k, v in params.items()])
    payload = pickle.dumps(Planted(marker))
    sha256 = hashlib.sha256(payload).hexdigest()
    pkl = work_dir / "model.pkl"
    pkl.write_bytes(payload)
    client.log_artifact(run_id, str(pkl), artifact_path="model")
    tags = {"model_sha256": sha256, **({SIGNATURE_TAG: signature} if signature else {})}
    for key, value in tags.items():
        client.set_tag(run_id, key, value)
    run = client.get_run(run_id)
    version = client.create_model_version(
        MODEL, source=f"{run.info.artifact_uri}/model", run_id=run_id, tags=tags
    )
    client.set_registered_model_alias(MODEL, "champion", version.version)
    client.set_terminated(run_id)
    return str(version.version)


def metadata(result: dg.ExecuteInProcessResult, asset: str) -> dict:
    return {
        k: v.value for k, v in result.asset_materializations_for_node(asset)[0].metadata.items()
    }


@pytest.mark.parametrize(
    "forgery",
    ["no signature", "signed with another key", "signature of version 1 replayed"],
)
def test_a_champion_the_pipeline_did_not_sign_is_refused_and_never_unpickled(
    forgery, lakehouse_home, instance, monkeypatch, tmp_path
):
    monkeypatch.setenv("LAKEHOUSE_MODEL_SIGNING_KEY", KEY)
    first = run_graph(instance)
    assert first.success, failure_messages(first)
    trained = metadata(first, "churn_model")
    assert trained["provenance"].startswith("signed")
    assert metadata(first, "churn_scores")["provenance"].startswith("signed")
    uri = sqlite_uri(lakehouse_home)
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    version_1 = client.get_model_version(MODEL, "1")
    assert version_1.tags[SIGNATURE_TAG] == sign(KEY, trained["model_sha256"], version_1.run_id)
    logged = [str(r.event_log_entry) for r in instance.get_records_for_run(first.run_id).records]
    assert not [line for line in logged if KEY in line]  # the key is never logged

    marker = tmp_path / "unpickled.marker"
    signature = {
        "no signature": None,
        "signed with another key": "0" * 64,
        "signature of version 1 replayed": version_1.tags[SIGNATURE_TAG],
    }[forgery]
    planted = plant_champion(uri, tmp_path, marker, signature)
    expected = (
        rf"version {planted} of '{MODEL}' \(MLflow run \w+\): its signature tag {SIGNATURE_TAG}"
    )

    with pytest.raises(dg.Failure, match=expected) as refused:
        load_champion(uri)
    assert refused.value.allow_retries is False

    scores = run_graph(instance, dg.AssetSelection.assets("churn_scores"))
    assert not scores.success
    assert SIGNATURE_TAG in failure_messages(scores)
    assert f"version {planted} of '{MODEL}'" in failure_messages(scores)
    assert step_starts(scores, "churn_scores.bucket_of_churn_scores[bucket_0]") == 1  # not retried

    challenger = run_graph(
        instance,
        dg.AssetSelection.assets("churn_model", "churn_model_evaluation"),
        run_config=CHALLENGER,
    )
    assert not challenger.success
    message = failure_messages(challenger)
    assert f"version {planted} of '{MODEL}'" in message and SIGNATURE_TAG in message, message
    assert step_starts(challenger, "churn_model_evaluation") == 1

    assert not marker.exists()  # nothing was unpickled
    # The same forged version is loaded, and runs its code, when no key is set: the signature is
    # what stops it, not the hash check.
    monkeypatch.delenv("LAKEHOUSE_MODEL_SIGNING_KEY")
    load_champion(uri)
    assert marker.exists()


def test_without_a_key_models_are_unsigned_and_the_graph_runs_as_before(lakehouse_home, instance):
    result = run_graph(instance)
    assert result.success, failure_messages(result)
    for asset in ("churn_model", "churn_model_evaluation", "churn_scores"):
        assert metadata(result, asset)["provenance"] == "unsigned"
    client = MlflowClient(tracking_uri=sqlite_uri(lakehouse_home))
    assert SIGNATURE_TAG not in client.get_model_version(MODEL, "1").tags


def test_a_version_registered_before_the_key_is_not_reused_once_the_key_is_set(
    lakehouse_home, instance, monkeypatch
):
    """Identical training inputs reuse a registered run only if its signature verifies: with a
    new key the model is trained, signed and registered again, and the graph passes."""
    assert run_graph(instance).success
    monkeypatch.setenv("LAKEHOUSE_MODEL_SIGNING_KEY", KEY)
    second = run_graph(instance)
    # The unsigned champion v1 is refused as the comparison: evaluation fails naming it.
    assert not second.success
    assert f"version 1 of '{MODEL}'" in failure_messages(second)
    assert metadata(second, "churn_model")["identical_to_version"] == "none"


def test_the_prod_profile_requires_the_signing_key(lakehouse_home, instance, monkeypatch):
    monkeypatch.setenv("LAKEHOUSE_ENV", "prod")
    monkeypatch.setenv("LAKEHOUSE_CATALOG", f"sqlite:{lakehouse_home / 'catalog.sqlite'}")
    monkeypatch.setenv("LAKEHOUSE_DATA_PATH", str(lakehouse_home / "lake"))
    monkeypatch.setenv("LAKEHOUSE_LANDING_DIR", str(lakehouse_home / "landing"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", sqlite_uri(lakehouse_home))
    monkeypatch.delenv("LAKEHOUSE_MODEL_SIGNING_KEY", raising=False)
    (lakehouse_home / "landing").mkdir(parents=True)
    result = run_graph(instance, dg.AssetSelection.assets("churn_model"))
    assert not result.success
    events = " ".join(str(e) for e in result.all_events)
    assert "LAKEHOUSE_MODEL_SIGNING_KEY is not set" in events
