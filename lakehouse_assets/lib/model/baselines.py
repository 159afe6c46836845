"""The baseline ladder: what the model must beat before it may be registered.

- `majority`: the training churn rate as a constant probability (its 0.5-threshold class is the
  majority class). It ranks nobody (ROC AUC 0.5) but is a calibrated probability: the Brier
  score a model must not exceed.
- `recency`: score = `recency_days`, no fitting. A ranking, not a probability, so it has only the
  ranking metrics (ROC AUC, PR AUC, top-decile capture and lift); Brier, log loss, ECE, accuracy
  and F1 are left out rather than invented by mapping days to a probability.
"""

from dataclasses import dataclass

import numpy as np

from lakehouse_assets.lib.features import FEATURE_COLUMNS
from lakehouse_assets.lib.metadata import markdown_rows
from lakehouse_assets.lib.model.metrics import ALL_METRICS, probability_metrics, ranking_metrics

RECENCY = "recency_days"


def recency_score(x) -> np.ndarray:
    """`recency_days` of each row of `x` (a DataFrame with the feature columns, or an array in
    `FEATURE_COLUMNS` order): the longer since the last purchase, the more at risk."""
    if hasattr(x, "columns"):
        return np.asarray(x[RECENCY], dtype="float64")
    return np.asarray(x, dtype="float64")[:, FEATURE_COLUMNS.index(RECENCY)]


def majority_probability(y_train: np.ndarray, rows: int) -> np.ndarray:
    """The training churn rate, for every one of `rows` customers."""
    return np.full(rows, float(np.mean(y_train)))


@dataclass(frozen=True)
class Verdict:
    passed: bool
    required_roc_auc: float  # strictly above this
    max_brier: float  # at most this
    reason: str


# What `beats_baselines` reads, as the evaluation logs them to the model's MLflow run.
VERDICT_METRICS = ("roc_auc", "brier", "baseline_majority_brier", "baseline_recency_roc_auc")


def beats_baselines(
    model: dict[str, float], majority: dict[str, float], recency: dict[str, float], margin: float
) -> Verdict:
    """The model's ROC AUC must be strictly above the recency rule's + `margin`, and its Brier
    score no worse than the majority baseline's."""
    required, max_brier = recency["roc_auc"] + margin, majority["brier"]
    failures = []
    if not model["roc_auc"] > required:
        failures.append(
            f"ROC AUC {model['roc_auc']:.4f} is not above the recency rule's "
            f"{recency['roc_auc']:.4f} + margin {margin:g}"
        )
    if not model["brier"] <= max_brier:
        failures.append(
            f"Brier {model['brier']:.4f} is worse than the majority baseline's {max_brier:.4f}"
        )
    reason = "; ".join(failures) or (
        f"ROC AUC {model['roc_auc']:.4f} > {required:.4f} (recency rule + margin) and "
        f"Brier {model['brier']:.4f} <= {max_brier:.4f} (majority baseline)"
    )
    return Verdict(not failures, required, max_brier, reason)


def ladder(y_train, x_test, y_test) -> dict[str, dict[str, float]]:
    """Metrics of each baseline on the test customers: `majority` and `recency`."""
    return {
        "majority": probability_metrics(y_test, majority_probability(y_train, len(y_test))),
        "recency": ranking_metrics(y_test, recency_score(x_test)),
    }


def ladder_table(rows: dict[str, dict[str, float]]) -> str:
    """A markdown table: one row per scorer, one column per metric ("-" where it does not apply,
    such as the Brier score of the recency rule, which is not a probability)."""
    return markdown_rows(
        ["scorer", *ALL_METRICS],
        [
            (name, *(f"{scores[k]:.4f}" if k in scores else "-" for k in ALL_METRICS))
            for name, scores in rows.items()
        ],
    )
