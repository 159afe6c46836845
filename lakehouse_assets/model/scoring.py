"""Test-split metrics shared by training and evaluation."""

import numpy as np


def score(model, x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    from sklearn.metrics import accuracy_score, f1_score, roc_auc_score

    predicted = model.predict(x)
    probability = model.predict_proba(x)[:, 1]
    return {
        "accuracy": float(accuracy_score(y, predicted)),
        "f1_score": float(f1_score(y, predicted, zero_division=0)),
        "roc_auc": float(roc_auc_score(y, probability)),
    }


def majority_baseline(y_train: np.ndarray, y_test: np.ndarray) -> dict[str, float]:
    """Always predict the training set's majority class (ROC AUC of a constant score is 0.5)."""
    from sklearn.metrics import accuracy_score, f1_score

    majority = int(np.bincount(y_train).argmax())
    predicted = np.full_like(y_test, majority)
    return {
        "accuracy": float(accuracy_score(y_test, predicted)),
        "f1_score": float(f1_score(y_test, predicted, zero_division=0)),
        "roc_auc": 0.5,
    }
