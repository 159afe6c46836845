"""Drift between the population the model was trained on and the one it scores now."""

import numpy as np

from lakehouse_assets.lib.features import FEATURE_COLUMNS

SCORING_FEATURES_DRIFT = "scoring_features_drift"
PSI_WARNING = 0.25
BINS = 10
SAMPLE_ROWS = 200_000
# Time since the first purchase grows by the horizon for every customer between the training
# snapshot and the scoring one, whatever they do: reported, never warned about.
SHIFTS_BY_CONSTRUCTION = ("tenure_days",)


def population_stability_index(expected: np.ndarray, actual: np.ndarray, bins: int = BINS) -> float:
    """PSI = sum((a - e) * ln(a / e)) over bins cut at the deciles of `expected` (ties merge
    bins); shares are floored at 1e-4 so that an empty bin counts, and stays finite."""
    edges = np.unique(np.quantile(expected, np.linspace(0, 1, bins + 1)[1:-1]))
    e = np.bincount(np.searchsorted(edges, expected, side="right"), minlength=len(edges) + 1)
    a = np.bincount(np.searchsorted(edges, actual, side="right"), minlength=len(edges) + 1)
    e = np.maximum(e / len(expected), 1e-4)
    a = np.maximum(a / len(actual), 1e-4)
    return float(np.sum((a - e) * np.log(a / e)))


def sample_features(conn, table: str) -> dict[str, np.ndarray]:
    """At most SAMPLE_ROWS customers' features from `table`: those with the smallest hash of
    `customer_id`, so that the same content gives the same sample, whatever the physical order
    of the rows (the feature tables are written unsorted, and a refresh reorders them)."""
    return conn.execute(
        f"SELECT {', '.join(FEATURE_COLUMNS)} FROM {table} WHERE customer_id IN "
        f"(SELECT customer_id FROM {table} ORDER BY hash(customer_id), customer_id LIMIT $rows)",
        {"rows": SAMPLE_ROWS},
    ).fetchnumpy()
