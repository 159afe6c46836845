"""The medallion layers on the sample and on hand-written files, through Dagster."""

import subprocess
import sys
from pathlib import Path

import dagster as dg
import pyarrow.parquet as pq
import pytest

from lakehouse_assets.lib.model.drift import SCORING_FEATURES_DRIFT
from lakehouse_assets.lib.sample import SAMPLE_FILE_NAME
from lakehouse_assets_tests.support.helpers import (
    DATA,
    NO_SEED,
    TABLES,
    UP_TO_GOLD,
    check_results,
    failure_messages,
    query,
    run_graph,
    scalar,
    step_starts,
    table_state,
    write_csv,
)


def test_sample_materializes_with_every_check_passing(lakehouse_home, instance):
    result = run_graph(instance, DATA)
    assert result.success, failure_messages(result)
    checks = check_results(result)
    # Compared at matching tenures, the sample's customers do not drift (docs/model-quality.md):
    # the README's first run warns about nothing.
    (drift,) = [
        e for e in result.get_asset_check_evaluations() if e.check_name == SCORING_FEATURES_DRIFT
    ]
    assert drift.passed and drift.metadata["drifted_features"].value == "none"
    assert drift.metadata["matched_share"].value > 0.5
    assert not [r for r in instance.all_logs(result.run_id) if r.level >= 30], (
        "a warning was logged"
    )
    assert len(checks) == 11 and all(checks.values()), checks
    assert (lakehouse_home / "landing" / SAMPLE_FILE_NAME).exists()
    bronze = scalar(lakehouse_home, "SELECT count(*) FROM bronze.transactions")
    silver = scalar(lakehouse_home, "SELECT count(*) FROM silver.transactions")
    rejected = scalar(lakehouse_home, "SELECT count(*) FROM silver.rejected_transactions")
    assert bronze == 10_000
    assert silver + rejected == bronze
    assert 400 <= rejected <= 600  # about 5% invalid
    reasons = {
        r
        for (r,) in query(
            lakehouse_home, "SELECT DISTINCT reason FROM silver.rejected_transactions"
        )
    }
    assert reasons == {
        "missing_customer_id",
        "bad_event_time",
        "bad_amount",
        "future_event_time",
        "duplicate",
    }
    customers = scalar(
        lakehouse_home, "SELECT count(DISTINCT customer_id) FROM silver.transactions"
    )
    gold_rows, gold_customers = query(
        lakehouse_home, "SELECT count(*), count(DISTINCT customer_id) FROM gold.customer_summary"
    )[0]
    assert gold_rows == gold_customers == customers
    feature_rows, feature_customers = query(
        lakehouse_home, "SELECT count(*), count(DISTINCT customer_id) FROM gold.customer_features"
    )[0]
    assert feature_rows == feature_customers and 0.9 * customers <= feature_rows <= customers
    silver_meta = result.asset_materializations_for_node("silver_transactions")[0].metadata
    assert silver_meta["dagster/row_count"].value == silver
    assert silver_meta["rejected_rows"].value == rejected


def test_each_invalid_row_lands_in_rejected_with_its_reason(lakehouse_home, instance):
    write_csv(
        lakehouse_home / "landing" / "hand.csv",
        """
transaction_id,customer_id,event_time,amount,quantity,note
t1,c1,2025-01-01T10:00:00Z,10.50,1,ok
t2,,2025-01-02,5,1,missing customer
t3,c1,yesterday,5,1,bad time
t4,c1,2025-01-03,-1,1,negative amount
t5,c1,2025-01-03,abc,1,non-numeric amount
t6,c2,2999-01-01,5,1,future
t1,c1,2025-01-01T10:00:00Z,10.50,1,exact duplicate of t1
t7,c2,2025-01-04 08:00:00,7,2.5,fractional quantity
t10,c2,2025-01-05,7,-1,negative quantity
t11,c3,2025-01-06,7,3.0,whole quantity written as a decimal
t8,c2,2025-02-01,7,,no quantity is fine
t9,c3,2025-03-01T12:00:00+02:00,1e2,3,offset and exponent
t12,c3, 2025-01-07 , 8.5 , 2 ,spaces around values
t13,c3,2025-01-07,nan,1,amount not a number
t14,c3,2025-01-07,1,inf,infinite quantity
t15,c3,2025-01-08,\u00a09.5,1\u00a0,non-breaking spaces from a spreadsheet
""",
    )
    result = run_graph(instance, dg.AssetSelection.groups("raw", "bronze", "silver"), NO_SEED)
    assert result.success, failure_messages(result)
    rejected = query(
        lakehouse_home,
        "SELECT transaction_id, reason FROM silver.rejected_transactions ORDER BY _source_row",
    )
    assert rejected == [
        ("t2", "missing_customer_id"),
        ("t3", "bad_event_time"),
        ("t4", "bad_amount"),
        ("t5", "bad_amount"),
        ("t6", "future_event_time"),
        ("t1", "duplicate"),
        ("t7", "bad_quantity"),
        ("t10", "bad_quantity"),
        ("t13", "bad_amount"),
        ("t14", "bad_quantity"),
    ]
    lineage = query(
        lakehouse_home,
        "SELECT _source_file, _source_row FROM silver.rejected_transactions WHERE reason = 'duplicate'",
    )
    assert lineage == [("hand.csv", 7)]  # the later copy is the rejected one
    kept = query(
        lakehouse_home,
        "SELECT transaction_id, event_time::VARCHAR, amount, quantity FROM silver.transactions "
        "ORDER BY transaction_id",
    )
    assert kept == [
        ("t1", "2025-01-01 10:00:00", 10.5, 1),
        ("t11", "2025-01-06 00:00:00", 7.0, 3),
        ("t12", "2025-01-07 00:00:00", 8.5, 2),
        ("t15", "2025-01-08 00:00:00", 9.5, 1),
        ("t8", "2025-02-01 00:00:00", 7.0, None),
        ("t9", "2025-03-01 10:00:00", 100.0, 3),
    ]
    assert scalar(
        lakehouse_home, "SELECT note FROM bronze.transactions WHERE _source_row = 12"
    ) == ("offset and exponent")


def test_rematerializing_is_idempotent_and_a_changed_file_replaces_its_rows(
    lakehouse_home, instance
):
    landing = lakehouse_home / "landing"
    rows = "\n".join(f"t{i},c{i % 7},2025-01-{1 + i % 28:02d},{i}.5" for i in range(50))
    write_csv(landing / "a.csv", "transaction_id,customer_id,event_time,amount\n" + rows)
    write_csv(landing / "b.csv", "customer_id,event_time,amount\nc1,2025-03-01,3\nc1,2025-03-01,3")
    assert run_graph(instance, UP_TO_GOLD, NO_SEED).success
    first = table_state(lakehouse_home, TABLES[:4])
    assert first["bronze.transactions"][0] == 52
    assert scalar(lakehouse_home, "SELECT count(*) FROM silver.rejected_transactions") == 1

    second = run_graph(instance, UP_TO_GOLD, NO_SEED)
    assert second.success, failure_messages(second)
    assert table_state(lakehouse_home, TABLES[:4]) == first
    bronze_meta = second.asset_materializations_for_node("bronze_transactions")[0].metadata
    assert bronze_meta["files_skipped"].value == 2 and bronze_meta["rows_loaded"].value == 0

    write_csv(
        landing / "b.csv",
        "customer_id,event_time,amount\nc9,2025-04-01,4\nc9,2025-04-02,5\nc9,2025-04-03,6",
    )
    third = run_graph(instance, UP_TO_GOLD, NO_SEED)
    assert third.success, failure_messages(third)
    assert scalar(lakehouse_home, "SELECT count(*) FROM bronze.transactions") == 53
    assert query(
        lakehouse_home,
        "SELECT customer_id, count(*) FROM bronze.transactions WHERE _source_file = 'b.csv' GROUP BY 1",
    ) == [("c9", 3)]
    assert scalar(lakehouse_home, "SELECT count(*) FROM silver.rejected_transactions") == 0


def test_bad_files_fail_with_a_clear_message_and_change_nothing(lakehouse_home, instance):
    landing = lakehouse_home / "landing"
    assert run_graph(instance, DATA).success
    before = table_state(lakehouse_home)
    bad_files = {
        "no_amount.csv": (
            "customer_id,event_time\nc1,2025-01-01\n",
            "lacks required column(s) amount",
        ),
        "broken.parquet": ("this is not parquet", "cannot be read as Parquet"),
        "empty.csv": ("", "is empty"),
        "header_only.csv": ("customer_id,event_time,amount\n", "holds no rows"),
    }
    # A good file lands beside each bad one: it must not be half-loaded either.
    write_csv(landing / "good.csv", "customer_id,event_time,amount\nc1,2025-06-01,5")
    for name, (content, expected) in bad_files.items():
        path = landing / name
        path.write_text(content)
        result = run_graph(instance, DATA)
        assert not result.success
        message = failure_messages(result)
        assert str(path) in message and expected in message, message
        assert table_state(lakehouse_home) == before
        path.unlink()
    assert run_graph(instance, DATA).success
    assert scalar(lakehouse_home, "SELECT count(*) FROM bronze.transactions") == 10_001


def test_a_copy_under_another_name_adds_only_rejected_duplicates(lakehouse_home, instance):
    landing = lakehouse_home / "landing"
    rows = "\n".join(f"t{i},c{i % 3},2025-01-{1 + i:02d},{i}" for i in range(20))
    write_csv(landing / "a.csv", "transaction_id,customer_id,event_time,amount\n" + rows)
    assert run_graph(instance, UP_TO_GOLD, NO_SEED).success
    silver_before = table_state(lakehouse_home, ("silver.transactions", "gold.customer_summary"))
    (landing / "a_copy.csv").write_bytes((landing / "a.csv").read_bytes())
    assert run_graph(instance, UP_TO_GOLD, NO_SEED).success
    assert scalar(lakehouse_home, "SELECT count(*) FROM bronze.transactions") == 40
    assert table_state(lakehouse_home, ("silver.transactions", "gold.customer_summary")) == (
        silver_before
    )
    assert query(
        lakehouse_home,
        "SELECT _source_file, reason, count(*) FROM silver.rejected_transactions GROUP BY ALL",
    ) == [("a_copy.csv", "duplicate", 20)]


def test_features_see_nothing_after_the_cutoff(lakehouse_home, instance):
    """Transactions after the cutoff may change labels, never features."""
    landing = lakehouse_home / "landing"
    rows = [f"c{c},2025-01-{d:02d},{c + d}" for c in range(6) for d in (1, 5, 9)]
    rows += ["c0,2025-06-30,1", "c1,2025-06-30,1"]  # sets the latest event: cutoff = 2025-04-01
    write_csv(landing / "early.csv", "customer_id,event_time,amount\n" + "\n".join(rows))
    assert run_graph(instance, DATA, NO_SEED).success
    features_sql = "SELECT * EXCLUDE (churned) FROM gold.customer_features ORDER BY customer_id"
    before = query(lakehouse_home, features_sql)
    labels_before = dict(
        query(lakehouse_home, "SELECT customer_id, churned FROM gold.customer_features")
    )
    write_csv(
        landing / "late.csv", "customer_id,event_time,amount\nc2,2025-05-01,999\nc3,2025-04-02,5"
    )
    assert run_graph(instance, DATA, NO_SEED).success
    assert query(lakehouse_home, features_sql) == before
    labels_after = dict(
        query(lakehouse_home, "SELECT customer_id, churned FROM gold.customer_features")
    )
    assert labels_before["c2"] == 1 and labels_after["c2"] == 0 and labels_after["c3"] == 0
    assert labels_after["c0"] == 0 and labels_after["c4"] == 1


def test_sample_command_is_reproducible(tmp_path):
    for out in ("one", "two"):
        subprocess.run(
            [sys.executable, "-m", "lakehouse_assets.sample", "--events", "5000", "--customers", "400",
             "--out", str(tmp_path / out)],
            check=True, capture_output=True,
        )  # fmt: skip
    one, two = (pq.read_table(tmp_path / out / SAMPLE_FILE_NAME) for out in ("one", "two"))
    assert one.num_rows == 5000 and one.equals(two)
    assert len(set(one.column("customer_id").drop_null().to_pylist())) <= 400


def test_definitions_validate():
    completed = subprocess.run(
        [sys.executable, "-m", "dagster", "definitions", "validate", "-m", "lakehouse_assets"],
        capture_output=True, text=True, cwd=Path(__file__).parents[2],
    )  # fmt: skip
    assert completed.returncode == 0, completed.stdout + completed.stderr


def test_rhythm_features_by_hand(lakehouse_home, instance):
    """Gaps and shares for a customer with three purchases, and finite values with one."""
    rows = [
        "a,2025-01-21,30",  # 70 days before the cutoff (2025-04-01)
        "a,2025-03-02,20",  # 30 days: gaps 40 and 20 days
        "a,2025-03-22,10",  # 10 days
        "b,2025-02-15,5",  # one purchase, 45 days before
        "z,2025-06-30,1",  # sets the latest event: cutoff = 2025-04-01
    ]
    write_csv(
        lakehouse_home / "landing" / "r.csv", "customer_id,event_time,amount\n" + "\n".join(rows)
    )
    result = run_graph(instance, DATA, NO_SEED)
    assert check_results(result)["features_finite"], failure_messages(result)
    columns = (
        "recency_to_mean_gap, recency_to_max_gap, max_gap_days, gap_std_days, gap_cv, "
        "txn_share_90d, txn_share_180d, amount_share_90d, amount_share_180d"
    )
    features = {
        customer: values
        for customer, *values in query(
            lakehouse_home, f"SELECT customer_id, {columns} FROM gold.customer_features"
        )
    }
    std = 200**0.5  # sample standard deviation of (40, 20)
    expected_a = [10 / 30, 10 / 40, 40, std, std / 30, 1.0, 1.0, 1.0, 1.0]
    assert features["a"] == [pytest.approx(v) for v in expected_a]
    assert features["b"] == [1.0, 1.0, 0, 0, 0, 1.0, 1.0, 1.0, 1.0]


def test_a_first_build_out_of_order_names_the_asset_to_materialize_first(lakehouse_home, instance):
    result = run_graph(instance, dg.AssetSelection.assets("silver_transactions"))
    assert not result.success
    message = failure_messages(result)
    assert "bronze.transactions does not exist yet: materialize bronze_transactions" in message
    assert "Catalog Error" not in message.splitlines()[0]
    assert step_starts(result, "silver_transactions.plan_silver_transactions") == 1
    # With bronze built (its schema exists), DuckDB names the table without its schema.
    assert run_graph(instance, "*bronze_transactions").success
    result = run_graph(instance, dg.AssetSelection.assets("gold_customer_summary"))
    assert not result.success
    assert "does not exist yet: materialize silver_transactions" in failure_messages(result)
    assert step_starts(result, "gold_customer_summary.plan_gold_customer_summary") == 1
