"""The lake: DuckLake with the packages' extensions, one named snapshot per asset write, commit
conflicts retried, settings checked, and a pre-DuckLake file migrated by one command."""

import json
import os
import subprocess
import sys

import dagster as dg
import duckdb
import pytest

import lakehouse_assets
from lakehouse_assets.lib import lake, migration, settings
from lakehouse_assets.lib.migration_export import exact_column
from lakehouse_assets.lib.resources import LakehouseDuckDB, transaction
from lakehouse_assets.lib.tables import WRITTEN_BY
from lakehouse_assets_tests.support.helpers import (
    failure_messages,
    home_location,
    lake_conn,
    lake_resource,
    query,
    run_graph,
)

DATA = dg.AssetSelection.groups("raw", "bronze", "silver", "gold", "features")
DATA_ASSETS = sorted(set(WRITTEN_BY.values()) - {"churn_scores", "churn_scores_outcomes"})


def table_digests(conn) -> dict[str, tuple]:
    """Rows and an order-independent content hash of every table and view of the lake."""
    names = conn.execute(
        "SELECT table_schema || '.' || table_name FROM information_schema.tables "
        "WHERE table_catalog = current_database() ORDER BY 1"
    ).fetchall()
    return {
        name: conn.execute(f"SELECT count(*), sum(hash(t)::HUGEINT) FROM {name} AS t").fetchone()
        for (name,) in names
    }


def test_extensions_come_from_the_installed_packages_with_signature_checks_on(lakehouse_home):
    with lake_conn(lakehouse_home, read_only=False) as conn:
        assert conn.execute("SELECT current_setting('allow_unsigned_extensions')").fetchone()[0] is False  # fmt: skip
        assert conn.execute("SELECT current_setting('autoinstall_known_extensions')").fetchone()[0] is False  # fmt: skip
        rows = conn.execute(
            "SELECT extension_name, loaded, install_path, installed_from FROM duckdb_extensions() "
            "WHERE installed AND install_mode = 'CUSTOM_PATH'"
        ).fetchall()
    found = {name: (loaded, path, source) for name, loaded, path, source in rows}
    for name, package in (
        ("ducklake", "ducklake"),
        ("sqlite_scanner", "sqlite"),
        ("postgres_scanner", "postgres"),
        ("httpfs", "httpfs"),
    ):
        loaded, path, source = found[name]
        assert loaded == (name in ("ducklake", "sqlite_scanner"))  # the others load when needed
        assert source == str(lake.extension_file(package))  # the wheel's binary
        assert path.startswith(str(lakehouse_home / "duckdb_extensions"))  # not ~/.duckdb


def test_every_asset_write_is_one_snapshot_named_after_the_asset_and_its_run(
    lakehouse_home, instance
):
    result = run_graph(instance, DATA)
    assert result.success, failure_messages(result)
    snapshots = query(
        lakehouse_home,
        "SELECT commit_message, commit_extra_info, changes FROM lake.snapshots() ORDER BY 1",
    )
    named = [message for message, _, _ in snapshots if message]
    for asset in DATA_ASSETS:
        assert named.count(f"asset {asset}, Dagster run {result.run_id}") == 1, (asset, named)
    for message, _, changes in snapshots:  # the rest only created schemas
        assert message or set(changes) == {"schemas_created"}, (message, changes)
    assert (lakehouse_home / "catalog.sqlite").is_file()
    parquet = list((lakehouse_home / "lake").rglob("*.parquet"))
    assert parquet and not (lakehouse_home / "lakehouse.duckdb").exists()


@dg.asset
def conflicted_write(context: dg.AssetExecutionContext, duckdb: LakehouseDuckDB) -> None:
    """Deletes a row; on its first try another writer commits to the same table meanwhile."""
    with duckdb.get_connection() as conn, transaction(conn):
        conn.execute("DELETE FROM gold.conflict WHERE id = 1")
        if context.retry_number == 0:
            other = duckdb_instance(duckdb.location())
            other.execute("DELETE FROM gold.conflict WHERE id = 2")  # commits first
            other.close()


def duckdb_instance(location: lake.LakeLocation) -> duckdb.DuckDBPyConnection:
    """A second DuckDB instance on the same lake, as another process would have."""
    return lake._open(location, read_only=False)


def test_a_commit_that_conflicts_with_another_writer_runs_the_step_again(lakehouse_home, instance):
    with lake_conn(lakehouse_home, read_only=False) as conn:
        conn.execute("CREATE SCHEMA gold")
        conn.execute("CREATE TABLE gold.conflict AS SELECT range AS id FROM range(5)")
    result = dg.materialize(
        [conflicted_write],
        resources={"duckdb": lake_resource(lakehouse_home)},
        instance=instance,
        raise_on_error=False,
    )
    assert result.success, failure_messages(result)
    starts = [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_UP_FOR_RETRY]
    assert len(starts) == 1
    logs = [e.message for e in instance.all_logs(result.run_id) if e.message]
    assert any("conflicted with another writer" in m and "nothing was written" in m for m in logs)
    assert query(lakehouse_home, "SELECT id FROM gold.conflict ORDER BY id") == [(0,), (3,), (4,)]


def test_outside_dagster_a_conflict_fails_naming_it_and_writes_nothing(lakehouse_home):
    location = home_location(lakehouse_home)
    with lake_conn(lakehouse_home, read_only=False) as conn:
        conn.execute("CREATE SCHEMA gold")
        conn.execute("CREATE TABLE gold.conflict AS SELECT range AS id FROM range(5)")
        with pytest.raises(dg.Failure, match="another writer committed at the same time"):
            with transaction(conn):
                conn.execute("DELETE FROM gold.conflict WHERE id = 1")
                other = duckdb_instance(location)
                other.execute("DELETE FROM gold.conflict WHERE id = 2")
                other.close()
        assert conn.execute("SELECT count(*) FROM gold.conflict").fetchone()[0] == 4


def test_connect_before_any_run_says_what_to_do(lakehouse_home):
    with pytest.raises(lake.LakeNotFound, match="does not exist yet: materialize the assets"):
        lakehouse_assets.connect()


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("duckdb:/srv/lake.ducklake", "admits one process at a time"),
        ("/srv/catalog.sqlite", "not sqlite:<file> or postgres:"),
        ("postgres:", "not sqlite:<file> or postgres:"),
    ],
)
def test_a_bad_catalog_setting_fails_naming_it(monkeypatch, value, message):
    monkeypatch.setenv(settings.CATALOG_ENV, value)
    with pytest.raises(settings.SettingError, match=f"LAKEHOUSE_CATALOG.*{message}"):
        settings.lake_catalog()


def test_a_catalog_password_never_shows():
    catalog = "postgres:dbname=lake host=db user=lake password=s3cret"
    assert "s3cret" not in lake.LakeLocation(catalog, "/x/").describe()
    assert "s3cret" not in settings.redacted_catalog("postgres:postgresql://lake:s3cret@db/lake")


def test_a_data_path_on_another_scheme_fails_naming_it(monkeypatch):
    monkeypatch.setenv(settings.DATA_PATH_ENV, "gs://bucket/lake")
    with pytest.raises(settings.SettingError, match="LAKEHOUSE_DATA_PATH.*'gs' is not supported"):
        settings.lake_data_path()


def test_moving_the_data_path_of_an_existing_lake_fails_naming_the_setting(
    lakehouse_home, monkeypatch
):
    with lake_conn(lakehouse_home, read_only=False) as conn:
        conn.execute("CREATE SCHEMA gold")
    lake.close_all()
    monkeypatch.setenv(settings.DATA_PATH_ENV, str(lakehouse_home / "elsewhere"))
    with pytest.raises(settings.SettingError, match="LAKEHOUSE_DATA_PATH.*keeps its files elsewhere"):  # fmt: skip
        lake.cursor(lake.LakeLocation.from_settings())


# Run with DuckDB 2.x: a DuckDB file from Parquet files and view definitions (argv[1], a manifest).
WRITE_OLD_FILE = """
import json, sys
import duckdb
manifest = json.load(open(sys.argv[1]))
conn = duckdb.connect(manifest["target"])
for schema, table, path, types in manifest["tables"]:
    conn.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
    columns = ", ".join(f"CAST({name} AS {kind}) AS {name}" for name, kind in types)
    conn.execute(f"CREATE TABLE {schema}.{table} AS SELECT {columns} FROM read_parquet('{path}')")
for schema, sql in manifest["views"]:
    conn.execute(f"USE {schema}")
    conn.execute(sql)
conn.close()
print(duckdb.__version__)
"""


def write_duckdb_2_file(home, target, work, duckdb_2) -> str:
    """Write every table and view of the lake of `home` into the DuckDB file `target` with
    DuckDB 2.x (installed from PyPI into `duckdb_2`), as the project kept its lakehouse before
    DuckLake; returns the DuckDB version that wrote it."""
    work.mkdir()
    manifest = {"target": str(target), "tables": [], "views": []}
    with lake_conn(home) as conn:
        tables = conn.execute(
            "SELECT schema_name, table_name FROM duckdb_tables() WHERE database_name = 'lake'"
        ).fetchall()
        for schema, table in tables:
            path = work / f"{schema}.{table}.parquet"
            types = conn.execute(f"DESCRIBE lake.{schema}.{table}").fetchall()
            select = ", ".join(exact_column(name, str(kind)) for name, kind, *_ in types)
            conn.execute(f"COPY (SELECT {select} FROM lake.{schema}.{table}) TO '{path}'")
            manifest["tables"].append([schema, table, str(path), [t[:2] for t in types]])
        manifest["views"] = conn.execute(
            "SELECT schema_name, sql FROM duckdb_views() WHERE database_name = 'lake' "
            "AND NOT internal"
        ).fetchall()
    (work / "manifest.json").write_text(json.dumps(manifest))
    pip = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(duckdb_2)]
    subprocess.run([*pip, "duckdb>1.5.5"], check=True, capture_output=True)
    written = subprocess.run(
        [sys.executable, "-c", WRITE_OLD_FILE, str(work / "manifest.json")],
        env={**os.environ, "PYTHONPATH": str(duckdb_2)},
        capture_output=True,
        text=True,
        check=True,
    )
    return written.stdout.strip()


def test_a_pre_ducklake_file_fails_the_run_at_once_and_one_command_migrates_it(
    lakehouse_home, instance, tmp_path, monkeypatch
):
    assert run_graph(instance, DATA).success
    with lake_conn(lakehouse_home) as conn:
        built = table_digests(conn)
    old_home = tmp_path / "old"
    old_home.mkdir()
    # The migration command installs DuckDB 2.x there too, for a file 1.5.5 cannot open.
    duckdb_2 = old_home / "migration" / "duckdb"
    version = write_duckdb_2_file(
        lakehouse_home, old_home / "lakehouse.duckdb", tmp_path / "export", duckdb_2
    )
    assert version.startswith("2."), version
    with pytest.raises(duckdb.IOException, match="newer version of DuckDB"):
        duckdb.connect(str(old_home / "lakehouse.duckdb"), read_only=True)
    (lakehouse_home / "landing").rename(old_home / "landing")
    monkeypatch.setenv("LAKEHOUSE_HOME", str(old_home))

    result = run_graph(instance, DATA)

    assert not result.success
    assert f"`{migration.COMMAND}`" in failure_messages(result)
    assert not (old_home / "catalog.sqlite").exists()  # failed before touching the lake

    done = subprocess.run(
        [sys.executable, "-m", "lakehouse_assets.migration"], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert "in one snapshot" in done.stdout
    assert not (old_home / "lakehouse.duckdb").exists()
    assert (old_home / "lakehouse.duckdb.pre-ducklake").is_file()
    with lake_conn(old_home) as conn:
        assert table_digests(conn) == built
    again = run_graph(instance, DATA)
    assert again.success, failure_messages(again)
    silver = again.asset_materializations_for_node("silver_transactions")[0].metadata
    assert silver["refresh"].value == "unchanged"  # the migrated watermark carries on


def test_an_unreachable_postgres_catalog_fails_without_showing_its_password(lakehouse_home):
    catalog = "postgres:dbname=lake host=127.0.0.1 port=1 user=lake password=s3cret-pw"
    with pytest.raises(lake.LakeUnavailable) as raised:
        lake.cursor(lake.LakeLocation(catalog, f"{lakehouse_home / 'lake'}/"))
    message = str(raised.value)
    assert "s3cret-pw" not in message and "password=***" in message
    assert raised.value.__cause__ is None and raised.value.__suppress_context__
