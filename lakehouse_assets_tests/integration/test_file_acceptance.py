"""Per-file acceptance: a misread file fails the run naming it and the likely cause, a file with
many rejects warns, and every file's rows are counted in `silver.file_acceptance`."""

import dagster as dg

from lakehouse_assets.defs.silver.silver_transactions import (
    LANDED_FILES_READABLE,
    NEW_FILES_MOSTLY_ACCEPTED,
    SilverConfig,
)
from lakehouse_assets.lib.acceptance import FileAcceptance, header_hint, hints
from lakehouse_assets_tests.support.helpers import (
    DATA,
    NO_SEED,
    check_results,
    failure_messages,
    lake_conn,
    query,
    run_graph,
    scalar,
    table_state,
    write_csv,
)

UP_TO_SILVER = dg.AssetSelection.groups("raw", "bronze", "silver")
DOWNSTREAM = ("silver.transactions", "gold.customer_summary", "gold.customer_features")
EUROPEAN_CSV = """
customer_id;event_time;amount;quantity
eu1;2025-06-01 10:00:00;12,50;1
eu2;2025-06-02 11:00:00;3,99;2
eu3;2025-06-03 12:00:00;100,00;1
"""


def check_descriptions(result: dg.ExecuteInProcessResult) -> dict[str, str]:
    return {e.check_name: e.description or "" for e in result.get_asset_check_evaluations()}


def test_a_misread_file_fails_the_run_naming_it_and_changes_no_downstream_table(
    lakehouse_home, instance
):
    assert run_graph(instance, DATA).success  # the sample, in the default landing folder
    before = table_state(lakehouse_home, DOWNSTREAM)
    write_csv(lakehouse_home / "landing" / "sales_eu.csv", EUROPEAN_CSV)

    failed = run_graph(instance, DATA)

    assert not failed.success
    assert check_results(failed)[LANDED_FILES_READABLE] is False
    message = check_descriptions(failed)[LANDED_FILES_READABLE]
    assert "sales_eu.csv" in message and "Decimal commas?" in message, message
    assert "bad_amount 3 (e.g. '12,50' in data row 1)" in message, message
    assert table_state(lakehouse_home, DOWNSTREAM) == before
    # Nothing is lost: the file's rows are in bronze and in the rejects, and rows are conserved.
    assert query(
        lakehouse_home,
        "SELECT reason, count(*) FROM silver.rejected_transactions "
        "WHERE _source_file = 'sales_eu.csv' GROUP BY ALL",
    ) == [("bad_amount", 3)]
    assert scalar(lakehouse_home, "SELECT count(*) FROM bronze.transactions") == scalar(
        lakehouse_home,
        "SELECT (SELECT count(*) FROM silver.transactions) + "
        "(SELECT count(*) FROM silver.rejected_transactions)",
    )
    # A rerun fails again while the file is in the landing folder: nothing passes silently.
    again = run_graph(instance, DATA)
    assert not again.success
    assert "sales_eu.csv" in check_descriptions(again)[LANDED_FILES_READABLE]
    assert table_state(lakehouse_home, DOWNSTREAM) == before
    # Fixed and landed under the same name, the file replaces its rows and is accepted.
    write_csv(lakehouse_home / "landing" / "sales_eu.csv", EUROPEAN_CSV.replace(",", "."))
    fixed = run_graph(instance, DATA)
    assert fixed.success, failure_messages(fixed)
    assert query(
        lakehouse_home,
        "SELECT rows, accepted, rejected FROM silver.file_acceptance WHERE source_file = 'sales_eu.csv'",
    ) == [(3, 3, 0)]


def test_a_misread_file_removed_from_the_landing_folder_stays_in_bronze_as_history(
    lakehouse_home, instance
):
    assert run_graph(instance, DATA).success
    misread = write_csv(lakehouse_home / "landing" / "sales_eu.csv", EUROPEAN_CSV)
    assert not run_graph(instance, DATA).success
    misread.unlink()

    result = run_graph(instance, DATA)

    assert result.success, failure_messages(result)
    assert check_results(result)[LANDED_FILES_READABLE] is True
    assert (
        scalar(
            lakehouse_home,
            "SELECT count(*) FROM silver.rejected_transactions WHERE _source_file = 'sales_eu.csv'",
        )
        == 3
    )


def test_a_file_with_a_fifth_of_its_rows_rejected_warns_naming_it(lakehouse_home, instance):
    assert run_graph(instance, DATA).success
    rows = [
        f"w{i},2025-07-{1 + i % 28:02d} 10:00:00,{'n/a' if i % 5 == 0 else '9.5'}"
        for i in range(50)
    ]
    write_csv(
        lakehouse_home / "landing" / "some_bad.csv",
        "customer_id,event_time,amount\n" + "\n".join(rows),
    )

    result = run_graph(instance, DATA)

    assert result.success, failure_messages(result)
    checks = check_results(result)
    assert checks[LANDED_FILES_READABLE] is True and checks[NEW_FILES_MOSTLY_ACCEPTED] is False
    warning = check_descriptions(result)[NEW_FILES_MOSTLY_ACCEPTED]
    assert "some_bad.csv 20%" in warning and "bad_amount 10 (e.g. 'n/a'" in warning, warning
    assert query(
        lakehouse_home,
        "SELECT rows, accepted, rejected, invalid FROM silver.file_acceptance "
        "WHERE source_file = 'some_bad.csv'",
    ) == [(50, 40, 10, 10)]


def test_a_full_rebuild_keeps_when_each_file_was_first_seen(lakehouse_home, instance):
    assert run_graph(instance, DATA).success
    write_csv(
        lakehouse_home / "landing" / "later.csv",
        "customer_id,event_time,amount\nl1,2025-08-01 10:00:00,5",
    )
    assert run_graph(instance, DATA).success
    sql = "SELECT source_file, first_load_id, rows, accepted FROM silver.file_acceptance ORDER BY 1"
    incremental = query(lakehouse_home, sql)
    assert [row[:2] for row in incremental] == [
        ("later.csv", 2),
        ("sample_transactions.parquet", 1),
    ]

    full = run_graph(instance, DATA, dg.RunConfig(ops={"silver_transactions": SilverConfig(full_refresh=True)}))  # fmt: skip

    assert full.success, failure_messages(full)
    assert query(lakehouse_home, sql) == incremental  # re-counted, and nothing is new
    assert check_descriptions(full)[NEW_FILES_MOSTLY_ACCEPTED].startswith("0 new file(s)")


def test_a_file_without_a_header_row_fails_in_bronze_with_a_hint(lakehouse_home, instance):
    write_csv(lakehouse_home / "landing" / "no_header.csv", "c1,2025-06-01,5\nc2,2025-06-02,7")
    result = run_graph(instance, DATA)
    assert not result.success
    assert "A header row?" in failure_messages(result)


def test_a_copy_of_a_file_with_a_bad_row_only_warns(lakehouse_home, instance):
    """A copy is read right: its rows are valid copies (and the original's one bad row)."""
    rows = "\n".join(f"t{i},c{i % 3},2025-03-{1 + i:02d},{i}" for i in range(9))
    text = "transaction_id,customer_id,event_time,amount\n" + rows + "\nt9,c0,2025-03-20,-5"
    write_csv(lakehouse_home / "landing" / "sales.csv", text)
    write_csv(lakehouse_home / "landing" / "sub" / "sales_copy.csv", text)

    result = run_graph(instance, UP_TO_SILVER, NO_SEED)

    assert result.success, failure_messages(result)
    checks = check_results(result)
    assert checks[LANDED_FILES_READABLE] is True and checks[NEW_FILES_MOSTLY_ACCEPTED] is False
    assert "sub/sales_copy.csv 100%" in check_descriptions(result)[NEW_FILES_MOSTLY_ACCEPTED]


def test_the_example_is_the_first_offending_value_even_when_empty(lakehouse_home, instance):
    write_csv(
        lakehouse_home / "landing" / "gaps.csv",
        "customer_id,event_time,amount\nc1,2025-03-01,\nc2,2025-03-02,12;50\nc3,2025-03-03,7",
    )
    result = run_graph(instance, UP_TO_SILVER, NO_SEED)
    assert result.success, failure_messages(result)
    (rejects,) = query(
        lakehouse_home,
        "SELECT rejects FROM silver.file_acceptance WHERE source_file = 'gaps.csv'",
    )[0]
    assert rejects == [{"reason": "bad_amount", "rows": 2, "first_row": 1, "example": ""}]


def test_a_lakehouse_built_before_per_file_acceptance_rebuilds_silver_once(
    lakehouse_home, instance
):
    assert run_graph(instance, DATA).success
    with lake_conn(lakehouse_home, read_only=False) as conn:
        conn.execute("DROP TABLE silver.file_acceptance")

    result = run_graph(instance, DATA)

    assert result.success, failure_messages(result)
    metadata = result.asset_materializations_for_node("silver_transactions")[0].metadata
    assert metadata["refresh"].value == "full"
    assert "silver.file_acceptance has not been built yet" in metadata["refresh_reason"].value


def acceptance_of(**examples: str) -> FileAcceptance:
    rejects = [
        {"reason": reason, "rows": 1, "first_row": 1, "example": example}
        for reason, example in examples.items()
    ]
    return FileAcceptance("f.csv", len(rejects), 0, len(rejects), len(rejects), rejects)


def test_hints_name_the_likely_cause():
    assert hints(acceptance_of(bad_amount="12,50"))[0].startswith("Decimal commas?")
    assert hints(acceptance_of(bad_amount="1.234,50"))[0].startswith("Decimal commas?")
    assert hints(acceptance_of(bad_amount="12;50"))[0].startswith("Semicolons?")
    assert hints(acceptance_of(bad_event_time="event_time"))[0].startswith("A header row")
    assert hints(acceptance_of(bad_event_time="31/01/2025"))[0].startswith("Day-first dates?")
    assert hints(acceptance_of(bad_event_time="1735689600"))[0].startswith("Epoch numbers?")
    assert hints(acceptance_of(bad_amount="n/a", duplicate="t1")) == []
    assert header_hint(["customer_id;event_time;amount"]).startswith(" Semicolons?")
    assert header_hint(["c1", "2025-06-01", "5"]).startswith(" A header row?")
    assert header_hint(["customer", "when"]) == ""
