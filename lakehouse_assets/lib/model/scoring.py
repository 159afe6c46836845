"""What the model's scores mean: the churn probability, and the class `predict` returns."""

import numpy as np


def churn_probability(model, x) -> np.ndarray:
    """P(churned) for each row of `x` (column 1 of `predict_proba`: classes are [0, 1])."""
    return model.predict_proba(x)[:, 1]


def predicted_churn(probability: np.ndarray) -> np.ndarray:
    """The class `predict` returns: 1 when the churn probability is above 0.5."""
    return (probability > 0.5).astype(int)
