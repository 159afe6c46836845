"""Which lakehouse table a DuckDB "does not exist" error is about."""

from lakehouse_assets.lib import tables


def test_a_qualified_name_is_found():
    message = 'Catalog Error: Table with name "gold.churn_scores" does not exist!'
    assert tables.missing_table(message, exists=lambda t: False) == tables.CHURN_SCORES


def test_an_unqualified_name_is_the_candidate_that_is_missing():
    message = "Catalog Error: Table with name transactions does not exist!"
    silver_missing = {tables.BRONZE_TRANSACTIONS}.__contains__
    assert tables.missing_table(message, exists=silver_missing) == tables.SILVER_TRANSACTIONS
    bronze_missing = {tables.SILVER_TRANSACTIONS}.__contains__
    assert tables.missing_table(message, exists=bronze_missing) == tables.BRONZE_TRANSACTIONS


def test_other_errors_and_other_tables_name_none():
    assert tables.missing_table("Binder Error: column x not found", exists=lambda t: False) is None
    message = "Catalog Error: Table with name scratch does not exist!"
    assert tables.missing_table(message, exists=lambda t: False) is None
