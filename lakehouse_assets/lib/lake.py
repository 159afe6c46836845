"""The lake: every lakehouse table in DuckLake (a SQLite or PostgreSQL catalog, Parquet data in a
folder or on S3), reached through one DuckDB instance per process and its cursors.

The DuckDB extensions come from the installed `duckdb-extension-*` packages, installed into a
project-owned folder with DuckDB's signature check on: never from the network, never into
`~/.duckdb`. Checking their signatures is slow, so each process keeps its instances
(`MAX_INSTANCES`) and hands out cursors.
"""

import importlib.util
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import duckdb

from lakehouse_assets.lib import settings
from lakehouse_assets.lib.metadata import scalar

LAKE = "lake"  # the attached catalog's name; `USE lake` lets SQL say `gold.churn_scores`
EXTENSION_PACKAGES = ("ducklake", "sqlite", "postgres", "httpfs")
MAX_INSTANCES = 2
PARQUET_COMPRESSION = "zstd"  # a quarter of the default's size (docs/benchmark.md)


class LakeUnavailable(RuntimeError):
    """The catalog could not be attached (a server down, a wrong name); passwords redacted."""


class LakeNotFound(FileNotFoundError):
    """A read-only connection was asked for before any run created the lake's catalog."""


@dataclass(frozen=True)
class LakeLocation:
    """Where the lake is: the DuckLake catalog (`sqlite:<file>` or `postgres:<libpq string>`)
    and the data path (a folder or `s3://...`, ending in `/`)."""

    catalog: str
    data_path: str

    @classmethod
    def from_settings(cls, catalog: str = "", data_path: str = "") -> "LakeLocation":
        """From the given values, else `$LAKEHOUSE_CATALOG` and `$LAKEHOUSE_DATA_PATH`."""
        return cls(
            settings.check_catalog(catalog, "the catalog") if catalog else settings.lake_catalog(),
            settings.check_data_path(data_path, "the data path")
            if data_path
            else settings.lake_data_path(),
        )

    @property
    def sqlite_file(self) -> Path | None:
        kind, _, rest = self.catalog.partition(":")
        return Path(rest).absolute() if kind == "sqlite" else None

    def describe(self) -> str:
        """The catalog and data path, passwords replaced by *** (safe for logs and metadata)."""
        return f"ducklake:{settings.redacted_catalog(self.catalog)} (data: {self.data_path})"


def extension_file(package: str) -> Path:
    """The extension binary inside the installed `duckdb-extension-<package>` wheel."""
    spec = importlib.util.find_spec(f"duckdb_extension_{package}")
    found = []
    if spec is not None and spec.submodule_search_locations:
        folder = Path(next(iter(spec.submodule_search_locations))) / "extensions"
        found = sorted(folder.glob(f"v{duckdb.__version__}/*.duckdb_extension"))
    if not found:
        raise RuntimeError(
            f"The DuckDB extension {package!r} for duckdb {duckdb.__version__} is not installed: "
            f"`pip install duckdb-extension-{package}=={duckdb.__version__}` (pyproject.toml "
            "lists it), then retry."
        )
    return found[0]


def quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _s3_secret_sql() -> str:
    """A DuckDB S3 secret from the AWS SDKs' variables (keys, region, endpoint)."""
    options = ["TYPE s3"]
    for option, name in (
        ("KEY_ID", "AWS_ACCESS_KEY_ID"),
        ("SECRET", "AWS_SECRET_ACCESS_KEY"),
        ("SESSION_TOKEN", "AWS_SESSION_TOKEN"),
    ):
        if os.environ.get(name):
            options.append(f"{option} {quote(os.environ[name])}")
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if region:
        options.append(f"REGION {quote(region)}")
    endpoint = settings.s3_endpoint()
    if endpoint:
        parsed = urlparse(endpoint if "://" in endpoint else f"https://{endpoint}")
        options += [
            f"ENDPOINT {quote(parsed.netloc)}",
            "URL_STYLE 'path'",
            f"USE_SSL {'true' if parsed.scheme == 'https' else 'false'}",
        ]
    return f"CREATE OR REPLACE SECRET lake_s3 ({', '.join(options)})"


def _s3_configured() -> bool:
    return bool(os.environ.get("AWS_ACCESS_KEY_ID") or settings.s3_endpoint())


_instances: "OrderedDict[tuple, duckdb.DuckDBPyConnection]" = OrderedDict()
_instances_lock = threading.Lock()


def _open(location: LakeLocation, read_only: bool) -> duckdb.DuckDBPyConnection:
    """A new in-memory DuckDB instance with the lake attached as `lake` and in use."""
    home = settings.lakehouse_home()
    extensions = home / "duckdb_extensions"
    extensions.mkdir(parents=True, exist_ok=True)
    config: dict[str, str | bool | int | float | list[str]] = {
        "extension_directory": str(extensions),
        "allow_unsigned_extensions": False,
        "autoinstall_known_extensions": False,
        "autoload_known_extensions": True,
        "custom_user_agent": "dagster",
        "temp_directory": str(home / "duckdb_tmp"),
    }
    conn = duckdb.connect(":memory:", config=config)
    try:
        for package in EXTENSION_PACKAGES:
            conn.execute(f"INSTALL {quote(str(extension_file(package)))}")
        if _s3_configured():  # else a persistent DuckDB secret, if any, applies
            conn.execute("LOAD httpfs")
            conn.execute(_s3_secret_sql())
        sqlite = location.sqlite_file
        options = []
        if read_only:  # the data path the catalog records
            if sqlite is not None and not sqlite.exists():
                raise LakeNotFound(
                    f"The lake's catalog {sqlite} does not exist yet: materialize the assets "
                    "first (the README's main command), or set $LAKEHOUSE_HOME or "
                    f"${settings.CATALOG_ENV} to the lakehouse you mean."
                )
            options.append("READ_ONLY")
        else:
            options.append(f"DATA_PATH {quote(location.data_path)}")
            if sqlite is not None:
                sqlite.parent.mkdir(parents=True, exist_ok=True)
                options.append("META_JOURNAL_MODE 'WAL'")  # readers go on while a run commits
            if not location.data_path.startswith("s3://"):
                Path(location.data_path).mkdir(parents=True, exist_ok=True)
        attach = f"ATTACH {quote('ducklake:' + location.catalog)} AS {LAKE}"
        try:
            conn.execute(f"{attach} ({', '.join(options)})" if options else attach)
        except duckdb.Error as error:
            said = settings.redacted_catalog(str(error).splitlines()[0])  # DuckDB quotes it
            if "does not match existing data path" in said:
                raise settings.SettingError(
                    f"The lake's data path is {location.data_path} (${settings.DATA_PATH_ENV} "
                    f"or the duckdb resource's data_path), but the catalog keeps its files "
                    f"elsewhere. DuckDB said: {said}"
                ) from None
            raise LakeUnavailable(
                f"Could not attach the lake {location.describe()}: {said}"
            ) from None  # DuckDB's own error names the catalog with its password
        conn.execute(f"USE {LAKE}")
        if not read_only:
            conn.execute(
                f"CALL {LAKE}.set_option('parquet_compression', {quote(PARQUET_COMPRESSION)})"
            )
    except BaseException:
        conn.close()
        raise
    return conn


def instance(location: LakeLocation, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    """This process's DuckDB instance for `location` (opened on first use, kept for the next).

    Beyond `MAX_INSTANCES` the least recently used is forgotten, not closed: cursors still
    working on it keep it open until they are closed."""
    key = (os.getpid(), location, read_only, str(settings.lakehouse_home()))
    with _instances_lock:
        conn = _instances.get(key)
        if conn is not None:
            _instances.move_to_end(key)
            return conn
    opened = _open(location, read_only)  # outside the lock: a catalog may take seconds
    with _instances_lock:
        conn = _instances.setdefault(key, opened)
        _instances.move_to_end(key)
        while len(_instances) > MAX_INSTANCES:
            _instances.popitem(last=False)
    if conn is not opened:
        opened.close()  # another thread opened it meanwhile
    return conn


def cursor(location: LakeLocation, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    """A new connection (DuckDB cursor) to the lake: close it when done."""
    conn = instance(location, read_only).cursor()
    conn.execute(f"USE {LAKE}")  # a cursor starts in `memory`
    conn.execute("SET TimeZone = 'UTC'")
    return conn


def close_all() -> None:
    """Forget every instance this process holds (the next use opens a new one); each closes
    when its last cursor does."""
    with _instances_lock:
        _instances.clear()


def connect(catalog: str = "", data_path: str = "") -> duckdb.DuckDBPyConnection:
    """A read-only DuckDB connection to the lakehouse, for notebooks, scripts and BI: tables are
    named as in the pipeline (`gold.churn_scores`), and reading works while a run writes.

    The lake is found as a run finds it: `catalog` and `data_path`, else `$LAKEHOUSE_CATALOG`
    and `$LAKEHOUSE_DATA_PATH`, else `$LAKEHOUSE_HOME` (default `.lakehouse/`)."""
    return cursor(LakeLocation.from_settings(catalog, data_path), read_only=True)


def current_snapshot(conn: duckdb.DuckDBPyConnection) -> int:
    """The id of the lake's latest snapshot, as `conn`'s transaction sees it."""
    return scalar(conn, f"SELECT id FROM {LAKE}.current_snapshot()")


def set_commit_message(conn: duckdb.DuckDBPyConnection, message: str, extra_json: str) -> None:
    """Name the snapshot that the open transaction will commit (shown by `lake.snapshots()`)."""
    conn.execute(
        f"CALL {LAKE}.set_commit_message('dagster', $message, extra_info => $extra)",
        {"message": message, "extra": extra_json},
    )


# SQLite's busy or stale-snapshot commit, DuckLake's and PostgreSQL's conflicts.
CONFLICT_MARKERS = ("database is locked", "transaction conflict", "could not serialize")


def is_commit_conflict(error: BaseException) -> bool:
    """Whether DuckLake refused a commit because another writer committed at the same time."""
    text = str(error).lower()
    return isinstance(error, duckdb.Error) and any(m in text for m in CONFLICT_MARKERS)
