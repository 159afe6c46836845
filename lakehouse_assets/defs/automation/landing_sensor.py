"""`landing_sensor`: refresh the lakehouse when transaction files land in the landing folder."""

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg

from lakehouse_assets.defs.automation import refresh_lakehouse
from lakehouse_assets.lib import settings
from lakehouse_assets.lib.landing import sha256_of
from lakehouse_assets.lib.resources import LandingZone, is_data_file, why_ignored

LANDING_SENSOR = "landing_sensor"
LANDED_FILES_TAG = "lakehouse/landed_files"


@dataclass(frozen=True)
class FileVersion:
    """One version of a landed data file, as the sensor saw it."""

    relative_path: str
    size_bytes: int
    mtime_ns: int
    sha256: str = ""

    def same_stat(self, other: "FileVersion | None") -> bool:
        """Same size and mtime: the file was not written to in between."""
        if other is None:
            return False
        return (self.size_bytes, self.mtime_ns) == (other.size_bytes, other.mtime_ns)


@dataclass
class LandingCursor:
    """What the sensor remembers between ticks (stored by Dagster, so it survives restarts).

    `triggered`: the version of each data file a run was last requested for.
    `pending`: size and mtime of files seen at the last tick that were not yet stable.
    `ignored`: files that are not CSV/Parquet, logged once.
    """

    triggered: dict[str, FileVersion] = field(default_factory=dict)
    pending: dict[str, FileVersion] = field(default_factory=dict)
    ignored: list[str] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(
            {
                "triggered": {
                    k: [v.size_bytes, v.mtime_ns, v.sha256] for k, v in self.triggered.items()
                },
                "pending": {k: [v.size_bytes, v.mtime_ns] for k, v in self.pending.items()},
                "ignored": self.ignored,
            },
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str | None) -> "LandingCursor":
        if not text:
            return cls()
        data = json.loads(text)
        return cls(
            triggered={k: FileVersion(k, *v) for k, v in data.get("triggered", {}).items()},
            pending={k: FileVersion(k, *v) for k, v in data.get("pending", {}).items()},
            ignored=list(data.get("ignored", [])),
        )


def _stat(folder: Path, path: Path) -> FileVersion | None:
    try:
        stat = path.stat()
    except FileNotFoundError:  # removed since it was listed
        return None
    return FileVersion(path.relative_to(folder).as_posix(), stat.st_size, stat.st_mtime_ns)


def run_key_for(versions: list[FileVersion]) -> str:
    """The same set of file versions always gives the same run key (path, size, mtime, hash)."""
    lines = "\n".join(
        f"{v.relative_path}\t{v.size_bytes}\t{v.mtime_ns}\t{v.sha256}"
        for v in sorted(versions, key=lambda v: v.relative_path)
    )
    return "landing-" + hashlib.sha256(lines.encode()).hexdigest()[:32]


def versions_in_bronze(context: dg.SensorEvaluationContext) -> dict[str, str]:
    """The file versions (relative path -> SHA-256) that the latest materialization of
    `bronze_transactions` loaded: those `raw_transactions` listed in the same run. Lets the
    sensor skip what a run it did not request (the README's main command, the UI) already
    loaded into this instance's lakehouse."""
    instance = context.instance
    bronze = instance.get_latest_materialization_event(dg.AssetKey("bronze_transactions"))
    raw = instance.get_latest_materialization_event(dg.AssetKey("raw_transactions"))
    if bronze is None or raw is None or raw.run_id != bronze.run_id:
        return {}
    materialization = raw.asset_materialization
    listed = materialization.metadata.get("sha256") if materialization else None
    return dict(listed.value) if listed is not None else {}  # type: ignore[arg-type]


def scan_landing(
    landing: LandingZone, cursor: LandingCursor, log, loaded: dict[str, str] | None = None
) -> tuple[list[FileVersion], LandingCursor]:
    """Compare the landing folder with `cursor`: the new or changed files that are complete, and
    the next cursor. A file is complete when its size and mtime did not change since the last
    tick; unchanged files (same size and mtime, or same content hash, or the version `loaded`
    says bronze already holds) are not returned again."""
    folder = landing.folder()
    files = landing.files()  # one walk of the folder per tick
    data_paths = [p for p in files if is_data_file(p)]
    others = [p for p in files if not is_data_file(p)]
    ignored = []
    for path in others:
        relative = path.relative_to(folder).as_posix()
        ignored.append(relative)
        if relative not in cursor.ignored:
            why = "hidden" if path.name.startswith(".") else why_ignored(path)
            log.info(f"{relative}: {why}, ignored")
    following = LandingCursor(ignored=ignored)
    ready: list[FileVersion] = []
    for path in data_paths:
        now = _stat(folder, path)
        if now is None:
            continue
        rel = now.relative_path
        known = cursor.triggered.get(rel)
        if known is not None:
            following.triggered[rel] = known
        if now.same_stat(known):
            continue
        if not now.same_stat(cursor.pending.get(rel)):
            log.info(
                f"{rel}: {now.size_bytes:,} bytes, new or changed; waiting one tick for it to settle"
            )
            following.pending[rel] = now
            continue
        digest = sha256_of(path)
        after = _stat(folder, path)
        if after is None:
            continue
        if not after.same_stat(now):  # written to while it was hashed
            following.pending[rel] = after
            continue
        version = FileVersion(rel, now.size_bytes, now.mtime_ns, digest)
        following.triggered[rel] = version
        if known is not None and known.sha256 == digest:
            log.info(f"{rel}: touched, but its content is unchanged; nothing to do")
            continue
        if known is None and (loaded or {}).get(rel) == digest:
            log.info(f"{rel}: already loaded into bronze by the latest refresh; nothing to do")
            continue
        ready.append(version)
    return ready, following


def build_landing_sensor(job) -> dg.SensorDefinition:
    """`landing_sensor` requesting `job`; its interval is read from the environment here."""

    @dg.sensor(
        name=LANDING_SENSOR,
        job=job,
        minimum_interval_seconds=settings.sensor_interval_seconds(),
        default_status=dg.DefaultSensorStatus.RUNNING,
    )
    def landing_sensor(
        context: dg.SensorEvaluationContext, landing: LandingZone
    ) -> dg.SensorResult:
        """Watches the landing folder. When CSV or Parquet files are new or changed (and their
        size stayed the same for one tick, so files still being written wait), requests one run
        of every layer and the model, keyed by the files' paths, sizes, mtimes and content
        hashes: each version of a file triggers exactly once. Other files are ignored."""
        cursor = LandingCursor.from_json(context.cursor)
        ready, following = scan_landing(landing, cursor, context.log, versions_in_bronze(context))
        if not ready:
            waiting = sorted(following.pending)
            if waiting:
                reason = f"Waiting for {', '.join(waiting)} to settle"
            elif not landing.folder().is_dir():
                reason = f"The landing folder {landing.folder()} does not exist"
            else:
                reason = f"No new or changed data files in {landing.folder()}"
            return dg.SensorResult(skip_reason=reason, cursor=following.to_json())
        names = ", ".join(v.relative_path for v in ready)
        context.log.info(f"Requesting a refresh for {len(ready)} new or changed file(s): {names}")
        request = dg.RunRequest(
            run_key=run_key_for(ready),
            tags={LANDED_FILES_TAG: names if len(names) <= 200 else names[:197] + "..."},
        )
        return dg.SensorResult(run_requests=[request], cursor=following.to_json())

    return landing_sensor


landing_sensor = build_landing_sensor(refresh_lakehouse.refresh_lakehouse_job)
