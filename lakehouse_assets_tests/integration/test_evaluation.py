"""The evaluation's metrics, baseline ladder and pictures: each metric against scikit-learn on a
fixed example; the ladder and the plots through the whole graph."""

import base64
import io

import dagster as dg
import numpy as np
import pytest
from sklearn import metrics as skm
from sklearn.calibration import calibration_curve

from lakehouse_assets.defs.model.churn_model_evaluation import BEATS_BASELINE
from lakehouse_assets.lib.model.metrics import (
    expected_calibration_error,
    probability_metrics,
    ranking_metrics,
    top_share_capture,
)
from lakehouse_assets.lib.model.plots import PLOT_DIR
from lakehouse_assets_tests.support.helpers import (
    PLOTS,
    client_for,
    failure_messages,
    lake_conn,
    run_graph,
)

Y = np.array([0, 0, 1, 1, 0, 1, 1, 0, 1, 1, 0, 1, 1, 1, 0, 1, 0, 1, 1, 1])
P = np.array([0.05, 0.12, 0.33, 0.81, 0.47, 0.66, 0.92, 0.21, 0.58, 0.73,
              0.38, 0.49, 0.97, 0.62, 0.15, 0.88, 0.54, 0.27, 0.71, 0.84])  # fmt: skip
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_BUDGET = 60_000


def test_each_metric_matches_scikit_learn():
    got = probability_metrics(Y, P)
    predicted = (P > 0.5).astype(int)
    assert got["roc_auc"] == pytest.approx(skm.roc_auc_score(Y, P))
    assert got["pr_auc"] == pytest.approx(skm.average_precision_score(Y, P))
    assert got["brier"] == pytest.approx(skm.brier_score_loss(Y, P))
    assert got["log_loss"] == pytest.approx(skm.log_loss(Y, P))
    assert got["accuracy"] == pytest.approx(skm.accuracy_score(Y, predicted))
    assert got["f1_score"] == pytest.approx(skm.f1_score(Y, predicted))
    # ECE: the reliability curve's bins, weighted by their customers.
    observed, mean_predicted = calibration_curve(Y, P, n_bins=10, strategy="uniform")
    counts = np.bincount(np.searchsorted(np.linspace(0, 1, 11)[1:-1], P), minlength=10)
    weights = counts[counts > 0] / len(Y)
    assert got["ece"] == pytest.approx(np.sum(weights * np.abs(observed - mean_predicted)))
    # Top decile: the 2 highest of 20 (0.97, 0.92) are both churners; 13 churners in all.
    assert Y.sum() == 13
    assert got["top_decile_capture"] == pytest.approx(2 / 13)
    assert got["top_decile_lift"] == pytest.approx((2 / 2) / (13 / 20))
    assert set(ranking_metrics(Y, P)) == {
        "roc_auc",
        "pr_auc",
        "top_decile_capture",
        "top_decile_lift",
    }


def test_ties_and_constants_are_scored_fairly():
    constant = np.full(len(Y), 0.65)
    assert top_share_capture(Y, constant, 0.1) == pytest.approx(0.1)
    assert ranking_metrics(Y, constant)["roc_auc"] == 0.5
    assert ranking_metrics(Y, constant)["pr_auc"] == pytest.approx(Y.mean())
    # One customer at the top, three tied for the second place: 1 + 1 * (2 churners of 3).
    y, score = np.array([1, 1, 0, 1, 0] + [0] * 15), np.array([9, 5, 5, 5] + [1] * 16)
    assert top_share_capture(y, score, 0.1) == pytest.approx((1 + 2 / 3) / 3)
    assert expected_calibration_error([0, 1, 1, 1], [0.75, 0.75, 0.75, 0.75]) == 0.0
    assert expected_calibration_error([0, 0, 1, 1], [0.1, 0.1, 0.9, 0.9]) == pytest.approx(0.1)


def _check(result, name: str):
    (evaluation,) = [e for e in result.get_asset_check_evaluations() if e.check_name == name]
    return evaluation


def test_sample_beats_the_ladder_and_shows_valid_plots(lakehouse_home, instance):
    result = run_graph(instance)
    assert result.success, failure_messages(result)
    check = _check(result, BEATS_BASELINE)
    assert check.passed
    ladder = check.metadata["ladder"].value
    assert (
        "recency rule" in ladder and "majority baseline" in ladder and "top_decile_lift" in ladder
    )
    metadata = result.asset_materializations_for_node("churn_model_evaluation")[0].metadata
    for scorer in ("", "baseline_majority_", "baseline_recency_"):
        assert isinstance(metadata[f"{scorer}roc_auc"].value, float)
    assert "baseline_recency_brier" not in metadata  # a ranking rule has no probability
    assert metadata["roc_auc"].value > metadata["baseline_recency_roc_auc"].value
    assert metadata["brier"].value <= metadata["baseline_majority_brier"].value
    # Measured with the defaults (docs/model-quality.md, "Held-out figures of the defaults"), minus a small tolerance.
    assert metadata["roc_auc"].value >= 0.92  # 0.9277; the recency rule 0.9043
    assert metadata["brier"].value <= 0.095  # 0.0918; the majority baseline 0.2090

    uri = f"sqlite:///{lakehouse_home / 'mlflow.db'}"
    client = client_for(uri)
    run_id = metadata["mlflow_run_id"].value
    logged = {a.path for a in client.list_artifacts(run_id, PLOT_DIR)}
    assert logged == {f"{PLOT_DIR}/{name}.png" for name in PLOTS}
    run_metrics = client.get_run(run_id).data.metrics
    assert {"pr_auc", "ece", "baseline_recency_top_decile_lift", "baseline_majority_brier"} <= set(
        run_metrics
    )
    for name in PLOTS:
        markdown = metadata[f"plot_{name}"].value
        assert markdown.startswith(f"![{name}](data:image/png;base64,")
        png = base64.b64decode(markdown.split(",", 1)[1].rstrip(")"))
        assert png.startswith(PNG_SIGNATURE) and len(png) < PNG_BUDGET, (name, len(png))
        artifact = client.download_artifacts(run_id, f"{PLOT_DIR}/{name}.png", str(lakehouse_home))
        assert open(artifact, "rb").read() == png
        from matplotlib.image import imread

        height, width, _ = imread(io.BytesIO(png)).shape
        assert width >= 300 and height >= 200


def test_a_model_the_recency_rule_matches_is_blocked_and_not_registered(lakehouse_home, instance):
    """When the label is exactly "recency above a threshold", the rule ranks perfectly: no model
    can be strictly better, so the blocking check fails and nothing is registered."""
    assert run_graph(instance, "*customer_features").success
    with lake_conn(lakehouse_home, read_only=False) as conn:
        threshold = conn.execute(
            "SELECT quantile_cont(recency_days, 0.65) FROM gold.customer_features"
        ).fetchone()[0]
        conn.execute(  # the view's label is stored; recency is computed at the cutoff
            "UPDATE gold.customer_features_stored s SET churned = (v.recency_days > $t)::INTEGER "
            "FROM gold.customer_features v WHERE s.customer_id = v.customer_id",
            {"t": threshold},
        )
    result = run_graph(
        instance,
        dg.AssetSelection.assets("churn_model", "churn_model_evaluation", "registered_churn_model"),
    )
    check = _check(result, BEATS_BASELINE)
    assert not check.passed
    assert check.metadata["recency_roc_auc"].value == 1.0
    assert "is not above the recency rule's" in check.description
    assert "recency rule" in check.metadata["ladder"].value
    assert not result.asset_materializations_for_node("registered_churn_model")
    assert client_for(f"sqlite:///{lakehouse_home / 'mlflow.db'}").search_registered_models() == []
