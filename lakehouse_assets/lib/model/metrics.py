"""Held-out metrics of a churn score: ranking, probability quality and the 0.5-threshold class.

Every scorer on the evaluation's ladder (the model, the baselines, the champion) is measured with
these functions on the same test customers, so the figures can be compared row by row.
"""

import numpy as np

from lakehouse_assets.lib.model.scoring import predicted_churn

TOP_SHARE = 0.1  # the top decile: the 10% of customers scored most at risk
CALIBRATION_BINS = 10

RANKING_METRICS = ("roc_auc", "pr_auc", "top_decile_capture", "top_decile_lift")
PROBABILITY_METRICS = ("brier", "log_loss", "ece", "accuracy", "f1_score")
ALL_METRICS = RANKING_METRICS + PROBABILITY_METRICS


def ranking_metrics(y: np.ndarray, score: np.ndarray) -> dict[str, float]:
    """Metrics that need only an order (higher = more at risk): ROC AUC, PR AUC (average
    precision) and the top decile's capture rate and lift. Fit for any score, a rule included."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    y, score = np.asarray(y), np.asarray(score, dtype="float64")
    capture = top_share_capture(y, score, TOP_SHARE)
    return {
        "roc_auc": float(roc_auc_score(y, score)),
        "pr_auc": float(average_precision_score(y, score)),
        "top_decile_capture": capture,
        "top_decile_lift": capture / TOP_SHARE,
    }


def probability_metrics(y: np.ndarray, probability: np.ndarray) -> dict[str, float]:
    """`ranking_metrics` plus what only a churn probability has: Brier score, log loss, expected
    calibration error, and accuracy and F1 of the class `predict` returns (probability > 0.5)."""
    from sklearn.metrics import accuracy_score, brier_score_loss, f1_score, log_loss

    y, probability = np.asarray(y), np.asarray(probability, dtype="float64")
    predicted = predicted_churn(probability)
    return {
        **ranking_metrics(y, probability),
        "brier": float(brier_score_loss(y, probability)),
        "log_loss": float(log_loss(y, probability, labels=[0, 1])),
        "ece": expected_calibration_error(y, probability),
        "accuracy": float(accuracy_score(y, predicted)),
        "f1_score": float(f1_score(y, predicted, zero_division=0)),
    }


def top_share_capture(y: np.ndarray, score: np.ndarray, share: float) -> float:
    """The share of all churners among the `share` of customers scored highest.

    k = ceil(share * n) customers are taken. Customers tied with the k-th score count pro rata
    (the expected capture when ties are broken at random), so a constant score captures exactly
    `share` of the churners and the result does not depend on the row order."""
    y, score = np.asarray(y), np.asarray(score, dtype="float64")
    positives = y.sum()
    if positives == 0:
        return 0.0
    k = int(np.ceil(share * len(y)))
    threshold = np.sort(score)[::-1][k - 1]
    above, tied = score > threshold, score == threshold
    taken_from_ties = k - above.sum()
    caught = y[above].sum() + taken_from_ties * y[tied].sum() / tied.sum()
    return float(caught / positives)


def expected_calibration_error(
    y: np.ndarray, probability: np.ndarray, bins: int = CALIBRATION_BINS
) -> float:
    """Expected calibration error over `bins` equal-width bins of the predicted probability:
    sum over non-empty bins of (customers in bin / all customers) * |churn rate in bin - mean
    probability in bin|. Bin i holds probabilities in (i/bins, (i+1)/bins], the first one 0 too:
    the bins of scikit-learn's `calibration_curve(strategy="uniform")`, which draws the
    reliability curve, so the error and the picture agree."""
    y, probability = np.asarray(y, dtype="float64"), np.asarray(probability, dtype="float64")
    index = np.searchsorted(np.linspace(0.0, 1.0, bins + 1)[1:-1], probability)
    total = 0.0
    for b in np.unique(index):
        members = index == b
        total += members.sum() * abs(y[members].mean() - probability[members].mean())
    return float(total / len(y))


def feature_importances(model, x, y, max_rows: int = 5000) -> tuple[list[float], str]:
    """The estimator's own `feature_importances_` (impurity decrease), or else the mean drop in
    ROC AUC when a feature is shuffled (permutation importance, 3 repeats, at most `max_rows`
    test rows). Returns the importances in feature order and what they measure."""
    importances = getattr(model, "feature_importances_", None)
    if importances is not None:
        return [float(v) for v in importances], "mean decrease in impurity"
    from sklearn.inspection import permutation_importance

    rows = slice(0, min(len(y), max_rows))
    result = permutation_importance(
        model, x[rows], np.asarray(y)[rows], scoring="roc_auc", n_repeats=3, random_state=0
    )
    return [float(v) for v in result.importances_mean], "drop in ROC AUC when shuffled"
