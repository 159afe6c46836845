"""DuckDB's memory limit: derived from the machine's memory, configurable, and a clear failure."""

import dagster as dg
import duckdb
import pytest

from lakehouse_assets.defs.silver.silver_transactions import SilverConfig
from lakehouse_assets.lib.resources import (
    MEMORY_FLOOR_BYTES,
    LakehouseDuckDB,
    available_memory_bytes,
    derived_memory_limit,
)
from lakehouse_assets.lib.settings import MEMORY_LIMIT_ENV
from lakehouse_assets_tests.support.helpers import failure_messages, run_graph

GiB = 1024**3
SILVER_FULL = dg.RunConfig(ops={"silver_transactions": SilverConfig(full_refresh=True)})


def duckdb_setting(limit: str) -> str:
    """How DuckDB reports `limit` once set (it normalises units)."""
    with duckdb.connect() as conn:
        conn.execute("SET memory_limit = $limit", {"limit": limit})
        return conn.execute("SELECT current_setting('memory_limit')").fetchone()[0]


def connection_limit(resource: LakehouseDuckDB) -> str:
    with resource.get_connection() as conn:
        return conn.execute("SELECT current_setting('memory_limit')").fetchone()[0]


def test_the_limit_is_a_share_of_memory_with_a_floor():
    assert derived_memory_limit(2 * GiB) == "1024MiB"  # the floor
    assert derived_memory_limit(24 * GiB) == "1536MiB"  # 1/16
    assert derived_memory_limit(256 * GiB) == "16384MiB"
    assert available_memory_bytes() >= MEMORY_FLOOR_BYTES


def test_the_limit_is_derived_unless_configured(lakehouse_home, monkeypatch):
    derived = connection_limit(LakehouseDuckDB())
    assert derived == duckdb_setting(derived_memory_limit())
    monkeypatch.setenv(MEMORY_LIMIT_ENV, "2GB")
    assert connection_limit(LakehouseDuckDB()) == duckdb_setting("2GB")
    assert connection_limit(LakehouseDuckDB(memory_limit="3GB")) == duckdb_setting("3GB")


def test_out_of_memory_names_the_setting_to_raise(lakehouse_home):
    resource = LakehouseDuckDB(memory_limit="32MB", threads=1)
    with pytest.raises(dg.Failure) as failure:
        with resource.get_connection() as conn:  # list() keeps every value: it cannot spill
            conn.execute("SELECT list(i) FROM range(50000000) r(i)").fetchall()
    message = str(failure.value)
    assert "memory_limit = 32MB (the duckdb resource's memory_limit)" in message
    assert f"set {MEMORY_LIMIT_ENV}" in message and "Out of Memory Error" in message
    assert "SET memory_limit" not in message  # DuckDB's advice is not ours to give
    assert failure.value.metadata["memory_limit"].value == "32MB"


def test_a_run_out_of_memory_fails_with_the_setting_in_its_message(
    lakehouse_home, instance, monkeypatch
):
    data = dg.AssetSelection.assets(
        "raw_transactions", "bronze_transactions", "silver_transactions"
    )
    assert run_graph(instance, data).success
    monkeypatch.setenv(MEMORY_LIMIT_ENV, "1MB")
    result = run_graph(instance, dg.AssetSelection.assets("silver_transactions"), SILVER_FULL)
    assert not result.success
    message = failure_messages(result)
    assert f"memory_limit = 1MB (${MEMORY_LIMIT_ENV})" in message, message
