"""The registered model's current `champion` version, and how to load it safely."""

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import dagster as dg

from lakehouse_assets.lib.model import onnx_model, pickles, signing
from lakehouse_assets.lib.model.mlflow_resource import MlflowTracking
from lakehouse_assets.lib.model.signing import ONNX_SIGNATURE_TAG, SIGNATURE_TAG
from lakehouse_assets.lib.model.training import ONNX_SHA_TAG, ONNX_TAG, SHA_TAG

CHAMPION_ALIAS = "champion"


@dataclass(frozen=True)
class Champion:
    version: str
    run_id: str
    sha256: str | None
    signature: str | None = None
    onnx_sha256: str | None = None  # None: the version has no ONNX model
    onnx_signature: str | None = None
    onnx: str | None = None  # the `model_onnx` tag: how it was made, or why there is none

    def onnx_missing(self) -> str:
        """Why the version has no ONNX model to score with."""
        return self.onnx or "it was registered before the pipeline made ONNX models"

    def require_pickle_fallback(self, name: str, run_tags: dict) -> None:
        """Refuse to score from the pickle a version that has, or had, an ONNX model (by its
        tags or its run's) but whose `model_onnx_sha256` tag is gone: only a version that could
        not be converted, or one from before ONNX models, falls back."""
        if self.onnx_sha256:
            return
        status = self.onnx or run_tags.get(ONNX_TAG)
        converted = status and not status.startswith(onnx_model.NOT_CONVERTED)
        if not converted and not run_tags.get(ONNX_SHA_TAG):
            return
        raise dg.Failure(
            f"Version {self.version} of {name!r} has an ONNX model (its MLflow run "
            f"{self.run_id} says so) but no model_onnx_sha256 tag to verify it against: its "
            "tags were changed after it was registered. Refusing to score it, and to fall back "
            "to its pickle. Restore the tag, or point the alias at another version.",
            allow_retries=False,
        )


def current_champion(mlflow: MlflowTracking, client) -> Champion | None:
    """The version the `champion` alias points at; None when the model or alias does not exist."""
    from mlflow.exceptions import MlflowException

    name = mlflow.registered_model_name
    with mlflow.errors(f"read registered model {name!r}"):
        try:
            registered = client.get_registered_model(name)
        except MlflowException as error:
            if error.error_code == "RESOURCE_DOES_NOT_EXIST":
                return None
            raise
    # Read the alias from the model rather than asking for it: a missing alias is an error
    # (INVALID_PARAMETER_VALUE), which we could not tell apart from a real one.
    aliases = registered.aliases or {}
    if CHAMPION_ALIAS not in aliases:
        return None
    with mlflow.errors(f"read version {aliases[CHAMPION_ALIAS]} of {name!r}"):
        version = client.get_model_version(name, str(aliases[CHAMPION_ALIAS]))
    tags = version.tags or {}
    return Champion(
        str(version.version),
        version.run_id,
        tags.get(SHA_TAG),
        tags.get(SIGNATURE_TAG),
        tags.get(ONNX_SHA_TAG),
        tags.get(ONNX_SIGNATURE_TAG),
        tags.get(ONNX_TAG),
    )


def load_verified_model(mlflow: MlflowTracking, client, champion: Champion, work_dir: Path):
    """Download the version's `model/model.pkl`, verify its SHA-256 against the version's
    `model_sha256` tag and, with a signing key, its `model_signature` tag, and only then
    unpickle it."""
    payload = mlflow.download_model_pickle(client, champion.run_id, work_dir)
    source = f"version {champion.version} of {mlflow.registered_model_name!r}"
    return pickles.load_verified(
        payload, champion.sha256, source, run_id=champion.run_id, signature=champion.signature
    )


def load_verified_onnx(mlflow: MlflowTracking, client, champion: Champion, work_dir: Path):
    """Download the version's `model_onnx/model.onnx`, verify its SHA-256 against the version's
    `model_onnx_sha256` tag and, with a signing key, its `model_onnx_signature` tag, and only
    then open it in an onnxruntime session."""
    source = f"version {champion.version} of {mlflow.registered_model_name!r}"
    if not champion.onnx_sha256:
        raise dg.Failure(
            f"{source} has no verifiable ONNX model (no model_onnx_sha256 tag; model_onnx: "
            f"{champion.onnx_missing()}). Load it as a pickle (flavor='sklearn'), or "
            "materialize churn_model to train a version that has one.",
            allow_retries=False,
        )
    payload = verified_onnx(
        mlflow,
        client,
        champion.run_id,
        champion.onnx_sha256,
        champion.onnx_signature,
        source,
        work_dir,
    )
    return onnx_model.session(payload)


def verified_onnx(
    mlflow: MlflowTracking,
    client,
    run_id: str,
    sha256: str,
    signature: str | None,
    source: str,
    work_dir: Path,
) -> bytes:
    """The bytes of the run's `model_onnx/model.onnx`, once its SHA-256 equals `sha256` and,
    with a signing key, `signature` verifies; a final failure otherwise, naming `source`."""
    path = f"{onnx_model.ONNX_ARTIFACT_DIR}/{onnx_model.ONNX_FILE}"
    payload = mlflow.download_artifact(client, run_id, path, work_dir)
    signing.require_verified(
        payload,
        sha256,
        source,
        run_id=run_id,
        signature=signature,
        kind=signing.ONNX,
    )
    return payload


def champion_run(mlflow: MlflowTracking, client, champion: Champion):
    """The version's MLflow run."""
    with mlflow.errors(f"read run {champion.run_id}"):
        return client.get_run(champion.run_id)


def require_champion(mlflow: MlflowTracking, client) -> Champion:
    """The current champion; fails at once, naming the registered model, when there is none."""
    champion = current_champion(mlflow, client)
    if champion is None:
        raise dg.Failure(
            f"Registered model {mlflow.registered_model_name!r} on {mlflow.server()} has no "
            f"version with the alias {CHAMPION_ALIAS!r}: materialize registered_churn_model first.",
            allow_retries=False,
        )
    return champion


def load_champion(
    tracking_uri: str = "",
    registered_model_name: str = "customer_churn",
    flavor: Literal["sklearn", "onnx"] = "sklearn",
):
    """The registered model's `champion` version, loaded only after its file's SHA-256 matched
    the version's tag and, when $LAKEHOUSE_MODEL_SIGNING_KEY is set, its signature tag verified
    with that key.

    `flavor="sklearn"`: the scikit-learn estimator (the pickle, `model_sha256`);
    `predict_proba(x)[:, 1]` is the churn probability, for a DataFrame with the feature columns
    (`lakehouse_assets.lib.features.FEATURE_COLUMNS`). `flavor="onnx"`: an onnxruntime
    `InferenceSession` on the ONNX model (`model_onnx_sha256`), which unpickles nothing; feed it
    one 1-D array per feature column, by name, and read its output `churn_probability`.

    `tracking_uri` defaults to the pipeline's own ($MLFLOW_TRACKING_URI, else the local sqlite
    store under $LAKEHOUSE_HOME)."""
    if flavor not in ("sklearn", "onnx"):
        raise ValueError(f"flavor must be 'sklearn' or 'onnx', got {flavor!r}")
    mlflow = MlflowTracking(tracking_uri=tracking_uri, registered_model_name=registered_model_name)
    client = mlflow.client()
    champion = require_champion(mlflow, client)
    with tempfile.TemporaryDirectory() as tmp:
        if flavor == "onnx":
            return load_verified_onnx(mlflow, client, champion, Path(tmp))
        return load_verified_model(mlflow, client, champion, Path(tmp))
