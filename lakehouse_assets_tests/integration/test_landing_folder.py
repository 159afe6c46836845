"""The landing folder: the sample only in the default one, a configured one that is missing or
empty fails naming the setting, and files that are not read are named."""

import dagster as dg
import pytest

from lakehouse_assets.lib.resources import LandingZone
from lakehouse_assets.lib.settings import LANDING_ENV
from lakehouse_assets_tests.support.helpers import DATA, failure_messages, run_graph, write_csv

RAW = dg.AssetSelection.assets("raw_transactions")


def warnings_logged(instance: dg.DagsterInstance, run_id: str) -> list[str]:
    return [
        entry.user_message
        for entry in instance.all_logs(run_id)
        if entry.dagster_event is None and entry.level >= 30  # logging.WARNING
    ]


@pytest.mark.parametrize("content", ["missing", "empty", "only_a_spreadsheet"])
def test_a_configured_landing_folder_without_data_fails_and_gets_no_sample(
    lakehouse_home, instance, monkeypatch, tmp_path, content
):
    folder = tmp_path / "my_exports"  # e.g. a typo in the path
    if content != "missing":
        folder.mkdir()
    if content == "only_a_spreadsheet":
        (folder / "sales.xlsx").write_bytes(b"PK\x03\x04")
    monkeypatch.setenv(LANDING_ENV, str(folder))

    result = run_graph(instance, DATA)

    assert not result.success
    message = failure_messages(result)
    assert LANDING_ENV in message and str(folder) in message, message
    expected = "does not exist" if content == "missing" else "holds no CSV or Parquet files"
    assert expected in message, message
    assert not (lakehouse_home / "landing").exists()
    if content == "missing":
        assert not folder.exists()
    else:  # nothing written there
        written = sorted(p.name for p in folder.iterdir())
        assert written == ([] if content == "empty" else ["sales.xlsx"])


def test_a_configured_landing_resource_path_is_named(lakehouse_home, instance, tmp_path):
    folder = tmp_path / "nowhere"
    result = run_graph(instance, RAW, resources={"landing": LandingZone(path=str(folder))})
    assert not result.success
    assert "the `landing` resource's `path`" in failure_messages(result)
    assert not folder.exists()


def test_files_that_are_not_read_are_listed_and_warned_about(lakehouse_home, instance):
    landing = lakehouse_home / "landing"
    write_csv(landing / "sales.csv", "customer_id,event_time,amount\nc1,2025-06-01,5")
    (landing / "sales.xlsx").write_bytes(b"PK\x03\x04")
    (landing / "notes.txt").write_text("remember to export")
    (landing / ".DS_Store").write_bytes(b"\0")

    result = run_graph(instance, RAW)

    assert result.success, failure_messages(result)
    metadata = result.asset_materializations_for_node("raw_transactions")[0].metadata
    assert metadata["ignored_file_count"].value == 2
    listed = metadata["ignored_files"].value
    assert "sales.xlsx" in listed and "export it as CSV" in listed and "notes.txt" in listed
    assert ".DS_Store" not in listed
    (warning,) = warnings_logged(instance, result.run_id)
    assert "sales.xlsx (a spreadsheet: export it as CSV" in warning and "notes.txt" in warning
    assert not (landing / "sample_transactions.parquet").exists()  # a data file was there


def test_the_default_folder_holding_only_a_spreadsheet_gets_no_sample(lakehouse_home, instance):
    landing = lakehouse_home / "landing"
    landing.mkdir(parents=True)
    (landing / "sales.xlsx").write_bytes(b"PK\x03\x04")

    result = run_graph(instance, RAW)

    assert not result.success
    message = failure_messages(result)
    assert "sales.xlsx: a spreadsheet: export it as CSV" in message, message
    assert sorted(p.name for p in landing.iterdir()) == ["sales.xlsx"]
