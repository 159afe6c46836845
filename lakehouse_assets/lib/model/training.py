"""What the registry's versions record about their training, and which of them to trust."""

from lakehouse_assets.lib import settings
from lakehouse_assets.lib.model import signing
from lakehouse_assets.lib.model.mlflow_resource import MlflowTracking

SHA_TAG = signing.SHA_TAG_OF[signing.PICKLE]  # model_sha256
ONNX_SHA_TAG = signing.SHA_TAG_OF[signing.ONNX]  # model_onnx_sha256
ONNX_TAG = "model_onnx"  # how the ONNX model was made, or why there is none
TRAINING_KEY_TAG = "training_key"
RECIPE_TAG = "training_recipe"  # the training key without the features: how, not on what
CUTOFF_TAG = "training_cutoff"  # the cutoff of the features it was trained on


def trusted_versions(mlflow: MlflowTracking, client) -> list:
    """The registered versions; with a signing key, only those the pipeline signed."""
    name = mlflow.registered_model_name
    with mlflow.errors(f"search versions of {name!r}"):
        versions = client.search_model_versions(f"name = '{name}'")
    if not settings.model_signing_key():
        return versions
    return [v for v in versions if is_trusted(v.tags or {}, v.run_id)]


def is_trusted(tags: dict, run_id: str) -> bool:
    return signing.is_signed(tags.get(SHA_TAG, ""), run_id, tags.get(signing.SIGNATURE_TAG))
