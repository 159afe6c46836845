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

from lakehouse_assets.lib.features import FEATURE_COLUMNS, LABEL
from lakehouse_assets.lib.resources import LakehouseDuckDB
from lakehouse_assets.lib.sql import sql
from lakehouse_assets.lib.tables import CUSTOMER_FEATURES


@dataclass
class Split:
    x_train: pd.DataFrame  # columns FEATURE_COLUMNS, so the model knows its feature names
    x_test: pd.DataFrame
    y_train: np.ndarray
    y_test: np.ndarray


def features_at(snapshot: int | None) -> str:
    """The features table, as of lake snapshot `snapshot` (None: as the transaction sees it)."""
    if snapshot is None:
        return CUSTOMER_FEATURES
    return f"(SELECT * FROM {CUSTOMER_FEATURES} AT (VERSION => {int(snapshot)}))"


def features_fingerprint(conn, snapshot: int | None = None) -> str:
    """Rows and a content hash of the features table, to tell whether it changed."""
    cols = ", ".join(("customer_id", LABEL, *FEATURE_COLUMNS))
    rows, digest = conn.execute(
        f"SELECT count(*), sum(hash({cols})::HUGEINT) FROM {features_at(snapshot)}"
    ).fetchone()
    return f"{rows}:{digest}"


HASH_BUCKETS = 1_000_000  # split.sql's buckets


def feature_frame(columns, copy: bool = True) -> pd.DataFrame:
    """The model's input: FEATURE_COLUMNS, in order, from a mapping of arrays. Columns keep their
    SQL types (BIGINT counts as int64, DOUBLE as float64): the MLflow signature records them,
    so a row read from `gold.scoring_features` is accepted as it is.

    `copy=False` wraps the arrays as they are (which must then stay unchanged) instead of
    copying them into one block per type: for scoring, where it saves 40% of the CPU time of
    the batches (1M rows: 0.57 s instead of 0.95 s) for the same probabilities, to the bit."""
    return pd.DataFrame({c: np.asarray(columns[c]) for c in FEATURE_COLUMNS}, copy=copy)


SPLIT = "split_customers"
SPLIT_METHOD = "md5-side/md5-stratified-sample"  # part of churn_model's training key


def md5_lower_64(text: str) -> str:
    """SQL for DuckDB's `md5_number_lower(text)`, the split's hash as split.sql writes it: the
    same UBIGINT (the upper 64 bits of `md5_number`, i.e. the digest's last eight bytes read
    little-endian). The macro gets it by casting the 128-bit number to a string of 128 bits and
    back, about 7 times slower: 0.75 s instead of 0.1 s per million customer ids."""
    return f"(md5_number({text}) >> 64)::UBIGINT"


# The features split.sql reads, as the view `split_features`: the table, or a snapshot of it.
SPLIT_FEATURES = "split_features"
SPLIT_SQL = sql("model/split")  # every customer's side, and whether it is in the training sample


def load_split(
    duckdb: LakehouseDuckDB,
    test_size: float,
    seed: int,
    max_train_rows: int = 0,
    features: tuple[str, ...] = ("train", "test"),
    snapshot: int | None = None,
) -> Split:
    """Customers split by a seeded hash of `customer_id`; `max_train_rows` > 0 keeps a
    stratified, seeded sample of that many training rows. Labels of both sides are read; the
    features only of the sides named in `features` (an empty frame for the others), as of lake
    snapshot `snapshot` (None: the latest)."""
    with duckdb.get_connection() as conn:
        create_split(conn, test_size, seed, max_train_rows, snapshot)
        sides = {}
        for side, in_test in (("train", False), ("test", True)):
            columns = [*FEATURE_COLUMNS, LABEL] if side in features else [LABEL]
            arrays = conn.execute(
                f"SELECT {', '.join(f'f.{c}' for c in columns)} FROM {SPLIT} s "
                f"JOIN {features_at(snapshot)} f USING (customer_id) "
                "WHERE s.in_test = $in_test AND s.in_sample ORDER BY customer_id",
                {"in_test": in_test},
            ).fetchnumpy()
            x = feature_frame(arrays) if side in features else feature_frame(_no_rows())
            sides[side] = (x, arrays[LABEL].astype("int64"))
        conn.execute(f"DROP TABLE {SPLIT}")
    (x_train, y_train), (x_test, y_test) = sides["train"], sides["test"]
    for side, labels in (("training", y_train), ("test", y_test)):
        if len(np.unique(labels)) < 2:
            raise dg.Failure(
                f"The {side} split of {CUSTOMER_FEATURES} ({len(labels)} customers) holds fewer "
                "than two label classes; a classifier cannot be trained or scored. More customers "
                "are needed.",
                allow_retries=False,
            )
    return Split(x_train, x_test, y_train, y_test)


def create_split(conn, test_size: float, seed: int, max_rows: int, snapshot: int | None) -> None:
    """The temporary table `SPLIT`: every customer's side and whether it is sampled. The view it
    reads is generated: a view cannot hold a parameter, so the snapshot is a literal."""
    features = f"SELECT * FROM {features_at(snapshot)}"
    conn.execute(f"CREATE OR REPLACE TEMP VIEW {SPLIT_FEATURES} AS {features}")
    conn.execute(
        SPLIT_SQL,
        {"seed": str(seed), "cut": round(test_size * HASH_BUCKETS), "max_rows": max_rows},
    )
    conn.execute(f"DROP VIEW {SPLIT_FEATURES}")


def _no_rows() -> dict[str, np.ndarray]:
    return {c: np.empty(0) for c in FEATURE_COLUMNS}
