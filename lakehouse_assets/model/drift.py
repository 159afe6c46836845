"""Drift between the population the model was trained on and the one it scores now."""

import dagster as dg
import numpy as np

from lakehouse_assets.layers.features import (
    FEATURE_COLUMNS,
    customer_features,
    scoring_features,
)
from lakehouse_assets.metadata import markdown_rows, table_exists
from lakehouse_assets.resources import LakehouseDuckDB
from lakehouse_assets.tables import CUSTOMER_FEATURES, SCORING_FEATURES

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


def _sample(conn, table: str) -> dict[str, np.ndarray]:
    """At most SAMPLE_ROWS customers' features from `table`: those with the smallest hash of
    `customer_id`, so that the same content gives the same sample, whatever the physical order
    of the rows (the feature tables are written unsorted, and a refresh reorders them)."""
    return conn.execute(
        f"SELECT {', '.join(FEATURE_COLUMNS)} FROM {table} WHERE customer_id IN "
        f"(SELECT customer_id FROM {table} ORDER BY hash(customer_id), customer_id "
        f"LIMIT {SAMPLE_ROWS})"
    ).fetchnumpy()


@dg.asset_check(
    asset=scoring_features,
    name=SCORING_FEATURES_DRIFT,
    additional_deps=[customer_features],
    blocking=False,
    pool="duckdb",
)
def scoring_features_drift(
    context: dg.AssetCheckExecutionContext, duckdb: LakehouseDuckDB
) -> dg.AssetCheckResult:
    """Population stability index (PSI) of every feature between the training population
    (`gold.customer_features`, at latest - horizon) and the scoring population
    (`gold.scoring_features`, at the latest event). WARN when a feature's PSI exceeds 0.25: the
    customers scored now differ from those the model learned from, so its scores deserve a
    look (a cohort that aged, a change in spending). `tenure_days` grows by the horizon between
    the two snapshots by construction: it is reported, but never warns. Up to 200,000 customers
    of each table are sampled."""
    with duckdb.get_connection() as conn:
        if not table_exists(conn, CUSTOMER_FEATURES):
            return dg.AssetCheckResult(
                passed=False,
                severity=dg.AssetCheckSeverity.WARN,
                description=f"No training population to compare with: {CUSTOMER_FEATURES} does not exist "
                "yet. Materialize customer_features.",
            )
        training, scoring = _sample(conn, CUSTOMER_FEATURES), _sample(conn, SCORING_FEATURES)
    psi = {
        c: population_stability_index(training[c].astype(float), scoring[c].astype(float))
        for c in FEATURE_COLUMNS
    }
    drifted = {c: v for c, v in psi.items() if v > PSI_WARNING and c not in SHIFTS_BY_CONSTRUCTION}
    if drifted:
        named = ", ".join(f"{c} {v:.2f}" for c, v in sorted(drifted.items(), key=lambda kv: -kv[1]))
        context.log.warning(
            f"Feature drift (PSI > {PSI_WARNING}) between training and scoring: {named}"
        )
    rows = [
        (
            c,
            f"{v:.4f}",
            "by construction" if c in SHIFTS_BY_CONSTRUCTION else ("drift" if c in drifted else ""),
        )
        for c, v in sorted(psi.items(), key=lambda kv: -kv[1])
    ]
    return dg.AssetCheckResult(
        passed=not drifted,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "drifted_features": ", ".join(sorted(drifted)) or "none",
            "max_psi": max(v for c, v in psi.items() if c not in SHIFTS_BY_CONSTRUCTION),
            "psi_threshold": PSI_WARNING,
            "psi_by_feature": dg.MetadataValue.md(markdown_rows(["feature", "psi", "note"], rows)),
            **{f"psi/{c}": v for c, v in psi.items()},
        },
    )
