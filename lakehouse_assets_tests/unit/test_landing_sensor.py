"""The landing sensor's pieces: its cursor, its run keys and one scan of the landing folder per
tick; and the sensor itself over a few ticks, evaluated with an ephemeral Dagster instance."""

import hashlib
import json
import logging
import os
from pathlib import Path

import dagster as dg
import pytest

from lakehouse_assets.defs.automation.landing_sensor import (
    LANDED_FILES_TAG,
    FileVersion,
    LandingCursor,
    landing_sensor,
    run_key_for,
    scan_landing,
)
from lakehouse_assets.lib.resources import LandingZone

CSV = "transaction_id,customer_id,event_time,amount\nt1,c1,2025-01-01,10.5\n"
log = logging.getLogger("landing_sensor_test")


@pytest.fixture
def landing(tmp_path: Path) -> Path:
    folder = tmp_path / "landing"
    folder.mkdir()
    return folder


def bump_mtime(path: Path, seconds: int = 10) -> None:
    """Move the mtime on, as a later write would (file systems may have coarse timestamps)."""
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + seconds * 1_000_000_000))


class Ticks:
    """`scan_landing` called tick after tick, each with the cursor the previous one returned."""

    def __init__(self, folder: Path, loaded: dict[str, str] | None = None):
        self.zone = LandingZone(path=str(folder))
        self.cursor = LandingCursor()
        self.loaded = loaded

    def ready(self) -> list[str]:
        found, self.cursor = scan_landing(self.zone, self.cursor, log, self.loaded)
        return [v.relative_path for v in found]


# -- the cursor


def test_a_cursor_survives_its_json():
    cursor = LandingCursor(
        triggered={"a.csv": FileVersion("a.csv", 10, 123, "ab" * 32)},
        pending={"sub/b.parquet": FileVersion("sub/b.parquet", 20, 456)},
        ignored=["notes.txt"],
    )
    assert LandingCursor.from_json(cursor.to_json()) == cursor


def test_a_cursor_keeps_no_hash_for_pending_files():
    cursor = LandingCursor(pending={"b.csv": FileVersion("b.csv", 20, 456, "not kept")})
    assert json.loads(cursor.to_json())["pending"] == {"b.csv": [20, 456]}
    assert LandingCursor.from_json(cursor.to_json()).pending["b.csv"].sha256 == ""


@pytest.mark.parametrize("text", [None, ""])
def test_no_cursor_is_an_empty_one(text):
    assert LandingCursor.from_json(text) == LandingCursor()


def test_same_stat_compares_size_and_mtime_only():
    version = FileVersion("a.csv", 10, 123, "hash")
    assert version.same_stat(FileVersion("a.csv", 10, 123))
    assert not version.same_stat(FileVersion("a.csv", 11, 123))
    assert not version.same_stat(FileVersion("a.csv", 10, 124))
    assert not version.same_stat(None)


# -- run keys


def test_a_run_key_does_not_depend_on_the_order_of_the_files():
    a, b = FileVersion("a.csv", 1, 2, "x"), FileVersion("b.csv", 3, 4, "y")
    key = run_key_for([a, b])
    assert key == run_key_for([b, a])
    assert key.startswith("landing-") and len(key) == len("landing-") + 32


@pytest.mark.parametrize(
    "changed",
    [
        FileVersion("c.csv", 1, 2, "x"),
        FileVersion("a.csv", 9, 2, "x"),
        FileVersion("a.csv", 1, 9, "x"),
        FileVersion("a.csv", 1, 2, "z"),
    ],
)
def test_any_change_to_a_version_changes_the_run_key(changed):
    assert run_key_for([changed]) != run_key_for([FileVersion("a.csv", 1, 2, "x")])


# -- one scan per tick


def test_a_missing_folder_has_nothing_ready(tmp_path):
    ready, following = scan_landing(LandingZone(path=str(tmp_path / "no")), LandingCursor(), log)
    assert ready == [] and following == LandingCursor()


def test_a_new_file_is_ready_once_it_settled_for_one_tick(landing):
    ticks = Ticks(landing)
    (landing / "a.csv").write_text(CSV)
    assert ticks.ready() == []
    assert list(ticks.cursor.pending) == ["a.csv"]
    assert ticks.ready() == ["a.csv"]
    version = ticks.cursor.triggered["a.csv"]
    assert version.sha256 == hashlib.sha256(CSV.encode()).hexdigest()
    assert version.size_bytes == len(CSV) and ticks.cursor.pending == {}
    assert ticks.ready() == []


def test_a_file_still_growing_waits(landing):
    ticks = Ticks(landing)
    path = landing / "big.csv"
    path.write_text(CSV)
    assert ticks.ready() == []
    with path.open("a") as handle:
        handle.write("t2,c2,2025-01-02,3\n")
    bump_mtime(path)
    assert ticks.ready() == []  # changed since the last tick
    assert ticks.ready() == ["big.csv"]


def test_a_touched_file_with_the_same_content_is_not_ready_again(landing, caplog):
    ticks = Ticks(landing)
    (landing / "a.csv").write_text(CSV)
    ticks.ready()
    assert ticks.ready() == ["a.csv"]
    bump_mtime(landing / "a.csv")
    assert ticks.ready() == []
    with caplog.at_level(logging.INFO, logger=log.name):
        assert ticks.ready() == []
    assert "a.csv: touched, but its content is unchanged" in caplog.text
    assert ticks.cursor.triggered["a.csv"].mtime_ns == (landing / "a.csv").stat().st_mtime_ns


def test_a_changed_file_is_ready_again(landing):
    ticks = Ticks(landing)
    (landing / "a.csv").write_text(CSV)
    ticks.ready()
    ticks.ready()
    first = ticks.cursor.triggered["a.csv"]
    (landing / "a.csv").write_text(CSV + "t2,c2,2025-01-02,3\n")
    bump_mtime(landing / "a.csv")
    ticks.ready()
    assert ticks.ready() == ["a.csv"]
    assert ticks.cursor.triggered["a.csv"].sha256 != first.sha256


def test_a_file_bronze_already_loaded_is_recorded_not_ready(landing):
    (landing / "a.csv").write_text(CSV)
    (landing / "b.csv").write_text(CSV + "t2,c2,2025-01-02,3\n")
    ticks = Ticks(landing, loaded={"a.csv": hashlib.sha256(CSV.encode()).hexdigest()})
    ticks.ready()
    assert ticks.ready() == ["b.csv"]
    assert set(ticks.cursor.triggered) == {"a.csv", "b.csv"}


def test_other_files_are_ignored_and_logged_once(landing, caplog):
    (landing / "notes.txt").write_text("hello")
    (landing / "export.xlsx").write_bytes(b"PK")
    (landing / ".hidden.csv").write_text(CSV)
    (landing / "sub").mkdir()
    (landing / "sub" / "a.CSV").write_text(CSV)
    ticks = Ticks(landing)
    with caplog.at_level(logging.INFO, logger=log.name):
        ticks.ready()
    assert "export.xlsx: a spreadsheet: export it as CSV" in caplog.text
    assert "notes.txt: not a CSV or Parquet file, ignored" in caplog.text
    assert ".hidden.csv: hidden, ignored" in caplog.text
    assert sorted(ticks.cursor.ignored) == [".hidden.csv", "export.xlsx", "notes.txt"]
    caplog.clear()
    with caplog.at_level(logging.INFO, logger=log.name):
        assert ticks.ready() == ["sub/a.CSV"]
    assert "ignored" not in caplog.text


# -- the sensor, tick after tick


def test_the_sensor_requests_one_run_per_settled_file_version(landing):
    landing_zone = LandingZone(path=str(landing))
    with dg.DagsterInstance.ephemeral() as instance:

        def tick(cursor: str | None) -> dg.SensorResult:
            context = dg.build_sensor_context(
                instance=instance, cursor=cursor, resources={"landing": landing_zone}
            )
            return landing_sensor(context)

        empty = tick(None)
        assert "No new or changed data files" in empty.skip_reason.skip_message
        (landing / "a.csv").write_text(CSV)
        waiting = tick(empty.cursor)
        assert waiting.skip_reason.skip_message == "Waiting for a.csv to settle"
        requested = tick(waiting.cursor)
        [request] = requested.run_requests
        cursor = LandingCursor.from_json(requested.cursor)
        assert request.run_key == run_key_for([cursor.triggered["a.csv"]])
        assert request.tags[LANDED_FILES_TAG] == "a.csv"
        assert not tick(requested.cursor).run_requests
