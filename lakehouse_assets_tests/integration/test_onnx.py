"""The champion's ONNX model at training: a model that cannot be converted is registered and
scored from its verified pickle, with a warning; an ONNX model that disagrees with the pickle
blocks training before anything is logged or registered."""

import dagster as dg
import pytest
from sklearn.base import clone
from sklearn.pipeline import make_pipeline

from lakehouse_assets import load_champion
from lakehouse_assets.defs.model import churn_model
from lakehouse_assets.lib.model import onnx_model
from lakehouse_assets.lib.model.onnx_export import OnnxExport
from lakehouse_assets_tests.support.helpers import (
    MODEL,
    client_for,
    failure_messages,
    query,
    run_graph,
    step_starts,
)
from lakehouse_assets_tests.unit.test_onnx_model import FutureClassifier


def sqlite_uri(home) -> str:
    return f"sqlite:///{home / 'mlflow.db'}"


def test_an_onnx_model_that_disagrees_with_the_pickle_blocks_registration(
    lakehouse_home, instance, monkeypatch
):
    """A converter that returns the graph of another fit (as a converter bug would): the
    comparison on every customer fails churn_model at once, naming the difference and a
    customer, and nothing is logged to MLflow or registered."""
    convert = onnx_model.convert

    def converts_another_fit(model, example):
        other = clone(model).set_params(logisticregression__C=1e-3)
        return convert(other.fit(example, model.predict(example)), example)

    monkeypatch.setattr(onnx_model, "convert", converts_another_fit)
    result = run_graph(instance)
    assert not result.success
    message = failure_messages(result)
    assert "disagrees with the pickle: churn probabilities differ by up to" in message, message
    assert "(customer " in message and "Nothing was logged or registered" in message, message
    assert step_starts(result, "churn_model") == 1  # final: not retried
    assert not result.asset_materializations_for_node("registered_churn_model")
    client = client_for(sqlite_uri(lakehouse_home))
    assert client.search_model_versions(f"name = '{MODEL}'") == []
    experiment = client.get_experiment_by_name("lakehouse_ml_pipeline")
    assert experiment is None or not client.search_runs([experiment.experiment_id])


def test_a_model_without_onnx_is_registered_and_scored_from_its_verified_pickle(
    lakehouse_home, instance, monkeypatch
):
    """A future estimator that skl2onnx cannot convert: one warning at training, no
    `model_onnx/`, and churn_scores scores with the pickle and says so, in a warning, its
    metadata and the `scored_by` column."""
    import sklearn

    default = churn_model.build_estimator

    def future(config):
        return make_pipeline(*default(config)[:-1], FutureClassifier(max_iter=5000))

    monkeypatch.setattr(churn_model, "build_estimator", future)
    result = run_graph(instance)
    assert result.success, failure_messages(result)
    warnings = [r.user_message for r in instance.all_logs(result.run_id) if r.level >= 30]
    trained = [w for w in warnings if "No ONNX model for this Pipeline: FutureClassifier" in w]
    scored = [w for w in warnings if "has no ONNX model (not converted: FutureClassifier" in w]
    assert len(trained) == 1 and len(scored) == 1, warnings
    assert not list((lakehouse_home / "mlartifacts").rglob("model.onnx"))
    pickle_runtime = f"scikit-learn {sklearn.__version__} (pickle)"
    metadata = result.asset_materializations_for_node("churn_scores")[0].metadata
    assert metadata["scored_by"].value == pickle_runtime
    assert query(lakehouse_home, "SELECT DISTINCT scored_by FROM gold.churn_scores") == [
        (pickle_runtime,)
    ]
    with pytest.raises(
        dg.Failure,
        match="no verifiable ONNX model .no model_onnx_sha256 tag; model_onnx: not converted: Fut",
    ):
        load_champion(sqlite_uri(lakehouse_home), flavor="onnx")


def test_a_champion_from_before_onnx_is_replaced_by_its_equal_with_an_onnx_model(
    lakehouse_home, instance, monkeypatch
):
    """An upgraded lakehouse: version 1 was trained before ONNX models (no ONNX tags, another
    training key). The next run trains the same model again, with its ONNX model; equal on ROC
    AUC, it becomes the champion, and scoring stops unpickling."""
    identity, export = churn_model._identity, churn_model.export

    def before_onnx(config):
        return {k: v for k, v in identity(config).items() if k != "files"}

    monkeypatch.setattr(churn_model, "_identity", before_onnx)
    monkeypatch.setattr(
        churn_model, "export", lambda *_: OnnxExport(None, "not converted: made before ONNX models")
    )
    first = run_graph(instance)
    assert first.success, failure_messages(first)
    client = client_for(sqlite_uri(lakehouse_home))
    client.delete_model_version_tag(MODEL, "1", "model_onnx")  # as a version from before
    monkeypatch.setattr(churn_model, "_identity", identity)  # not undo(): it holds the home too
    monkeypatch.setattr(churn_model, "export", export)
    second = run_graph(instance)
    assert second.success, failure_messages(second)
    evaluation = second.asset_materializations_for_node("churn_model_evaluation")[0].metadata
    assert evaluation["roc_auc"].value == evaluation["champion_roc_auc"].value  # the same model
    registered = second.asset_materializations_for_node("registered_churn_model")[0].metadata
    assert registered["champion_version"].value == "2"
    assert "as good as version 1, which has no ONNX model" in registered["decision"].value
    scored = second.asset_materializations_for_node("churn_scores")[0].metadata
    assert scored["model_version"].value == "2"
    assert scored["scored_by"].value.startswith("onnxruntime ")
