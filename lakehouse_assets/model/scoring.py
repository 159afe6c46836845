"""Test-split metrics shared by training and evaluation."""

import numpy as np

METRIC_NAMES = ("accuracy", "f1_score", "roc_auc")


def churn_probability(model, x: np.ndarray) -> np.ndarray:
    return model.predict_proba(x)[:, 1]


def predicted_churn(probability: np.ndarray) -> np.ndarray:
    """The class `predict` returns: 1 when the churn probability is above 0.5."""
    return (probability > 0.5).astype(int)


def score(model, x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    return scores_from_probability(y, churn_probability(model, x))


def scores_from_probability(y: np.ndarray, probability: np.ndarray) -> dict[str, float]:
    """Accuracy and F1 of the 0.5-threshold prediction (what `predict` returns), and ROC AUC."""
    from sklearn.metrics import accuracy_score, f1_score, roc_auc_score

    predicted = predicted_churn(probability)
    return {
        "accuracy": float(accuracy_score(y, predicted)),
        "f1_score": float(f1_score(y, predicted, zero_division=0)),
        "roc_auc": float(roc_auc_score(y, probability)),
    }
