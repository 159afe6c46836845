"""Benchmark only: the four data layers written in pandas, stored by dagster-duckdb-pandas.

    dagster asset materialize -m benchmarks.bench_pandas --select '*'

The reference of issue 12's target ("a quarter of the wall time of the same layers written in
pandas and stored through dagster-duckdb-pandas' IO manager"), rebuilt so that it can be timed in
the same run as the pipeline (`python -m benchmarks.bench --pandas`). Each asset returns a
DataFrame; `DuckDBPandasIOManager` writes it to a table named after the asset in the schema of
its layer, and loads the tables the next asset reads (only the columns it needs). The database is
`$LAKEHOUSE_HOME/pandas_layers.duckdb` (resolved when the module loads), never the pipeline's.

Same work as the pipeline's layers, idiomatic vectorised pandas (no loop over rows or customers):
bronze reads every landed file as text with its lineage; silver types, validates, rejects with a
reason and drops later copies (first by ingestion time, file, row); gold summarizes each customer;
`customer_features` computes the 30 features of `features/gaps.sql` + `features/fresh.sql` at cutoff =
latest event - horizon, and the label. Unlike the pipeline it is not incremental (every run
rebuilds every table) and keeps no file ledger (`bronze.ingested_files`) or silver load history.
Differences by definition: ages here are exact fractional seconds, where the SQL counts whole
second boundaries (`date_diff('second', ...)`), so timestamps with fractions of a second may
sit on the other side of a window edge; the samples have whole seconds. See
lakehouse_assets_tests/integration/test_bench_pandas.py.
"""

from datetime import UTC, datetime

import dagster as dg
import numpy as np
import pandas as pd
import pyarrow as pa
from dagster_duckdb_pandas import DuckDBPandasIOManager

from lakehouse_assets.defs.bronze.bronze_transactions import LINEAGE_COLUMNS
from lakehouse_assets.defs.features.customer_features import FeaturesConfig
from lakehouse_assets.defs.silver.silver_transactions import ISO_FORMAT
from lakehouse_assets.lib import settings
from lakehouse_assets.lib.features import FEATURE_COLUMNS, LABEL, PURCHASE_SPAN
from lakehouse_assets.lib.landing import CONTRACT_COLUMNS, REQUIRED_COLUMNS, describe_files
from lakehouse_assets.lib.resources import LandingZone

DATABASE_FILE = "pandas_layers.duckdb"
LINEAGE = list(LINEAGE_COLUMNS)
TEXT_COLUMNS = [*LINEAGE, *CONTRACT_COLUMNS]  # what silver reads of bronze
PURCHASE_COLUMNS = ["customer_id", "event_time", "amount", "quantity"]  # gold and features
INT32_MAX = 2**31 - 1
SECONDS_PER_DAY = 86_400.0
TEXT = pd.ArrowDtype(pa.string())


def _nonempty(text: pd.Series) -> pd.Series:
    """Trimmed text, NaN when empty (SQL: nullif(trim(x), ''))."""
    trimmed = text.str.strip()
    return trimmed.where(trimmed != "")


@dg.asset(group_name="pandas_bronze", metadata={"schema": "bronze"})
def bronze_transactions(context: dg.AssetExecutionContext, landing: LandingZone) -> pd.DataFrame:
    """Every landed row as text, with `_source_file`, `_source_row` (1-based) and `_ingested_at`;
    files are hashed and checked like the pipeline's bronze (empty, unreadable, missing or clashing
    columns fail the run)."""
    folder = landing.folder()
    files = describe_files(folder, landing.data_files())  # SHA-256 of each file, as bronze does
    if not files:
        raise dg.Failure(f"No CSV or Parquet files in the landing folder {folder}")
    ingested_at = pd.Timestamp(datetime.now(UTC).replace(tzinfo=None))
    frames = []
    for f in files:
        if f.size_bytes == 0:
            raise dg.Failure(f"Landing file {f.path} is empty (0 bytes)")
        if f.path.suffix.lower() == ".parquet":  # Arrow-backed text: 1/3 of the memory of str
            frame = pd.read_parquet(f.path, dtype_backend="pyarrow")
        else:
            frame = pd.read_csv(f.path, dtype=str, keep_default_na=False, na_values=[""])
        names = [str(c).strip().lower() for c in frame.columns]
        missing = [c for c in REQUIRED_COLUMNS if c not in names]
        if len(set(names)) != len(names) or missing or set(names) & set(LINEAGE):
            raise dg.Failure(f"Landing file {f.path} has bad columns {list(frame.columns)}")
        if frame.empty:
            raise dg.Failure(f"Landing file {f.path} holds no rows")
        frame.columns = names
        for name in names:  # every value as text (Parquet may hold typed columns)
            if not pd.api.types.is_string_dtype(frame[name]):
                frame[name] = frame[name].astype(TEXT)
        frame.insert(0, "_source_file", pd.Series(f.relative_path, frame.index, dtype=TEXT))
        frame.insert(1, "_source_row", np.arange(1, len(frame) + 1, dtype=np.int64))
        frame.insert(2, "_ingested_at", ingested_at)
        frames.append(frame)
        context.log.info(f"{f.relative_path}: {len(frame):,} rows read")
    bronze = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    for name in CONTRACT_COLUMNS:  # optional columns no file has: NULL, as in the pipeline
        if name not in bronze:
            bronze[name] = None
    return bronze


def typed(bronze: pd.DataFrame, now: pd.Timestamp) -> pd.DataFrame:
    """Every bronze row typed, with the reason it is invalid (None when valid): `silver/typed.sql`."""
    customer_id = _nonempty(bronze["customer_id"])
    text_time = bronze["event_time"]
    event_time = pd.to_datetime(text_time, format=ISO_FORMAT, errors="coerce")
    other = event_time.isna() & text_time.notna()  # offsets, dates, spaces: the general parser
    if other.any():
        parsed = pd.to_datetime(
            text_time[other].str.strip(), format="ISO8601", errors="coerce", utc=True
        )
        event_time[other] = parsed.dt.tz_convert(None)
    amount = pd.to_numeric(bronze["amount"].str.strip(), errors="coerce")
    quantity_text = _nonempty(bronze["quantity"])
    number = pd.to_numeric(quantity_text, errors="coerce")
    whole = (number >= 0) & (number == np.floor(number)) & (number <= INT32_MAX)
    quantity = number.where(whole).astype("Int32")
    invalid = {  # the first that applies: assigned last
        "missing_customer_id": customer_id.isna(),
        "bad_event_time": event_time.isna(),
        "future_event_time": event_time > now,
        "bad_amount": amount.isna() | ~np.isfinite(amount) | (amount < 0),
        "bad_quantity": quantity_text.notna() & quantity.isna(),
    }
    reason = pd.Series(None, index=bronze.index, dtype=object)
    for name, rows in reversed(invalid.items()):
        reason[rows] = name
    return pd.DataFrame(
        {
            **{c: bronze[c] for c in LINEAGE},
            "transaction_id": _nonempty(bronze["transaction_id"]),
            "customer_id": customer_id,
            "event_time": event_time,
            "amount": amount,
            "quantity": quantity,
            "invalid_reason": reason,
        }
    )


def later_copies(rows: pd.DataFrame) -> pd.Index:
    """Index of the valid rows whose identity (transaction_id, else the whole record) an earlier
    valid row has, by ingestion time, file and row. Only repeated ids (NaN included) can be."""
    ids = rows.loc[rows["invalid_reason"].isna(), "transaction_id"]
    candidates = rows.loc[ids.index[ids.duplicated(keep=False)]].sort_values(LINEAGE)
    identity = candidates[["transaction_id", *PURCHASE_COLUMNS]].copy()
    has_id = identity["transaction_id"].notna()
    for name in PURCHASE_COLUMNS:  # the record counts only without a transaction_id
        identity[name] = identity[name].astype(object).where(~has_id)
    return candidates.index[identity.duplicated(keep="first").to_numpy()]


@dg.multi_asset(
    name="silver_transactions",
    group_name="pandas_silver",
    ins={"bronze_transactions": dg.AssetIn(metadata={"columns": TEXT_COLUMNS})},
    outs={
        "silver_transactions": dg.AssetOut(metadata={"schema": "silver"}),
        "rejected_transactions": dg.AssetOut(metadata={"schema": "silver"}),
    },
)
def silver_transactions(
    context: dg.AssetExecutionContext, bronze_transactions: pd.DataFrame
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Typed, validated, deduplicated transactions, and every rejected row (text as landed)
    with its reason: rows(bronze) = rows(silver) + rows(rejected)."""
    now = pd.Timestamp(datetime.now(UTC).replace(tzinfo=None))
    rows = typed(bronze_transactions, now)
    copies = later_copies(rows)
    reason = rows["invalid_reason"].copy()
    reason[copies] = "duplicate"
    kept = reason.isna()
    silver = rows.loc[kept, ["transaction_id", *PURCHASE_COLUMNS, *LINEAGE]]
    rejected = bronze_transactions.loc[~kept, TEXT_COLUMNS]
    rejected.insert(3, "reason", reason[~kept])
    context.log.info(f"silver: {len(silver):,} rows; rejected: {reason.value_counts().to_dict()}")
    return silver.reset_index(drop=True), rejected.reset_index(drop=True)


@dg.asset(
    group_name="pandas_gold",
    metadata={"schema": "gold"},
    ins={"silver_transactions": dg.AssetIn(metadata={"columns": PURCHASE_COLUMNS})},
)
def gold_customer_summary(silver_transactions: pd.DataFrame) -> pd.DataFrame:
    """One row per customer: first and last purchase, transactions, active days, amounts and
    quantities (`gold/summary.sql`)."""
    s = silver_transactions.assign(day=silver_transactions["event_time"].dt.normalize())
    summary = s.groupby("customer_id", sort=False).agg(
        first_purchase_at=("event_time", "min"),
        last_purchase_at=("event_time", "max"),
        transaction_count=("event_time", "size"),
        active_days=("day", "nunique"),
        total_amount=("amount", "sum"),
        avg_amount=("amount", "mean"),
        max_amount=("amount", "max"),
        total_quantity=("quantity", "sum"),
        avg_quantity=("quantity", "mean"),
        quantities=("quantity", "count"),
    )
    # SQL's sum of only NULLs is NULL, pandas' is 0
    summary["total_quantity"] = summary["total_quantity"].where(summary.pop("quantities") > 0)
    return summary.reset_index()


def features_at(silver: pd.DataFrame, cutoff: pd.Timestamp) -> pd.DataFrame:
    """The 30 features of every customer with a purchase at or before `cutoff`, from those
    purchases only: `features/gaps.sql`, `features/fresh.sql` and `AT_CUTOFF`."""
    p = silver.loc[silver["event_time"] <= cutoff, PURCHASE_COLUMNS]
    customer, customers = pd.factorize(p["customer_id"])  # group by integer codes
    age = (cutoff - p["event_time"]).dt.total_seconds().to_numpy() / SECONDS_PER_DAY
    amount = p["amount"].to_numpy()
    quantity = p["quantity"].fillna(1).to_numpy(dtype=np.int64)
    frame = pd.DataFrame(
        {
            "customer": customer,
            "age": age,
            "time": p["event_time"].to_numpy(),
            "day": p["event_time"].dt.floor("D").to_numpy(),
            "amount": amount,
            "quantity": quantity,
        }
    )
    for days in (30, 90, 180):
        recent = age <= days
        frame[f"txn_last_{days}d"] = recent
        frame[f"amount_last_{days}d"] = np.where(recent, amount, 0.0)
    previous = (age > 90) & (age <= 180)
    frame["txn_prev_90d"] = previous
    frame["amount_prev_90d"] = np.where(previous, amount, 0.0)
    windows = [c for c in frame.columns if c.startswith(("txn_", "amount_"))]
    f = frame.groupby("customer").agg(
        recency_days=("age", "min"),
        tenure_days=("age", "max"),
        first_purchase_at=("time", "min"),
        last_purchase_at=("time", "max"),
        frequency=("age", "size"),
        active_days=("day", "nunique"),
        monetary_total=("amount", "sum"),
        monetary_avg=("amount", "mean"),
        monetary_max=("amount", "max"),
        monetary_std=("amount", "std"),
        quantity_total=("quantity", "sum"),
        quantity_avg=("quantity", "mean"),
        **{c: (c, "sum") for c in windows},
    )
    # Gaps between a customer's consecutive purchases, latest first: the first gap is the one
    # before the latest purchase (0 when two share the latest age).
    by_age = frame[["customer", "age"]].sort_values("age")
    gap = by_age.groupby("customer")["age"].diff()
    gaps = gap.groupby(by_age["customer"]).agg(["max", "std", "first"])
    f["max_gap_days"] = gaps["max"].fillna(0)
    f["gap_std_days"] = gaps["std"].fillna(0)
    f["last_gap_days"] = gaps["first"].fillna(0)
    f["monetary_std"] = f["monetary_std"].fillna(0)
    for name in windows:
        if name.startswith("txn_"):
            f[name] = f[name].astype(np.int64)
    several = f["frequency"] > 1
    span_days = (
        f["last_purchase_at"] - f["first_purchase_at"]
    ).dt.total_seconds() / SECONDS_PER_DAY
    f["mean_gap_days"] = np.where(several, span_days / (f["frequency"] - 1).clip(lower=1), 0.0)
    f["purchases_per_30d"] = f["frequency"] * 30.0 / f["tenure_days"].clip(lower=1)
    f["txn_trend_90d"] = f["txn_last_90d"] - f["txn_prev_90d"]
    f["amount_trend_90d"] = f["amount_last_90d"] - f["amount_prev_90d"]
    usual = np.where(several, f["mean_gap_days"], f["tenure_days"])
    longest = np.where(several, f["max_gap_days"], f["tenure_days"])
    f["recency_to_mean_gap"] = f["recency_days"] / np.maximum(usual, 1)
    f["recency_to_max_gap"] = f["recency_days"] / np.maximum(longest, 1)
    positive_gap = f["mean_gap_days"] > 0
    f["gap_cv"] = np.where(positive_gap, f["gap_std_days"] / f["mean_gap_days"].where(positive_gap), 0.0)  # fmt: skip
    f["txn_share_90d"] = f["txn_last_90d"] / f["frequency"]
    f["txn_share_180d"] = f["txn_last_180d"] / f["frequency"]
    spent = f["monetary_total"] > 0
    for days in (90, 180):
        share = f[f"amount_last_{days}d"] / f["monetary_total"].where(spent)
        f[f"amount_share_{days}d"] = share.where(spent, 0.0)
    f.insert(0, "customer_id", customers[f.index.to_numpy()])
    return f[["customer_id", *FEATURE_COLUMNS, *PURCHASE_SPAN]].reset_index(drop=True)


@dg.asset(
    group_name="pandas_features",
    metadata={"schema": "gold"},
    deps=[gold_customer_summary],
    ins={"silver_transactions": dg.AssetIn(metadata={"columns": PURCHASE_COLUMNS})},
)
def customer_features(
    context: dg.AssetExecutionContext, config: FeaturesConfig, silver_transactions: pd.DataFrame
) -> pd.DataFrame:
    """Training rows: the 30 features at cutoff = latest event - `horizon_days`, and `churned`
    (1 = no purchase within `horizon_days` after the cutoff), ordered by customer."""
    s = silver_transactions
    cutoff = s["event_time"].max() - pd.Timedelta(days=config.horizon_days)
    context.log.info(f"Feature cutoff {cutoff}")
    features = features_at(s, cutoff)
    horizon_end = cutoff + pd.Timedelta(days=config.horizon_days)
    after = (s["event_time"] > cutoff) & (s["event_time"] <= horizon_end)
    active = s.loc[after, "customer_id"].unique()
    features[LABEL] = (~features["customer_id"].isin(active)).astype(np.int32)
    return features.sort_values("customer_id", ignore_index=True)


defs = dg.Definitions(
    assets=[bronze_transactions, silver_transactions, gold_customer_summary, customer_features],
    resources={
        "landing": LandingZone(),
        "io_manager": DuckDBPandasIOManager(
            database=str(settings.lakehouse_home() / DATABASE_FILE)
        ),
    },
    executor=dg.in_process_executor,
)
