"""The pandas layers of the benchmark (`benchmarks.bench_pandas`) do the pipeline's work:
on the built-in sample plus a file of edge cases, the same silver and rejected rows, the same
gold summary and the same training features and labels, to a float tolerance."""

from pathlib import Path

import dagster as dg
import duckdb
import pandas as pd
from dagster_duckdb_pandas import DuckDBPandasIOManager

from benchmarks import bench_pandas
from lakehouse_assets.lib.resources import LandingZone
from lakehouse_assets.lib.sample import write_sample
from lakehouse_assets_tests.support.helpers import failure_messages, lake_conn, run_graph

PIPELINE = dg.AssetSelection.assets(
    "raw_transactions",
    "bronze_transactions",
    "silver_transactions",
    "gold_customer_summary",
    "customer_features",
)
# Rows the sample does not have: spaces to trim, other time forms (offset, date, space), bad and
# fractional quantities, non-finite amounts, missing and repeated ids, and records without an id
# (two equal ones, then one that differs).
EDGE_CASES = """
transaction_id,customer_id,event_time,amount,quantity
E1, C00000001 ,2025-06-01 10:00:00, 12.5 ,2
E2,C00000002,2025-06-02T10:00:00+02:00,10,
E3,C00000003,2025-06-03,1e2,3.0
E4,C00000004,2025-06-04T10:00:00,20,1.5
E5,C00000005,2025-06-05T10:00:00,20,-1
E6,C00000006,2025-06-06T10:00:00,inf,1
E7,   ,2025-06-07T10:00:00,5,1
E8,C00000008,2099-01-01T00:00:00,5,1
E1,C00000009,2025-06-09T10:00:00,7,1
,C00000010,2025-06-10T10:00:00,8,1
,C00000010,2025-06-10T10:00:00,8,1
 ,C00000010,2025-06-10T10:00:00,9,1
,C09999999,2025-06-11T10:00:00,8,
"""


def table(database: Path, sql: str) -> pd.DataFrame:
    """`sql` on the pandas reference's DuckDB file, or on the lake of the lakehouse `database`."""
    if database.is_dir():
        with lake_conn(database) as conn:
            return conn.execute(sql).fetchdf()
    with duckdb.connect(str(database), read_only=True) as conn:
        return conn.execute(sql).fetchdf()


def test_pandas_layers_match_the_pipeline(lakehouse_home, instance):
    landing = lakehouse_home / "landing"
    write_sample(landing)
    (landing / "edge_cases.csv").write_text(EDGE_CASES.strip() + "\n")
    result = run_graph(instance, PIPELINE)
    assert result.success, failure_messages(result)
    pandas_db = lakehouse_home / bench_pandas.DATABASE_FILE
    pandas_result = dg.materialize(
        bench_pandas.defs.assets,
        resources={
            "landing": LandingZone(),
            "io_manager": DuckDBPandasIOManager(database=str(pandas_db)),
        },
        instance=instance,
    )
    assert pandas_result.success
    pipeline_db = lakehouse_home

    # Silver and rejected: the same rows (by lineage), typed alike, rejected for the same reason.
    key = ["_source_file", "_source_row"]
    typed = ["transaction_id", "customer_id", "event_time", "amount", "quantity"]
    ours = table(pipeline_db, "SELECT * FROM silver.transactions").sort_values(key)
    theirs = table(pandas_db, "SELECT * FROM silver.silver_transactions").sort_values(key)
    assert len(ours) > 9_000
    pd.testing.assert_frame_equal(
        ours[key + typed].reset_index(drop=True),
        theirs[key + typed].reset_index(drop=True),
        check_dtype=False,
    )
    reasons = "SELECT _source_file, _source_row, reason, amount FROM {} ORDER BY 1, 2"
    rejected = table(pipeline_db, reasons.format("silver.rejected_transactions"))
    assert set(rejected["reason"]) == {"missing_customer_id", "bad_event_time", "bad_quantity",
                                       "future_event_time", "bad_amount", "duplicate"}  # fmt: skip
    pd.testing.assert_frame_equal(
        rejected, table(pandas_db, reasons.format("silver.rejected_transactions"))
    )

    # Gold: one row per customer, the same summary (a sum of no quantities is NULL in both). The
    # pipeline's tables also hold each customer's bucket, which the pandas layers do not split by.
    summary = "SELECT * REPLACE (total_quantity::DOUBLE AS total_quantity) FROM {} ORDER BY 1"
    no_bucket = "SELECT * EXCLUDE (bucket) REPLACE (total_quantity::DOUBLE AS total_quantity) FROM {} ORDER BY 1"
    pd.testing.assert_frame_equal(
        table(pipeline_db, no_bucket.format("gold.customer_summary")),
        table(pandas_db, summary.format("gold.gold_customer_summary")),
        check_dtype=False,
        rtol=1e-9,
    )

    # Features: the same customers, labels and 30 features (sums may add in another order).
    ordered = "SELECT * FROM {} ORDER BY customer_id"
    features = table(
        pipeline_db, "SELECT * EXCLUDE (bucket) FROM gold.customer_features ORDER BY customer_id"
    )
    assert len(features) > 900 and 0 < features["churned"].mean() < 1
    pd.testing.assert_frame_equal(
        features,
        table(pandas_db, ordered.format("gold.customer_features")),
        check_dtype=False,
        rtol=1e-9,
    )
