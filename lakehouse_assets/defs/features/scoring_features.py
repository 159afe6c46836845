"""The scoring population's features, at the latest event."""

import dagster as dg
import numpy as np

from lakehouse_assets.lib import fanout, features
from lakehouse_assets.lib.features import FEATURE_COLUMNS, latest_event
from lakehouse_assets.lib.metadata import markdown_rows, table_exists
from lakehouse_assets.lib.model.drift import (
    MATCHED_ON,
    PSI_WARNING,
    SCORING_FEATURES_DRIFT,
    compare,
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
    """Do the customers scored now look like those the model learned from? WARN when a
    feature's population stability index (PSI) between `gold.customer_features` and
    `gold.scoring_features` exceeds 0.25, or when fewer than a quarter of the customers scored
    now can be matched to training customers of their tenure. Customers are compared at matching
    tenures (older ones are left out, and counted), and each feature as its share of zeros plus
    its non-zero values. On a warning, look at the named features: a landing that
    changed units or sources is a data problem; a real change in behaviour means retrain
    (docs/model-quality.md, "Drift"). Up to 200,000 customers of each table are sampled."""
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
    empty = [
        t
        for t, rows in ((CUSTOMER_FEATURES, training), (SCORING_FEATURES, scoring))
        if not len(rows[MATCHED_ON])
    ]
    if empty:
        return dg.AssetCheckResult(
            passed=False,
            severity=dg.AssetCheckSeverity.WARN,
            description=f"Nothing to compare: {' and '.join(empty)} has no customer (the training "
            "population needs data from before latest - horizon_days).",
        )
    drift = compare(training, scoring)
    drifted = drift.drifted
    how = (
        f"at matching tenures ({drift.matched_share:.0%} of the scoring customers matched; the "
        f"others, older than the training customers or in a tenure decile with too few of them, "
        "are not compared)"
        if drift.matched
        else f"as they are: only {drift.matched_share:.0%} of the customers scored now are as "
        f"young as a training customer ({MATCHED_ON} up to {training[MATCHED_ON].max():.0f} "
        "days), so the population aged past what the model learned from"
    )
    if drifted:
        named = ", ".join(f"{c} {v:.2f}" for c, v in sorted(drifted.items(), key=lambda kv: -kv[1]))
        context.log.warning(
            f"Feature drift (PSI > {PSI_WARNING}) between training and scoring, {how}: {named}. "
            "Look at these features: retrain if the customers changed, check the landing if "
            "the data did."
        )
    elif not drift.matched:
        context.log.warning(
            f"Training and scoring populations compared {how}: consider retraining."
        )
    rows = [
        (
            c,
            f"{v:.4f}",
            f"{drift.zero_share[c][0]:.0%} / {drift.zero_share[c][1]:.0%}",
            f"{drift.missing[c][0]} / {drift.missing[c][1]}",
            "matched on"
            if c == MATCHED_ON and drift.matched
            else ("drift" if c in drifted else ""),
        )
        for c, v in sorted(drift.psi.items(), key=lambda kv: -kv[1])
    ]
    return dg.AssetCheckResult(
        passed=not drifted and drift.matched,
        severity=dg.AssetCheckSeverity.WARN,
        description=f"Compared {how}.",
        metadata={
            "drifted_features": ", ".join(sorted(drifted)) or "none",
            "compared": how,
            "matched_share": drift.matched_share,
            "max_psi": float(np.nanmax([v for c, v in drift.psi.items() if c != MATCHED_ON])),
            "psi_threshold": PSI_WARNING,
            "psi_by_feature": dg.MetadataValue.md(
                markdown_rows(
                    ["feature", "psi", "zeros (training / scoring)", "missing", "note"], rows
                )
            ),
            **{f"psi/{c}": v for c, v in drift.psi.items()},
        },
    )
