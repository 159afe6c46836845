"""The whole graph on 1,000,000 transactions: correct at size (speed is the benchmark's job)."""

import pytest

from lakehouse_assets.lib.model.drift import SCORING_FEATURES_DRIFT
from lakehouse_assets.lib.sample import write_sample
from lakehouse_assets_tests.support.helpers import check_results, failure_messages, query, run_graph

EVENTS = 1_000_000
CUSTOMERS = 100_000
REASONS = {"missing_customer_id", "bad_event_time", "bad_amount", "future_event_time", "duplicate"}


@pytest.mark.large
def test_a_million_transactions_flow_through_every_layer(lakehouse_home, instance):
    write_sample(lakehouse_home / "landing", EVENTS, CUSTOMERS)
    result = run_graph(instance)
    assert result.success, failure_messages(result)
    checks = check_results(result)
    checks.pop(SCORING_FEATURES_DRIFT)  # WARN only; the sample's cohort ages
    assert len(checks) == 14 and all(checks.values()), checks

    (bronze, silver, rejected, ids, customers) = query(
        lakehouse_home,
        "SELECT (SELECT count(*) FROM bronze.transactions), count(*),"
        " (SELECT count(*) FROM silver.rejected_transactions),"
        " count(DISTINCT transaction_id), count(DISTINCT customer_id) FROM silver.transactions",
    )[0]
    assert bronze == EVENTS
    assert silver + rejected == bronze  # conservation
    assert ids == silver  # no transaction twice
    assert 0.045 * EVENTS <= rejected <= 0.055 * EVENTS
    assert 0.9 * CUSTOMERS <= customers <= CUSTOMERS
    by_reason = dict(
        query(
            lakehouse_home, "SELECT reason, count(*) FROM silver.rejected_transactions GROUP BY 1"
        )
    )
    assert set(by_reason) == REASONS and min(by_reason.values()) > 0.15 * rejected / len(REASONS)

    gold_rows, gold_transactions = query(
        lakehouse_home, "SELECT count(*), sum(transaction_count) FROM gold.customer_summary"
    )[0]
    assert gold_rows == customers and gold_transactions == silver
    features, churned = query(
        lakehouse_home, "SELECT count(*), avg(churned) FROM gold.customer_features"
    )[0]
    assert 0.9 * customers <= features <= customers and 0.2 < churned < 0.5
    assert frequency_mismatches(lakehouse_home, result) == 0

    model = result.asset_materializations_for_node("churn_model")[0].metadata
    assert model["train_rows"].value == 25_000  # the default cap
    evaluation = result.asset_materializations_for_node("churn_model_evaluation")[0].metadata
    assert evaluation["roc_auc"].value > 0.85
    registered = result.asset_materializations_for_node("registered_churn_model")[0].metadata
    assert registered["version"].value == "1" and registered["champion"].value is True

    # One refresh: a day's file lands; silver appends it and gold recomputes its customers only.
    day = "".join(f"day2-{i},C{i:08d},2025-12-31T12:00:00Z,{10 + i % 7}.5\n" for i in range(1_000))
    (lakehouse_home / "landing" / "day2.csv").write_text(
        "transaction_id,customer_id,event_time,amount\n" + day
    )
    refresh = run_graph(instance)
    assert refresh.success, failure_messages(refresh)
    checks = check_results(refresh)
    checks.pop(SCORING_FEATURES_DRIFT)
    assert all(checks.values()), checks
    silver_meta = refresh.asset_materializations_for_node("silver_transactions")[0].metadata
    gold_meta = refresh.asset_materializations_for_node("gold_customer_summary")[0].metadata
    assert silver_meta["refresh"].value == "append" and gold_meta["refresh"].value == "append"
    assert gold_meta["customers_recomputed"].value == 1_000
    assert query(lakehouse_home, "SELECT count(*) FROM silver.transactions")[0][0] == silver + 1_000
    # Both feature tables recompute only the customers that can have changed.
    for node in ("customer_features", "scoring_features"):
        meta = refresh.asset_materializations_for_node(node)[0].metadata
        assert meta["refresh"].value == "append", meta["refresh_reason"].value
        assert 1_000 <= meta["customers_recomputed"].value < meta["dagster/row_count"].value / 4
    assert frequency_mismatches(lakehouse_home, refresh) == 0
    assert query(lakehouse_home, "SELECT count(*) FROM gold.churn_scores")[0][0] == features_scored(
        lakehouse_home
    )


def frequency_mismatches(home, result) -> int:
    """Customers whose feature `frequency` is not their count of transactions at or before the
    run's cutoff (features count only those)."""
    cutoff = result.asset_materializations_for_node("customer_features")[0].metadata["cutoff"].value
    return query(
        home,
        "SELECT count(*) FROM gold.customer_features f FULL JOIN ("
        "  SELECT customer_id, count(*) AS n FROM silver.transactions"
        "  WHERE event_time <= $cutoff::TIMESTAMP GROUP BY customer_id) s USING (customer_id)"
        " WHERE f.frequency IS DISTINCT FROM s.n",
        {"cutoff": cutoff},
    )[0][0]


def features_scored(home) -> int:
    return query(home, "SELECT count(*) FROM gold.scoring_features")[0][0]
