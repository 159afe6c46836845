"""The training data: `gold.customer_features` and its seeded, per-customer train/test split.

A customer is in the test split when a seeded MD5 of its id falls in the lowest `test_size` share
of the hash range. The split is stratified in expectation (the hash ignores the label) and, unlike
a shuffled split, stable: as the features table is refreshed, every customer stays on its side.
So the current champion, trained with the same seed, is never scored on customers it trained on.
"""

from dataclasses import dataclass

import dagster as dg
import numpy as np
import pandas as pd

from lakehouse_assets.layers.features import FEATURE_COLUMNS, LABEL
from lakehouse_assets.resources import LakehouseDuckDB
from lakehouse_assets.tables import CUSTOMER_FEATURES


@dataclass
class Split:
    x_train: pd.DataFrame  # columns FEATURE_COLUMNS, so the model knows its feature names
    x_test: pd.DataFrame
    y_train: np.ndarray
    y_test: np.ndarray


def features_fingerprint(conn) -> str:
    """Rows and a content hash of the features table, to tell whether it changed."""
    cols = ", ".join(("customer_id", LABEL, *FEATURE_COLUMNS))
    rows, digest = conn.execute(
        f"SELECT count(*), sum(hash({cols})::HUGEINT) FROM {CUSTOMER_FEATURES}"
    ).fetchone()
    return f"{rows}:{digest}"


HASH_BUCKETS = 1_000_000


def feature_frame(columns) -> pd.DataFrame:
    """The model's input: FEATURE_COLUMNS, in order, from a mapping of arrays. Columns keep their
    SQL types (BIGINT counts as int64, DOUBLE as float64): the MLflow signature records them,
    so a row read from `gold.scoring_features` is accepted as it is."""
    return pd.DataFrame({c: np.asarray(columns[c]) for c in FEATURE_COLUMNS})


def load_split(
    duckdb: LakehouseDuckDB, test_size: float, seed: int, max_train_rows: int = 0
) -> Split:
    """Features ordered by customer, split by a seeded hash of `customer_id`; `max_train_rows` > 0
    trains on a stratified, seeded subsample of the training side."""
    from sklearn.model_selection import train_test_split

    with duckdb.get_connection() as conn:
        arrays = conn.execute(
            f"SELECT {', '.join(FEATURE_COLUMNS)}, {LABEL}, "
            f"md5_number_lower(customer_id || '/' || $seed) % {HASH_BUCKETS} < $cut AS in_test "
            f"FROM {CUSTOMER_FEATURES} ORDER BY customer_id",
            {"seed": str(seed), "cut": round(test_size * HASH_BUCKETS)},
        ).fetchnumpy()
    x = feature_frame(arrays)
    y = arrays[LABEL].astype("int64")
    in_test = arrays["in_test"].astype(bool)
    x_train, x_test = x[~in_test].reset_index(drop=True), x[in_test].reset_index(drop=True)
    y_train, y_test = y[~in_test], y[in_test]
    for side, labels in (("training", y_train), ("test", y_test)):
        if len(np.unique(labels)) < 2:
            raise dg.Failure(
                f"The {side} split of {CUSTOMER_FEATURES} ({len(labels)} customers) holds fewer than two label "
                "classes; a classifier cannot be trained or scored. More customers are needed.",
                allow_retries=False,
            )
    if 0 < max_train_rows < len(y_train):
        keep, _ = train_test_split(
            np.arange(len(y_train)), train_size=max_train_rows, stratify=y_train, random_state=seed
        )
        x_train, y_train = x_train.iloc[keep].reset_index(drop=True), y_train[keep]
    return Split(x_train, x_test, y_train, y_test)
