"""The training population's features and label, at the latest event minus the horizon."""

import dagster as dg

from lakehouse_assets.lib import fanout, features
from lakehouse_assets.lib.features import FEATURE_COLUMNS, LABEL, latest_event
from lakehouse_assets.lib.refresh import RefreshPlan
from lakehouse_assets.lib.resources import LakehouseDuckDB, query_one
from lakehouse_assets.lib.tables import CUSTOMER_FEATURES


class FeaturesConfig(dg.Config):
    horizon_days: int = 90
    """Churn horizon: a customer churned when they bought nothing in this many days after the
    cutoff. The cutoff is the latest `event_time` in silver minus the horizon."""
    full_refresh: bool = False
    """Recompute every customer's features, not only those that can have changed."""


def _plan(context, conn, config: FeaturesConfig) -> tuple[RefreshPlan, dict]:
    if config.horizon_days < 1:
        raise dg.Failure(
            f"horizon_days must be at least 1, got {config.horizon_days}", allow_retries=False
        )
    latest = latest_event(conn)
    cutoff = conn.execute(
        "SELECT $latest::TIMESTAMP - to_days($h)", {"latest": latest, "h": config.horizon_days}
    ).fetchone()[0]
    context.log.info(
        f"Feature cutoff {cutoff} (latest event {latest} - {config.horizon_days} days)"
    )
    return features.plan_refresh(
        context, conn, CUSTOMER_FEATURES, cutoff, config.full_refresh, config.horizon_days
    )


def _commit(context, conn, planned: fanout.Planned, pieces: list[fanout.Piece]) -> dict:
    metadata = features.commit(context, conn, planned, pieces)
    churn_rate = conn.execute(f"SELECT avg({LABEL}) FROM {CUSTOMER_FEATURES}").fetchone()[0]
    return {
        **metadata,
        "cutoff": dg.MetadataValue.text(str(planned.extra["cutoff"])),
        "horizon_days": planned.extra["horizon_days"],
        "churn_rate": float(churn_rate or 0.0),
        "feature_count": len(FEATURE_COLUMNS),
    }


customer_features = fanout.bucketed_asset(
    name="customer_features",
    table=CUSTOMER_FEATURES,
    upstream=["gold_customer_summary", "silver_transactions"],
    group_name="features",
    description="""`gold.customer_features`: one row per customer with a purchase at or before
    the cutoff: 30 numeric features (recency, frequency, monetary value, tenure, 30/90/180-day
    activity, inter-purchase gaps, 90-day trends, and the customer's own rhythm: recency in
    units of their mean and longest gap, the spread of gaps, the share of purchases and spend in
    the last 90/180 days) from data up to the cutoff only, the first and last purchase, and the
    label `churned` (1 = no purchase within `horizon_days` after the cutoff). A view: the
    features that follow the cutoff (recency, tenure, ratios on them) are computed at read time
    over the stored columns (`gold.customer_features_stored`), of which a refresh recomputes
    from silver only the customers that can have changed (metadata `refresh`), bucket by
    bucket.""",
    config_class=FeaturesConfig,
    guard=features.guard(CUSTOMER_FEATURES),
    plan=_plan,
    piece=features.write_piece,
    commit=_commit,
)


# Checks
FEATURES_ONE_ROW_PER_CUSTOMER = "features_one_row_per_customer"
FEATURES_FINITE = "features_finite"
FEATURES_BOTH_CLASSES = "features_both_label_classes"


@dg.asset_check(
    asset=customer_features, name=FEATURES_ONE_ROW_PER_CUSTOMER, blocking=True, pool="duckdb"
)
def features_one_row_per_customer(duckdb: LakehouseDuckDB) -> dg.AssetCheckResult:
    """gold.customer_features has exactly one, non-empty, row per customer."""
    rows, distinct = query_one(
        duckdb, f"SELECT count(*), count(DISTINCT customer_id) FROM {CUSTOMER_FEATURES}"
    )
    return dg.AssetCheckResult(
        passed=rows == distinct and rows > 0,
        metadata={"rows": rows, "distinct_customers": distinct},
    )


@dg.asset_check(asset=customer_features, name=FEATURES_FINITE, blocking=True, pool="duckdb")
def features_finite(duckdb: LakehouseDuckDB) -> dg.AssetCheckResult:
    """No feature value is NULL, NaN or infinite."""
    bad = " + ".join(
        f"count(*) FILTER (WHERE {c} IS NULL OR NOT isfinite({c}::DOUBLE))" for c in FEATURE_COLUMNS
    )
    (bad_values,) = query_one(duckdb, f"SELECT {bad} FROM {CUSTOMER_FEATURES}")
    return dg.AssetCheckResult(passed=bad_values == 0, metadata={"non_finite_values": bad_values})


@dg.asset_check(asset=customer_features, name=FEATURES_BOTH_CLASSES, blocking=True, pool="duckdb")
def features_both_label_classes(duckdb: LakehouseDuckDB) -> dg.AssetCheckResult:
    """Both label classes (churned and retained) are present, so a model can be trained."""
    churned, retained = query_one(
        duckdb,
        f"SELECT count(*) FILTER (WHERE {LABEL} = 1), count(*) FILTER (WHERE {LABEL} = 0) "
        f"FROM {CUSTOMER_FEATURES}",
    )
    return dg.AssetCheckResult(
        passed=churned > 0 and retained > 0, metadata={"churned": churned, "retained": retained}
    )
