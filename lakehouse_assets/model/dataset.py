"""The training data: `gold.customer_features` and its seeded, stratified train/test split."""

from dataclasses import dataclass

import dagster as dg
import numpy as np

from lakehouse_assets.layers.features import FEATURE_COLUMNS, LABEL, TABLE
from lakehouse_assets.resources import LakehouseDuckDB


@dataclass
class Split:
    x_train: np.ndarray
    x_test: np.ndarray
    y_train: np.ndarray
    y_test: np.ndarray
    fingerprint: str


def features_fingerprint(conn) -> str:
    """Rows and a content hash of the features table, to tell whether it changed."""
    cols = ", ".join(("customer_id", LABEL, *FEATURE_COLUMNS))
    rows, digest = conn.execute(
        f"SELECT count(*), sum(hash({cols})::HUGEINT) FROM {TABLE}"
    ).fetchone()
    return f"{rows}:{digest}"


def load_split(
    duckdb: LakehouseDuckDB, test_size: float, seed: int, max_train_rows: int = 0
) -> Split:
    """Features ordered by customer, split with `seed`; `max_train_rows` > 0 subsamples training."""
    from sklearn.model_selection import train_test_split

    with duckdb.get_connection() as conn:
        fingerprint = features_fingerprint(conn)
        arrays = conn.execute(
            f"SELECT {', '.join(FEATURE_COLUMNS)}, {LABEL} FROM {TABLE} ORDER BY customer_id"
        ).fetchnumpy()
    x = np.column_stack([arrays[c].astype("float64") for c in FEATURE_COLUMNS])
    y = arrays[LABEL].astype("int64")
    if len(np.unique(y)) < 2:
        raise dg.Failure(
            f"{TABLE} holds one label class only; a classifier cannot be trained.",
            allow_retries=False,
        )
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=test_size, stratify=y, random_state=seed
    )
    if 0 < max_train_rows < len(y_train):
        keep, _ = train_test_split(
            np.arange(len(y_train)), train_size=max_train_rows, stratify=y_train, random_state=seed
        )
        x_train, y_train = x_train[keep], y_train[keep]
    return Split(x_train, x_test, y_train, y_test, fingerprint)
