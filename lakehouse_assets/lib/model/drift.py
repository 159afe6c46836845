"""Drift between the population the model was trained on and the one it scores now.

Two things make a naive comparison of the two snapshots wrong (docs/model-quality.md, "Drift"):
- The training snapshot is a horizon earlier. When the data begin at a fixed date, its customers
  are younger, and every feature of a customer's history (tenure, counts, windows, shares)
  moves with age alone. So the training customers are reweighted to the scoring customers'
  mix of tenures, over the tenures both have: customers are compared at matching ages.
- Most activity features are zero for most customers (no purchase in the last 90 days). Each
  feature is compared as a share of zeros plus the distribution of its non-zero values, so a
  shift among the buyers shows even when 90% of customers bought nothing.
"""

from dataclasses import dataclass

import numpy as np

from lakehouse_assets.lib.features import FEATURE_COLUMNS

SCORING_FEATURES_DRIFT = "scoring_features_drift"
PSI_WARNING = 0.25
BINS = 10
SAMPLE_ROWS = 200_000
FLOOR = 1e-4  # the share an empty bin counts as, so that the index stays finite
MATCHED_ON = "tenure_days"
# Below this share of scoring customers within the training customers' tenures, matching would
# compare a minority: the populations are compared as they are, and the ageing itself warns.
MIN_MATCHED_SHARE = 0.25
# Scoring customers are matched up to the 99th percentile of the training tenures, in tenure
# deciles with at least this many training customers: a handful of old training customers must
# not stand in for a tenth of the scoring population.
MATCH_UP_TO_QUANTILE = 0.99
MIN_TRAINING_PER_BIN = 20


@dataclass(frozen=True)
class Drift:
    """The comparison of the two populations: each feature's index, and how they were matched."""

    psi: dict[str, float]
    matched_share: float  # of scoring customers whose tenure some training customer has
    matched: bool  # compared at matching tenures (else as they are)
    zero_share: dict[str, tuple[float, float]]  # (training, scoring) share of zeros
    missing: dict[str, tuple[int, int]]  # (training, scoring) NULL or non-finite values, left out

    @property
    def drifted(self) -> dict[str, float]:
        """The features whose index exceeds `PSI_WARNING`, the matching variable left out."""
        return {c: v for c, v in self.psi.items() if v > PSI_WARNING and c != MATCHED_ON}


def zero_inflated_psi(
    expected: np.ndarray, actual: np.ndarray, weights: np.ndarray | None = None, bins: int = BINS
) -> float:
    """PSI = sum((a - e) * ln(a / e)) over a bin of exact zeros and the bins cut at the deciles
    of `expected`'s non-zero values (ties merge bins). `weights` weigh the `expected` rows.
    Shares are floored at 1e-4, so that an empty bin counts and the index stays finite. A
    feature without zeros gets the classic decile PSI (plus an empty zero bin, which adds 0)."""
    weights = np.ones(len(expected)) if weights is None else np.asarray(weights, dtype=float)
    weights = weights / weights.sum()
    nonzero = expected != 0
    edges = np.unique(_weighted_quantiles(expected[nonzero], weights[nonzero], bins))
    e = np.bincount(
        np.searchsorted(edges, expected[nonzero], side="right"),
        weights=weights[nonzero],
        minlength=len(edges) + 1,
    )
    a = np.bincount(
        np.searchsorted(edges, actual[actual != 0], side="right"), minlength=len(edges) + 1
    ) / len(actual)
    e = np.maximum(np.append(e, weights[~nonzero].sum()), FLOOR)
    a = np.maximum(np.append(a, np.mean(actual == 0)), FLOOR)
    return float(np.sum((a - e) * np.log(a / e)))


def _weighted_quantiles(values: np.ndarray, weights: np.ndarray, bins: int) -> np.ndarray:
    """The inner cut points of `bins` equal-weight bins of `values` (none when it is empty)."""
    if len(values) == 0:
        return np.array([])
    order = np.argsort(values, kind="stable")
    cumulative = np.cumsum(weights[order]) / weights.sum()
    cuts = np.searchsorted(cumulative, np.linspace(0, 1, bins + 1)[1:-1])
    return values[order][np.minimum(cuts, len(values) - 1)]


def tenure_weights(training: np.ndarray, scoring: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Weights of the training customers that give them the scoring customers' mix of tenures
    (by deciles of the scoring tenures), and which scoring customers that mix covers: those
    up to the 99th percentile of the training tenures, in a decile where training has at least
    `MIN_TRAINING_PER_BIN` customers."""
    within = scoring <= np.quantile(training, MATCH_UP_TO_QUANTILE)
    edges = np.unique(_weighted_quantiles(scoring[within], np.ones(within.sum()), BINS))
    training_bin = np.searchsorted(edges, training, side="right")
    scoring_bin = np.searchsorted(edges, scoring, side="right")
    training_count = np.bincount(training_bin, minlength=len(edges) + 1)
    covered = within & (training_count[scoring_bin] >= MIN_TRAINING_PER_BIN)
    scoring_count = np.bincount(scoring_bin[covered], minlength=len(edges) + 1)
    per_bin = np.divide(
        scoring_count,
        training_count,
        out=np.zeros(len(edges) + 1),
        where=training_count >= MIN_TRAINING_PER_BIN,
    )
    return per_bin[training_bin], covered


def compare(training: dict[str, np.ndarray], scoring: dict[str, np.ndarray]) -> Drift:
    """Each feature's zero-inflated PSI between the two samples, at matching tenures when at
    least `MIN_MATCHED_SHARE` of the scoring customers can be matched, else as they are."""
    weights, covered = tenure_weights(training[MATCHED_ON], scoring[MATCHED_ON])
    matched_share = float(covered.mean()) if len(covered) else 0.0
    matched = bool(matched_share >= MIN_MATCHED_SHARE and weights.sum() > 0)
    if not matched:
        weights, covered = np.ones(len(weights)), np.ones(len(covered), dtype=bool)
    psi, zeros, missing = {}, {}, {}
    for c in FEATURE_COLUMNS:
        e, a = training[c], scoring[c][covered]
        e_ok, a_ok = np.isfinite(e), np.isfinite(a)
        w, e, a = weights[e_ok], e[e_ok], a[a_ok]
        psi[c] = zero_inflated_psi(e, a, w) if w.sum() > 0 and len(a) else float("nan")
        zeros[c] = (
            float(w[e == 0].sum() / max(w.sum(), 1e-12)),
            float(np.mean(a == 0)) if len(a) else 0.0,
        )
        missing[c] = (int((~e_ok).sum()), int((~a_ok).sum()))
    return Drift(psi, matched_share, matched, zeros, missing)


def sample_features(conn, table: str) -> dict[str, np.ndarray]:
    """At most SAMPLE_ROWS customers' features from `table`, as floats (NULL as NaN): those with the smallest
    hash of `customer_id`, so that the same content gives the same sample, whatever the physical
    order of the rows (the feature tables are written unsorted, and a refresh reorders them)."""
    columns = conn.execute(
        f"SELECT {', '.join(FEATURE_COLUMNS)} FROM {table} WHERE customer_id IN "
        f"(SELECT customer_id FROM {table} ORDER BY hash(customer_id), customer_id LIMIT $rows)",
        {"rows": SAMPLE_ROWS},
    ).fetchnumpy()
    return {c: np.ma.filled(np.ma.asarray(v, dtype=float), np.nan) for c, v in columns.items()}
