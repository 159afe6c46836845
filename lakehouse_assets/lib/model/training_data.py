"""Every model traced to its data: the lake snapshot of the features a version was trained on,
recorded on its MLflow run, and `training_data(version)` to read those rows back."""

import hashlib

import pandas as pd
from mlflow.data.dataset_source import DatasetSource
from mlflow.data.meta_dataset import MetaDataset
from mlflow.entities import DatasetInput, InputTag
from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

from lakehouse_assets.lib import lake
from lakehouse_assets.lib.features import FEATURE_COLUMNS, LABEL
from lakehouse_assets.lib.metadata import scalar
from lakehouse_assets.lib.model.dataset import (
    SPLIT,
    create_split,
    features_at,
    features_fingerprint,
)
from lakehouse_assets.lib.model.mlflow_resource import MlflowTracking
from lakehouse_assets.lib.tables import CUSTOMER_FEATURES

SNAPSHOT_TAG = "lakehouse_snapshot_id"
FINGERPRINT_TAG = "features_fingerprint"  # written by churn_model
CATALOG_TAG = "lakehouse_catalog"  # passwords replaced by ***


class DuckLakeSource(DatasetSource):
    """A table of the lake as of one snapshot, as an MLflow dataset source."""

    def __init__(self, catalog: str, table: str, snapshot_id: int):
        self.catalog, self.table, self.snapshot_id = catalog, table, snapshot_id

    @staticmethod
    def _get_source_type() -> str:
        return "ducklake"

    def load(self, **kwargs):
        raise NotImplementedError("read it with lakehouse_assets.training_data(version)")

    @staticmethod
    def _can_resolve(raw_source) -> bool:
        return False

    @classmethod
    def _resolve(cls, raw_source):
        raise NotImplementedError

    def to_dict(self) -> dict:
        return {"catalog": self.catalog, "table": self.table, "snapshot_id": self.snapshot_id}

    @classmethod
    def from_dict(cls, source_dict: dict) -> "DuckLakeSource":
        return cls(source_dict["catalog"], source_dict["table"], int(source_dict["snapshot_id"]))


def digest(fingerprint: str) -> str:
    """The MLflow dataset digest: a hash of the features' rows and content hash."""
    return hashlib.sha256(fingerprint.encode()).hexdigest()[:16]


def log_training_input(run, location: lake.LakeLocation, snapshot: int, fingerprint: str):
    """Record on `run` (an MLflow run handle) the features' snapshot as its training dataset."""
    source = DuckLakeSource(location.describe(), CUSTOMER_FEATURES, snapshot)
    dataset = MetaDataset(  # type: ignore[abstract]  # abstract in its hints only
        source, name=f"{CUSTOMER_FEATURES}@{snapshot}", digest=digest(fingerprint)
    )
    run.client.log_inputs(
        run.run_id,
        [DatasetInput(dataset._to_mlflow_entity(), [InputTag(MLFLOW_DATASET_CONTEXT, "training")])],
    )


def training_data(
    version: int | str, tracking_uri: str = "", registered_model_name: str = "customer_churn"
) -> pd.DataFrame:
    """Every row of `gold.customer_features` that registered version `version` was built from,
    read from the lake at the snapshot its training recorded, with a column `split`: `train`
    (the rows it was fitted on), `test` (held out for its evaluation) or `unused` (training
    customers left out by `max_train_rows`). Ordered by `customer_id`, as training read them.

    The lake is found as `connect()` finds it; MLflow as `load_champion` does."""
    mlflow = MlflowTracking(tracking_uri=tracking_uri, registered_model_name=registered_model_name)
    client = mlflow.client()
    model_version = client.get_model_version(registered_model_name, str(version))
    run = client.get_run(model_version.run_id)
    if SNAPSHOT_TAG not in run.data.tags:
        raise LookupError(
            f"Version {version} of {registered_model_name!r} (run {run.info.run_id}) records no "
            f"{SNAPSHOT_TAG}: it was trained before the lakehouse moved to DuckLake."
        )
    snapshot = int(run.data.tags[SNAPSHOT_TAG])
    params = run.data.params
    with lake.connect() as conn:
        known = scalar(
            conn,
            f"SELECT count(*) FROM {lake.LAKE}.snapshots() WHERE snapshot_id = $s",
            {"s": snapshot},
        )
        if not known:
            raise LookupError(
                f"Snapshot {snapshot} of version {version} is no longer in the lake "
                f"({run.data.tags.get(CATALOG_TAG, 'its catalog')}): was it expired by hand?"
            )
        recorded = run.data.tags.get(FINGERPRINT_TAG)
        if recorded and features_fingerprint(conn, snapshot) != recorded:
            raise LookupError(
                f"Snapshot {snapshot} of this lake holds other features than version {version} "
                f"was trained on ({run.data.tags.get(CATALOG_TAG, 'its catalog')}): is this the "
                "lake its run wrote to?"
            )
        create_split(
            conn,
            float(params["test_size"]),
            int(params["random_state"]),
            int(params["max_train_rows"]),
            snapshot,
        )
        columns = ", ".join(f"f.{c}" for c in ("customer_id", *FEATURE_COLUMNS, LABEL))
        frame = conn.execute(
            f"SELECT {columns}, CASE WHEN s.in_test THEN 'test' WHEN s.in_sample THEN 'train' "
            f"ELSE 'unused' END AS split FROM {features_at(snapshot)} f "
            f"JOIN {SPLIT} s USING (customer_id) ORDER BY customer_id"
        ).df()
        conn.execute(f"DROP TABLE {SPLIT}")
    frame.attrs.update(snapshot_id=snapshot, mlflow_run_id=run.info.run_id)
    return frame
