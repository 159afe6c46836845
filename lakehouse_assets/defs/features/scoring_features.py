"""The scoring population's features, at the latest event."""

import dagster as dg

from lakehouse_assets.lib import fanout, features
from lakehouse_assets.lib.features import FEATURE_COLUMNS, latest_event
from lakehouse_assets.lib.metadata import markdown_rows, table_exists
from lakehouse_assets.lib.model.drift import (
    PSI_WARNING,
    SCORING_FEATURES_DRIFT,
    SHIFTS_BY_CONSTRUCTION,
    population_stability_index,
    sample_features,
)
from lakehouse_assets.lib.refresh import RefreshPlan
from lakehouse_assets.lib.resources import LakehouseDuckDB
from lakehouse_assets.lib.tables import CUSTOMER_FEATURES, SCORING_FEATURES


class ScoringFeaturesConfig(dg.Config):
    full_refresh: bool = False
    """Recompute every customer's features, not only those that can have changed."""


def _plan(context, conn, config: ScoringFeaturesConfig) -> tuple[RefreshPlan, dict]:
    cutoff = latest_event(conn)
    context.log.info(f"Scoring features as of {cutoff} (the latest event in silver)")
    return features.plan_refresh(context, conn, SCORING_FEATURES, cutoff, config.full_refresh, None)


def _commit(context, conn, planned: fanout.Planned, pieces: list[fanout.Piece]) -> dict:
    return {
        **features.commit(context, conn, planned, pieces),
        "features_as_of": dg.MetadataValue.text(str(planned.extra["cutoff"])),
        "feature_count": len(FEATURE_COLUMNS),
    }


scoring_features = fanout.bucketed_asset(
    name="scoring_features",
    table=SCORING_FEATURES,
    upstream=["silver_transactions"],
    group_name="features",
    description="""`gold.scoring_features`: the same 30 features as `gold.customer_features`,
    from the same SQL, for every customer with history, at cutoff = the latest `event_time` in
    silver (no label), the first and last purchase, and the cutoff as `features_as_of`: what
    the champion scores to rank the customers at risk now. A view over
    `gold.scoring_features_stored`, refreshed like `customer_features`, bucket by bucket.""",
    config_class=ScoringFeaturesConfig,
    guard=features.guard(SCORING_FEATURES),
    plan=_plan,
    piece=features.write_piece,
    commit=_commit,
)


@dg.asset_check(
    asset=scoring_features,
    name=SCORING_FEATURES_DRIFT,
    additional_deps=["customer_features"],
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
        training, scoring = (
            sample_features(conn, CUSTOMER_FEATURES),
            sample_features(conn, SCORING_FEATURES),
        )
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
