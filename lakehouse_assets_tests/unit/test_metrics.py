"""Held-out metrics of a churn score, on arrays small enough to check by hand."""

import math

import numpy as np
import pytest
from sklearn.calibration import calibration_curve
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression

from lakehouse_assets.lib.model import metrics

# scikit-learn's own example: ROC AUC 0.75, average precision 0.8333.
Y = np.array([0, 0, 1, 1])
SCORE = np.array([0.1, 0.4, 0.35, 0.8])


def test_ranking_metrics_on_a_hand_checked_example():
    result = metrics.ranking_metrics(Y, SCORE)
    assert set(result) == set(metrics.RANKING_METRICS)
    assert result["roc_auc"] == pytest.approx(0.75)
    assert result["pr_auc"] == pytest.approx(5 / 6)
    # ceil(10% of 4) = 1 customer taken: the 0.8, one of the two churners.
    assert result["top_decile_capture"] == pytest.approx(0.5)
    assert result["top_decile_lift"] == pytest.approx(5.0)


def test_ranking_metrics_need_only_an_order():
    """A rule's score (any increasing transform of the probability) ranks the same."""
    assert metrics.ranking_metrics(Y, SCORE * 100 - 7) == pytest.approx(
        metrics.ranking_metrics(Y, SCORE)
    )


def test_probability_metrics_on_a_hand_checked_example():
    result = metrics.probability_metrics(Y, SCORE)
    assert set(result) == set(metrics.ALL_METRICS)
    assert result["brier"] == pytest.approx((0.1**2 + 0.4**2 + 0.65**2 + 0.2**2) / 4)
    expected_log_loss = -(math.log(0.9) + math.log(0.6) + math.log(0.35) + math.log(0.8)) / 4
    assert result["log_loss"] == pytest.approx(expected_log_loss)
    # predicted class [0, 0, 0, 1]: 3 of 4 right; precision 1, recall 1/2.
    assert result["accuracy"] == pytest.approx(0.75)
    assert result["f1_score"] == pytest.approx(2 / 3)


def test_a_probability_of_exactly_one_half_is_not_churn():
    result = metrics.probability_metrics(np.array([0, 1]), np.array([0.5, 0.5]))
    assert result["accuracy"] == pytest.approx(0.5)
    assert result["f1_score"] == 0.0  # no churn predicted: zero, not an error


def test_top_share_capture_takes_the_highest_scores():
    y = np.array([1, 0, 1, 0, 0, 0, 0, 0, 0, 0])
    score = np.linspace(1.0, 0.1, 10)
    assert metrics.top_share_capture(y, score, 0.1) == pytest.approx(0.5)
    assert metrics.top_share_capture(y, score, 0.3) == pytest.approx(1.0)
    assert metrics.top_share_capture(y, score[::-1], 0.1) == 0.0


def test_the_top_share_is_rounded_up_to_whole_customers():
    # 10% of 15 customers is 1.5: the top 2 are taken, both churners, of 3.
    y = np.array([1, 1] + [0] * 12 + [1])
    score = np.linspace(1.0, 0.0, 15)
    assert metrics.top_share_capture(y, score, 0.1) == pytest.approx(2 / 3)


def test_a_constant_score_captures_exactly_the_share():
    y = np.array([1, 1, 0, 0, 0, 0, 0, 0, 0, 0])
    assert metrics.top_share_capture(y, np.full(10, 0.3), 0.1) == pytest.approx(0.1)
    assert metrics.top_share_capture(y, np.full(10, 0.3), 0.5) == pytest.approx(0.5)


def test_ties_at_the_cut_count_pro_rata_whatever_the_row_order():
    # Take 2 of 4: the 0.9 (no churner), then one of the two 0.5s, of which one churned.
    y = np.array([0, 1, 0, 1])
    score = np.array([0.9, 0.5, 0.5, 0.1])
    assert metrics.top_share_capture(y, score, 0.5) == pytest.approx(0.25)
    order = np.array([2, 0, 3, 1])
    assert metrics.top_share_capture(y[order], score[order], 0.5) == pytest.approx(0.25)


def test_no_churners_capture_nothing():
    assert metrics.top_share_capture(np.zeros(5, dtype=int), np.arange(5), 0.1) == 0.0


def test_a_calibrated_score_has_no_calibration_error():
    y = np.array([1, 0, 0, 0, 1, 1, 1, 0])
    probability = np.array([0.25, 0.25, 0.25, 0.25, 0.75, 0.75, 0.75, 0.75])
    assert metrics.expected_calibration_error(y, probability) == pytest.approx(0.0)


def test_calibration_error_weighs_each_bin_by_its_customers():
    # Bin (0.8, 0.9]: churn rate 0.5 vs 0.9; bin [0, 0.1]: 0 vs 0.1. (2*0.4 + 2*0.1) / 4.
    y = np.array([1, 0, 0, 0])
    probability = np.array([0.9, 0.9, 0.1, 0.1])
    assert metrics.expected_calibration_error(y, probability) == pytest.approx(0.25)


def test_a_probability_on_a_bin_edge_belongs_to_the_bin_below():
    # 0.5 shares the bin (0.4, 0.5] with 0.45: |0.5 - 0.475| = 0.025 (apart, it would be 0.475).
    assert metrics.expected_calibration_error(
        np.array([1, 0]), np.array([0.5, 0.45])
    ) == pytest.approx(0.025)


def test_calibration_bins_are_those_of_sklearns_reliability_curve():
    """With the same number of customers in every bin, the error is the mean gap of the curve
    that `calibration_curve(strategy="uniform")` draws; probabilities sit on the bin edges too."""
    rng = np.random.default_rng(0)
    probability = np.concatenate([np.arange(10) / 10 + 0.05, np.arange(1, 11) / 10])
    y = (rng.random(20) < probability).astype(int)
    prob_true, prob_pred = calibration_curve(y, probability, n_bins=10, strategy="uniform")
    assert len(prob_true) == 10
    assert metrics.expected_calibration_error(y, probability) == pytest.approx(
        np.mean(np.abs(prob_true - prob_pred))
    )


@pytest.fixture
def one_informative_feature():
    """60 customers: feature 0 decides the label, feature 1 is noise."""
    rng = np.random.default_rng(1)
    signal = rng.normal(size=60)
    x = np.column_stack([signal, rng.normal(size=60)])
    return x, (signal > 0).astype(int)


def test_a_tree_ensemble_reports_its_own_importances(one_informative_feature):
    x, y = one_informative_feature
    model = RandomForestClassifier(n_estimators=5, random_state=0).fit(x, y)
    importances, measure = metrics.feature_importances(model, x, y)
    assert measure == "mean decrease in impurity"
    assert importances == pytest.approx(list(model.feature_importances_))
    assert importances[0] > importances[1]


def test_other_models_get_permutation_importances(one_informative_feature):
    x, y = one_informative_feature
    model = LogisticRegression().fit(x, y)
    importances, measure = metrics.feature_importances(model, x, y, max_rows=40)
    assert measure == "drop in ROC AUC when shuffled"
    assert len(importances) == 2
    assert importances[0] > 0.1 > abs(importances[1])
