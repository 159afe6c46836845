"""Every setting is checked where it is read: a bad value fails with one line that names the
variable, the value and an example of a good value (`SettingError`). Pure functions of the
environment, so no graph runs here."""

import pytest

from lakehouse_assets.lib import settings
from lakehouse_assets.lib.settings import SettingError


def setting_error(monkeypatch, name: str, value: str, read) -> str:
    """The message of the SettingError that reading `name`=`value` with `read` raises."""
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingError) as error:
        read()
    message = str(error.value)
    assert name in message and repr(value.strip()) in message and "e.g." in message, message
    assert "\n" not in message, message
    return message


# -- DuckDB's memory limit


@pytest.mark.parametrize("value", ["8GB", "512MiB", "1.5GB", "8 GB", " 2GB ", "1MB"])
def test_memory_limits_duckdb_takes_pass(monkeypatch, value):
    monkeypatch.setenv(settings.MEMORY_LIMIT_ENV, value)
    assert settings.duckdb_memory_limit() == value.strip()


@pytest.mark.parametrize("value", ["", "  "])
def test_an_unset_memory_limit_is_empty(monkeypatch, value):
    monkeypatch.setenv(settings.MEMORY_LIMIT_ENV, value)
    assert settings.duckdb_memory_limit() == ""
    monkeypatch.delenv(settings.MEMORY_LIMIT_ENV)
    assert settings.duckdb_memory_limit() == ""


@pytest.mark.parametrize(
    ("value", "duckdb_said"),
    [
        ("lots", "Memory must have a number"),  # the example
        ("0", "Unknown unit for memory"),
        ("1.5", "Unknown unit for memory"),
        ("1PB", "Unknown unit for memory"),
        ("80%", "Unknown unit for memory: '%'"),  # DuckDB 1.5.5 takes no share (2.0 does)
        ("1e30GB", "too large"),
    ],
)
def test_memory_limits_duckdb_refuses_fail_with_its_reason_last(monkeypatch, value, duckdb_said):
    message = setting_error(
        monkeypatch, settings.MEMORY_LIMIT_ENV, value, settings.duckdb_memory_limit
    )
    assert f"(e.g. {settings.MEMORY_LIMIT_ENV}=8GB). DuckDB said: " in message, message
    assert duckdb_said in message.split("DuckDB said: ")[1], message
    assert "ParserException" not in message


@pytest.mark.parametrize("value", ["-1", "-5GB", "none"])
def test_no_limit_fails(monkeypatch, value):
    message = setting_error(
        monkeypatch, settings.MEMORY_LIMIT_ENV, value, settings.duckdb_memory_limit
    )
    assert "no limit" in message


@pytest.mark.parametrize("value", ["0GB", "1B", "10KB"])
def test_a_memory_limit_too_small_for_any_query_fails(monkeypatch, value):
    message = setting_error(
        monkeypatch, settings.MEMORY_LIMIT_ENV, value, settings.duckdb_memory_limit
    )
    assert "too small" in message and "Out of Memory Error" in message


@pytest.mark.parametrize("value", ["8GB x", "8 G B", "8GB\nx"])
def test_text_duckdb_would_ignore_fails(monkeypatch, value):
    message = setting_error(
        monkeypatch, settings.MEMORY_LIMIT_ENV, value, settings.duckdb_memory_limit
    )
    assert "ignore" in message


def test_check_memory_limit_names_the_setting_it_is_given():
    setting = "the duckdb resource's memory_limit"
    assert settings.check_memory_limit(" 3GB ", setting) == "3GB"
    with pytest.raises(SettingError) as error:
        settings.check_memory_limit("lots", setting)
    message = str(error.value)
    assert message.startswith(f"{setting} must be ") and "'lots'" in message, message
    assert "(e.g. 8GB). DuckDB said: Parser Error: Memory must have a number" in message
    assert "\n" not in message and isinstance(error.value, ValueError)


def test_memory_limit_checks_are_cached():
    settings.check_memory_limit("7GB", settings.MEMORY_LIMIT_ENV)
    hits = settings._memory_limit_problem.cache_info().hits
    settings.check_memory_limit("7GB", "the duckdb resource's memory_limit")
    assert settings._memory_limit_problem.cache_info().hits == hits + 1


# -- paths


def test_paths_that_exist_as_the_wrong_kind_fail(lakehouse_home, monkeypatch, tmp_path):
    a_file = tmp_path / "a_file"
    a_file.write_text("")
    a_folder = tmp_path / "a_folder"
    a_folder.mkdir()
    for name, read, value in [
        (settings.HOME_ENV, settings.lakehouse_home, a_file),
        (settings.LANDING_ENV, settings.landing_dir, a_file),
        (settings.DUCKDB_ENV, settings.duckdb_path, a_folder),
        (settings.HOME_ENV, settings.lakehouse_home, a_file / "under" / "a_file"),
        (settings.LANDING_ENV, settings.landing_dir, a_file / "landing"),
        (settings.DUCKDB_ENV, settings.duckdb_path, a_file / "lakehouse.duckdb"),
    ]:
        message = setting_error(monkeypatch, name, str(value), read)
        assert f"(e.g. {name}=" in message
        monkeypatch.delenv(name)


def test_paths_that_do_not_exist_pass_and_nothing_is_created(lakehouse_home, monkeypatch, tmp_path):
    monkeypatch.setenv(settings.LANDING_ENV, str(tmp_path / "no" / "landing"))
    monkeypatch.setenv(settings.DUCKDB_ENV, str(tmp_path / "no" / "lakehouse.duckdb"))
    assert settings.lakehouse_home() == lakehouse_home
    assert settings.landing_dir() == tmp_path / "no" / "landing"
    assert settings.duckdb_path() == tmp_path / "no" / "lakehouse.duckdb"
    assert not lakehouse_home.exists() and not (tmp_path / "no").exists()


def test_paths_that_exist_as_the_right_kind_pass(lakehouse_home, monkeypatch, tmp_path):
    (tmp_path / "landing").mkdir()
    (tmp_path / "db.duckdb").write_text("")
    monkeypatch.setenv(settings.HOME_ENV, str(tmp_path))
    monkeypatch.setenv(settings.LANDING_ENV, "landing")  # relative: to the working directory
    monkeypatch.setenv(settings.DUCKDB_ENV, str(tmp_path / "db.duckdb"))
    assert settings.lakehouse_home() == tmp_path
    assert settings.landing_dir() == tmp_path / "landing"
    assert settings.duckdb_path() == tmp_path / "db.duckdb"


def test_unset_paths_are_the_defaults(lakehouse_home):
    assert settings.landing_dir() == lakehouse_home / "landing"
    assert settings.duckdb_path() == lakehouse_home / "lakehouse.duckdb"


# -- MLflow's tracking URI


@pytest.mark.parametrize(
    "uri",
    [
        "http://localhost:5000",
        "https://mlflow.example.com",
        "sqlite:///mlflow.db",
        "sqlite:////srv/lakehouse/mlflow.db",
        "sqlite+pysqlite:///mlflow.db",
        "postgresql://mlflow@db/mlflow",
        "postgresql+psycopg://mlflow@db/mlflow",
        "mysql+pymysql://mlflow@db/mlflow",
        "mssql+pyodbc://mlflow@db/mlflow",
        "file:///srv/lakehouse/mlruns",
        "/srv/lakehouse/mlruns",  # a file store
        "mlruns",
        "databricks",
        "databricks://profile",
        "databricks-uc",
        "uc:databricks",
    ],
)
def test_tracking_uris_mlflow_knows_pass(lakehouse_home, monkeypatch, uri):
    monkeypatch.setenv(settings.TRACKING_URI_ENV, uri)
    assert settings.mlflow_tracking_uri() == uri


def test_an_unset_tracking_uri_is_the_local_sqlite_store(lakehouse_home):
    assert settings.mlflow_tracking_uri() == f"sqlite:///{lakehouse_home / 'mlflow.db'}"


@pytest.mark.parametrize(
    ("uri", "example"),
    [
        ("localhost:5000", "http://localhost:5000"),  # urlparse: the scheme "localhost"
        ("127.0.0.1:5000", "http://127.0.0.1:5000"),  # urlparse: no scheme, a path
        ("s3://bucket/mlflow", "http://"),  # an artifact store, not a tracking store
        ("postgres://mlflow@db/mlflow", "http://"),  # SQLAlchemy's name is postgresql
        ("http://", "http://"),
        ("sqlite://", "sqlite:////"),
        ("sqlite:///", "sqlite:////"),
        ("sqlite:///:memory:", "sqlite:////"),
        ("sqlite://mlflow.db", "sqlite:////"),  # two slashes: mlflow.db is a host
    ],
)
def test_tracking_uris_mlflow_cannot_use_fail(lakehouse_home, monkeypatch, uri, example):
    read = settings.mlflow_tracking_uri
    message = setting_error(monkeypatch, settings.TRACKING_URI_ENV, uri, read)
    assert f"(e.g. {settings.TRACKING_URI_ENV}={example}" in message, message


def test_a_tracking_uri_password_is_not_in_the_message(lakehouse_home, monkeypatch):
    monkeypatch.setenv(settings.TRACKING_URI_ENV, "postgres://mlflow:hunter2@db/mlflow")
    with pytest.raises(SettingError) as error:
        settings.mlflow_tracking_uri()
    message = str(error.value)
    assert "hunter2" not in message and "'postgres://mlflow:***@db/mlflow'" in message, message


# -- the signing key and the profile


def test_the_signing_key_is_never_in_an_error(lakehouse_home, monkeypatch):
    key = "s3cr3t-signing-key-value"
    monkeypatch.setenv(settings.SIGNING_KEY_ENV, f"  {key}  ")
    assert settings.model_signing_key() == key
    bad = [
        (settings.MEMORY_LIMIT_ENV, "lots", settings.duckdb_memory_limit),
        (settings.TRACKING_URI_ENV, "localhost:5000", settings.mlflow_tracking_uri),
        (settings.RETRY_DELAY_ENV, "soon", settings.mlflow_retry_delay_seconds),
        (settings.SENSOR_INTERVAL_ENV, "0", settings.sensor_interval_seconds),
        (settings.DUCKDB_ENV, str(lakehouse_home.parent), settings.duckdb_path),
    ]
    for name, value, read in bad:
        assert key not in setting_error(monkeypatch, name, value, read)
        monkeypatch.delenv(name)


def test_a_blank_signing_key_is_none(monkeypatch):
    monkeypatch.setenv(settings.SIGNING_KEY_ENV, "   ")
    assert settings.model_signing_key() is None


def test_the_profile_is_read_as_is(monkeypatch):
    monkeypatch.setenv(settings.PROFILE_ENV, " Staging ")
    assert settings.profile() == "staging"  # profiles.py names the variable if it is unknown


# -- read when the code location loads


@pytest.mark.parametrize("value", ["soon", "-1", "nan", "inf"])
def test_a_bad_retry_delay_fails(monkeypatch, value):
    read = settings.mlflow_retry_delay_seconds
    message = setting_error(monkeypatch, settings.RETRY_DELAY_ENV, value, read)
    assert f"(e.g. {settings.RETRY_DELAY_ENV}=2)" in message


def test_a_good_retry_delay_passes(monkeypatch):
    monkeypatch.setenv(settings.RETRY_DELAY_ENV, "0.5")
    assert settings.mlflow_retry_delay_seconds() == 0.5


@pytest.mark.parametrize("value", ["often", "0", "1.5"])
def test_a_bad_sensor_interval_fails(monkeypatch, value):
    read = settings.sensor_interval_seconds
    message = setting_error(monkeypatch, settings.SENSOR_INTERVAL_ENV, value, read)
    assert f"(e.g. {settings.SENSOR_INTERVAL_ENV}=30)" in message


def test_a_good_sensor_interval_passes(monkeypatch):
    monkeypatch.setenv(settings.SENSOR_INTERVAL_ENV, "60")
    assert settings.sensor_interval_seconds() == 60


# -- the lake's catalog and data path


def test_an_unset_catalog_and_data_path_live_under_the_home(lakehouse_home):
    assert settings.lake_catalog() == f"sqlite:{lakehouse_home / 'catalog.sqlite'}"
    assert settings.lake_data_path() == f"{lakehouse_home / 'lake'}/"


@pytest.mark.parametrize(
    ("value", "catalog"),
    [
        ("sqlite:/srv/lakehouse/catalog.sqlite", "sqlite:/srv/lakehouse/catalog.sqlite"),
        ("ducklake:sqlite:/srv/catalog.sqlite", "sqlite:/srv/catalog.sqlite"),
        (" postgres:dbname=lake host=db ", "postgres:dbname=lake host=db"),
    ],
)
def test_sqlite_and_postgres_catalogs_pass_without_the_ducklake_prefix(
    lakehouse_home, monkeypatch, value, catalog
):
    monkeypatch.setenv(settings.CATALOG_ENV, value)
    assert settings.lake_catalog() == catalog


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("duckdb:/srv/lake.ducklake", "admits one process at a time"),
        ("md:my_lake", "admits one process at a time"),
        ("/srv/lake.duckdb", "admits one process at a time"),
        ("sqlite:", "not sqlite:<file> or postgres:"),
        ("mysql:db=lake", "not sqlite:<file> or postgres:"),
    ],
)
def test_catalogs_other_than_sqlite_or_postgres_fail(lakehouse_home, monkeypatch, value, why):
    message = setting_error(monkeypatch, settings.CATALOG_ENV, value, settings.lake_catalog)
    assert why in message, message


def test_a_catalog_password_is_not_in_the_message(lakehouse_home, monkeypatch):
    monkeypatch.setenv(settings.CATALOG_ENV, "duckdb:host=db password='hunter 2'")
    with pytest.raises(SettingError) as error:
        settings.lake_catalog()
    assert "hunter" not in str(error.value) and "password=***" in str(error.value)


@pytest.mark.parametrize(
    ("catalog", "redacted"),
    [
        (
            "postgres:dbname=lake password=s3cret host=db",
            "postgres:dbname=lake password=*** host=db",
        ),
        ("postgres:PASSWORD = 's3 cret' host=db", "postgres:PASSWORD = *** host=db"),
        ("postgres:postgresql://lake:s3cret@db/lake", "postgres:postgresql://lake:***@db/lake"),
        ("sqlite:/srv/catalog.sqlite", "sqlite:/srv/catalog.sqlite"),
    ],
)
def test_redacted_catalog_hides_only_the_password(catalog, redacted):
    assert settings.redacted_catalog(catalog) == redacted


@pytest.mark.parametrize(
    ("value", "path"),
    [("s3://lake/prod", "s3://lake/prod/"), ("s3://lake/prod///", "s3://lake/prod/")],
)
def test_s3_data_paths_end_with_one_slash(lakehouse_home, monkeypatch, value, path):
    monkeypatch.setenv(settings.DATA_PATH_ENV, value)
    assert settings.lake_data_path() == path


def test_a_folder_data_path_is_made_absolute(lakehouse_home, monkeypatch, tmp_path):
    monkeypatch.setenv(settings.DATA_PATH_ENV, "lake")  # relative: to the working directory
    assert settings.lake_data_path() == f"{tmp_path / 'lake'}/"


@pytest.mark.parametrize(
    ("value", "problem"),
    [("gs://bucket/lake", "'gs' is not supported"), ("s3:///prod", "must name a bucket")],
)
def test_data_paths_on_other_schemes_or_without_a_bucket_fail(
    lakehouse_home, monkeypatch, value, problem
):
    message = setting_error(monkeypatch, settings.DATA_PATH_ENV, value, settings.lake_data_path)
    assert problem in message, message


def test_a_data_path_that_is_a_file_fails(lakehouse_home, monkeypatch, tmp_path):
    (tmp_path / "a_file").write_text("")
    message = setting_error(
        monkeypatch, settings.DATA_PATH_ENV, str(tmp_path / "a_file"), settings.lake_data_path
    )
    assert "which is a file" in message


def test_the_s3_endpoint_prefers_the_s3_specific_variable(monkeypatch):
    for name in settings.S3_ENDPOINT_ENVS:
        monkeypatch.delenv(name, raising=False)
    assert settings.s3_endpoint() == ""
    monkeypatch.setenv("AWS_ENDPOINT_URL", " http://minio:9000 ")
    assert settings.s3_endpoint() == "http://minio:9000"
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://seaweed:8333")
    assert settings.s3_endpoint() == "http://seaweed:8333"


def test_a_quoted_password_with_an_escaped_quote_is_redacted_whole():
    catalog = "postgres:dbname=lake password='it\\'s a secret' host=db"
    assert settings.redacted_catalog(catalog) == "postgres:dbname=lake password=*** host=db"
