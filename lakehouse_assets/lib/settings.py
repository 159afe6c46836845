"""Every environment variable the project reads, in one place, read at the moment it is used.

Read when a run starts (never at import time): where local state lives, the DuckDB memory limit,
the MLflow tracking URI and the model signing key (a secret: never logged, never put in config). Read when the code location loads, because Dagster needs them to
define the code location (restart or reload it after a change): the deployment profile, the
MLflow steps' retry delay and the landing sensor's interval. The README's configuration table
lists them all. One variable of another library is set, not read, when the package is imported:
OpenBLAS's thread timeout (`let_idle_blas_threads_sleep`).

Each value is checked where it is read: a bad one raises `SettingError`, one line naming the
variable, the value and an example of a good value.
"""

import functools
import math
import os
import re
from pathlib import Path
from urllib.parse import urlparse

HOME_ENV = "LAKEHOUSE_HOME"
LANDING_ENV = "LAKEHOUSE_LANDING_DIR"
DUCKDB_ENV = "LAKEHOUSE_DUCKDB_PATH"  # the pre-DuckLake file, found only to migrate it
CATALOG_ENV = "LAKEHOUSE_CATALOG"
DATA_PATH_ENV = "LAKEHOUSE_DATA_PATH"
S3_ENDPOINT_ENVS = ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")
MEMORY_LIMIT_ENV = "LAKEHOUSE_DUCKDB_MEMORY_LIMIT"
TRACKING_URI_ENV = "MLFLOW_TRACKING_URI"
PROFILE_ENV = "LAKEHOUSE_ENV"
RETRY_DELAY_ENV = "LAKEHOUSE_MLFLOW_RETRY_DELAY_SECONDS"
SENSOR_INTERVAL_ENV = "LAKEHOUSE_SENSOR_INTERVAL_SECONDS"
SIGNING_KEY_ENV = "LAKEHOUSE_MODEL_SIGNING_KEY"
BUCKETS_ENV = "LAKEHOUSE_BUCKETS"
MAX_BUCKETS = 1024
OPENBLAS_TIMEOUT_ENV = "OPENBLAS_THREAD_TIMEOUT"  # OpenBLAS's own, set (unless set) at import

DEFAULT_PROFILE = "local"
DEFAULT_RETRY_DELAY_SECONDS = 2.0
DEFAULT_SENSOR_INTERVAL_SECONDS = 30

# The URI schemes of MLflow's own tracking stores (mlflow 3.17,
# `mlflow/tracking/_tracking_service/utils.py`, `_register_tracking_stores`): file stores, REST
# servers, Databricks and Unity Catalog, and the SQLAlchemy databases, which may also name a
# driver (`postgresql+psycopg`). No scheme at all is a file store path. Plugins can register more
# schemes; this project uses none.
MLFLOW_TRACKING_SCHEMES = ("file", "http", "https", "databricks", "databricks-uc", "uc")
MLFLOW_DATABASE_SCHEMES = ("sqlite", "postgresql", "mysql", "mssql")


class SettingError(ValueError):
    """A setting with a bad value; its message names the setting, the value and an example."""


# -- read when a run starts


def lakehouse_home() -> Path:
    """`$LAKEHOUSE_HOME`, default `.lakehouse/` under the working directory; a file fails."""
    configured = _configured_path(
        HOME_ENV, "a folder (created if missing)", folder=True, example="/srv/lakehouse"
    )
    return configured or Path(".lakehouse").absolute()


def landing_dir() -> Path:
    """`$LAKEHOUSE_LANDING_DIR`, default `$LAKEHOUSE_HOME/landing`; a file fails, a folder that
    does not exist (yet) does not (the landing zone reports it)."""
    configured = _configured_path(
        LANDING_ENV, "a folder", folder=True, example="/srv/lakehouse/landing"
    )
    return configured or lakehouse_home() / "landing"


def duckdb_path() -> Path:
    """`$LAKEHOUSE_DUCKDB_PATH`, default `$LAKEHOUSE_HOME/lakehouse.duckdb`: where a lakehouse
    from before DuckLake kept its tables (a run that finds one asks to migrate it); a folder
    fails."""
    example = "/srv/lakehouse/lakehouse.duckdb"
    configured = _configured_path(DUCKDB_ENV, "a DuckDB file", folder=False, example=example)
    return configured or lakehouse_home() / "lakehouse.duckdb"


CATALOG_KINDS = ("sqlite", "postgres")


def lake_catalog() -> str:
    """`$LAKEHOUSE_CATALOG`, DuckLake's metadata database, default
    `sqlite:$LAKEHOUSE_HOME/catalog.sqlite`; checked by `check_catalog`."""
    raw = os.environ.get(CATALOG_ENV, "").strip()
    if not raw:
        return f"sqlite:{lakehouse_home() / 'catalog.sqlite'}"
    return check_catalog(raw, CATALOG_ENV)


def check_catalog(value: str, setting: str) -> str:
    """`value` without a leading `ducklake:`, if it names a SQLite or PostgreSQL catalog; else
    a SettingError naming `setting`. A DuckDB-file catalog admits one process at a time, so
    nobody could read while a run writes: it is refused."""
    catalog = value.strip().removeprefix("ducklake:")
    kind, colon, rest = catalog.partition(":")
    if colon and kind in CATALOG_KINDS and rest.strip():
        return catalog
    why = (
        "a DuckDB-file catalog admits one process at a time, so nobody could read while a run "
        "writes"
        if kind in ("duckdb", "md", "motherduck") or catalog.endswith((".duckdb", ".ducklake"))
        else "which is not sqlite:<file> or postgres:<connection string>"
    )
    raise SettingError(
        f"{setting} must name a DuckLake catalog on SQLite or PostgreSQL, got "
        f"{redacted_catalog(catalog)!r}, {why} (e.g. {setting}=sqlite:/srv/lakehouse/catalog.sqlite "
        f"or {setting}='postgres:dbname=lake host=db.example.com user=lake')"
    )


def redacted_catalog(catalog: str) -> str:
    """`catalog` with any `password=...` (libpq key/value) or `user:password@` replaced by ***."""
    # A quoted libpq value may hold an escaped quote or backslash: 'it\'s'.
    catalog = re.sub(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", r"\1***", catalog, flags=re.I)
    return re.sub(r"(://[^:/@?#]*:)[^@/?#]*@", r"\1***@", catalog)


def lake_data_path() -> str:
    """`$LAKEHOUSE_DATA_PATH`, where the lake's Parquet files live: a folder (default
    `$LAKEHOUSE_HOME/lake/`) or `s3://bucket/prefix/`. Always ends with `/`."""
    raw = os.environ.get(DATA_PATH_ENV, "").strip()
    if not raw:
        return f"{lakehouse_home() / 'lake'}/"
    return check_data_path(raw, DATA_PATH_ENV)


def check_data_path(value: str, setting: str) -> str:
    """`value` as a data path ending in `/`: `s3://bucket/...`, or a folder (made absolute);
    another URL scheme or a file fails, naming `setting`."""
    value = value.strip()
    scheme = urlparse(value).scheme if "://" in value else ""
    if scheme == "s3":
        if not urlparse(value).netloc:
            raise SettingError(
                f"{setting} must name a bucket, got {value!r} (e.g. {setting}=s3://lake/prod/)"
            )
        return value.rstrip("/") + "/"
    if scheme:
        raise SettingError(
            f"{setting} must be a folder or an s3:// URL, got {value!r}, and the scheme "
            f"{scheme!r} is not supported (e.g. {setting}=s3://lake/prod/)"
        )
    path = Path(value).absolute()
    if path.exists() and not path.is_dir():
        raise SettingError(
            f"{setting} must name a folder, got {value!r}, which is a file "
            f"(e.g. {setting}=/srv/lakehouse/lake)"
        )
    return f"{path}/"


def s3_endpoint() -> str:
    """The S3 endpoint (`$AWS_ENDPOINT_URL_S3`, else `$AWS_ENDPOINT_URL`, the AWS SDKs'
    variables), empty for AWS itself."""
    return next((os.environ[n].strip() for n in S3_ENDPOINT_ENVS if os.environ.get(n)), "")


def _configured_path(name: str, what: str, *, folder: bool, example: str) -> Path | None:
    """`$name` as an absolute path, None when unset or empty. Fails when it cannot be `what`, a
    folder (`folder`) or a file, given what exists; nothing is created, nothing need exist."""
    raw = os.environ.get(name)
    if not raw:
        return None
    path = Path(raw).absolute()
    try:
        if folder and path.exists() and not path.is_dir():
            problem = "which is a file"
        elif not folder and path.is_dir():
            problem = "which is a folder"
        else:  # the nearest thing that exists above it must be a folder
            above = next((p for p in path.parents if p.exists()), None)
            problem = f"and {above} is a file" if above and not above.is_dir() else ""
    except OSError:  # not allowed to look: whatever uses the path will say so
        problem = ""
    if problem:
        raise SettingError(
            f"{name} must name {what}, got {raw!r}, {problem} (e.g. {name}={example})"
        )
    return path


def duckdb_memory_limit() -> str:
    """`$LAKEHOUSE_DUCKDB_MEMORY_LIMIT` (e.g. `8GB`), empty when unset; checked by DuckDB."""
    raw = os.environ.get(MEMORY_LIMIT_ENV, "")
    return check_memory_limit(raw, MEMORY_LIMIT_ENV) if raw.strip() else ""


def check_memory_limit(value: str, setting: str) -> str:
    """`value` stripped, if DuckDB takes it as a useful `memory_limit`; else a SettingError that
    names `setting` (a variable's name, or e.g. "the duckdb resource's memory_limit")."""
    value = value.strip()
    problem = _memory_limit_problem(value)
    if problem is None:
        return value
    reason, duckdb_said = problem
    example = f"{setting}=8GB" if re.fullmatch(r"[A-Z][A-Z0-9_]*", setting) else "8GB"
    said = f" DuckDB said: {duckdb_said}" if duckdb_said else ""
    raise SettingError(
        f"{setting} must be a memory size such as 8GB or 512MiB, "
        f"got {value!r}{reason} (e.g. {example}).{said}"
    )


@functools.lru_cache(maxsize=64)
def _memory_limit_problem(value: str) -> tuple[str, str] | None:
    """None if DuckDB takes `value` as a useful memory limit, else (why not, DuckDB's first line).

    DuckDB itself decides, on a throwaway in-memory database (DuckDB 1.5.5 accepts `8GB`, `8 gb`,
    `512MiB`, `1.5GB`, `1e3GB`; rejects `lots`, `0` or `1.5` (no unit), `1PB`, `80%`).
    Three kinds of values it accepts are refused too, having been tried:
    - a negative size (`-1`, `-5GB`, even `-0`) or `none` means no limit at all: DuckDB would
      then never spill to disk and could take all the machine's memory;
    - a size too small for DuckDB to write a 1,000-row table (`0GB`, `1B`, up to about 40KB):
      every query fails. Small sizes that run a little (1MB) stay allowed: work that
      does not fit then fails with the resource's out-of-memory message, which names the setting;
    - text after the size (`8GB x`, `8 G B`), which DuckDB ignores."""
    import duckdb

    # DuckDB reads `8GB x` or `8 G B` as 8GB, ignoring the rest: only a space before the unit.
    if re.search(r"\s", value) and not re.fullmatch(r"\S*[\d.] +[A-Za-z%]+", value):
        return ", with text after the size that DuckDB would ignore", ""
    with duckdb.connect(":memory:") as conn:
        conn.execute("SET memory_limit = '-1'")
        no_limit = conn.execute("SELECT current_setting('memory_limit')").fetchall()[0][0]
        try:
            conn.execute("SET memory_limit = $v", {"v": value})
        except duckdb.Error as error:
            return "", _first_line(error)
        try:
            limit = conn.execute("SELECT current_setting('memory_limit')").fetchall()[0][0]
            conn.execute("CREATE TABLE probe AS SELECT range AS i FROM range(1000)")
        except duckdb.OutOfMemoryException as error:
            return ", too small for DuckDB to write even a 1,000-row table", _first_line(error)
    if limit == no_limit:
        return (
            ", which DuckDB reads as no limit: it would never spill to disk (for most of the "
            "memory, give a size a little below it)",
            "",
        )
    return None


def _first_line(error: Exception) -> str:
    return next(iter(str(error).splitlines()), type(error).__name__)


def mlflow_tracking_uri() -> str:
    """`$MLFLOW_TRACKING_URI`, else the local sqlite store `$LAKEHOUSE_HOME/mlflow.db`.

    A set value is checked lightly: an MLflow tracking store's URI scheme, or a plain path (a
    file store); `host:port` without `http://` and a sqlite URI without a database path fail."""
    configured = os.environ.get(TRACKING_URI_ENV)
    if not configured:
        return f"sqlite:///{lakehouse_home() / 'mlflow.db'}"
    problem, example = _tracking_uri_problem(configured.strip())
    if problem:
        raise SettingError(
            f"{TRACKING_URI_ENV} must be an MLflow tracking URI (http, https, sqlite, postgresql, "
            f"mysql, mssql, file, databricks) or a folder path, got {_redacted(configured)!r}, "
            f"{problem} (e.g. {TRACKING_URI_ENV}={example})"
        )
    return configured.strip()


def _tracking_uri_problem(uri: str) -> tuple[str, str]:
    """(what is wrong with `uri`, a good example), or ("", "") if nothing is."""
    server = "http://mlflow.example.com:5000"
    if "://" not in uri and re.fullmatch(r"[\w.\-\[\]:]+:\d+(/.*)?", uri, flags=re.ASCII):
        return "a host and port with no scheme", f"http://{uri}"
    try:
        parsed = urlparse(uri)
        scheme, host = parsed.scheme, parsed.hostname  # the scheme lower-cased, "" for a path
    except ValueError as error:  # e.g. an unclosed [ of an IPv6 address
        return f"which is not a URI ({error})", server
    if not scheme or (len(scheme) == 1 and scheme.isalpha()):  # a path, or a Windows drive
        return "", ""
    databases = "|".join(MLFLOW_DATABASE_SCHEMES)
    if scheme not in MLFLOW_TRACKING_SCHEMES and not re.fullmatch(
        rf"({databases})(\+\w+)?", scheme
    ):
        return f"and MLflow has no tracking store for the scheme {scheme!r}", server
    if scheme in ("http", "https") and not host:
        return "which names no host", server
    if scheme.partition("+")[0] == "sqlite" and (
        "://" not in uri or parsed.netloc or parsed.path.removeprefix("/") in ("", ":memory:")
    ):  # SQLAlchemy's sqlite:// and sqlite:///:memory: are in-memory databases, lost at exit
        return "which names no database file (sqlite:/// and its path)", (
            "sqlite:////srv/lakehouse/mlflow.db"
        )
    return "", ""


def _redacted(uri: str) -> str:
    """`uri` with the password of its `user:password@` part, if any, replaced by ***."""
    return re.sub(r"^([^:/?#]+://[^:/@?#]*:)[^@/?#]*@", r"\1***@", uri.strip())


def model_signing_key() -> str | None:
    """`$LAKEHOUSE_MODEL_SIGNING_KEY`: the HMAC key that signs and verifies model pickles
    (`model/signing.py`); None when unset or blank (models are then unsigned)."""
    return os.environ.get(SIGNING_KEY_ENV, "").strip() or None


# -- read when the code location loads


def profile() -> str:
    """`$LAKEHOUSE_ENV` (default `local`), lower-cased; `profiles.py` checks the name."""
    return os.environ.get(PROFILE_ENV, "").strip().lower() or DEFAULT_PROFILE


def mlflow_retry_delay_seconds() -> float:
    """`$LAKEHOUSE_MLFLOW_RETRY_DELAY_SECONDS` (default 2): the first delay of the MLflow steps'
    retry policy."""
    raw = os.environ.get(RETRY_DELAY_ENV) or str(DEFAULT_RETRY_DELAY_SECONDS)
    try:
        delay = float(raw)
    except ValueError:
        delay = -1.0
    if not (math.isfinite(delay) and delay >= 0):  # nan and inf are floats too
        raise SettingError(
            f"{RETRY_DELAY_ENV} must be a number of seconds >= 0, got {raw!r} "
            f"(e.g. {RETRY_DELAY_ENV}=2)"
        )
    return delay


def sensor_interval_seconds() -> int:
    """`$LAKEHOUSE_SENSOR_INTERVAL_SECONDS` (default 30): how often the landing sensor looks."""
    raw = os.environ.get(SENSOR_INTERVAL_ENV) or str(DEFAULT_SENSOR_INTERVAL_SECONDS)
    try:
        seconds = int(raw)
    except ValueError:
        seconds = 0
    if seconds < 1:
        raise SettingError(
            f"{SENSOR_INTERVAL_ENV} must be a whole number of seconds >= 1, got {raw!r} "
            f"(e.g. {SENSOR_INTERVAL_ENV}=30)"
        )
    return seconds


def buckets() -> int:
    """`$LAKEHOUSE_BUCKETS` (default 1): into how many customer buckets the heavy data steps
    split their work, each bucket a step of its own (docs/deployment.md, "Several workers")."""
    raw = os.environ.get(BUCKETS_ENV, "").strip() or "1"
    return check_buckets(raw, f"${BUCKETS_ENV}")


def check_buckets(raw: int | str, setting: str) -> int:
    """`raw` as a bucket count, or a SettingError naming `setting`."""
    try:
        count = int(raw)
    except ValueError:
        count = 0
    if not 1 <= count <= MAX_BUCKETS:
        raise SettingError(
            f"{setting} must be a whole number of buckets from 1 to {MAX_BUCKETS}, got {raw!r} "
            f"(e.g. {BUCKETS_ENV}=4)"
        )
    return count


# -- set when the package is imported


def let_idle_blas_threads_sleep() -> None:
    """`OPENBLAS_THREAD_TIMEOUT=4`, unless the environment sets it: idle OpenBLAS threads then
    sleep at once instead of spinning, taking the cores the step needs (docs/benchmark.md).
    OpenBLAS reads it when it is loaded, so this runs before numpy is imported."""
    os.environ.setdefault(OPENBLAS_TIMEOUT_ENV, "4")
