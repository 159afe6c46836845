"""Signed model provenance: an HMAC-SHA256, keyed with `$LAKEHOUSE_MODEL_SIGNING_KEY`, over a
pickle's SHA-256 and the MLflow run that logged it.

The `model_sha256` tag only detects corruption: whoever can write to MLflow can upload a pickle
and set its hash tag to match. A signature can only be made with the key, which the pipeline
holds and MLflow users do not, so a pickle whose signature verifies was logged by `churn_model`.
Without a key (the local default) models are "unsigned" and nothing is verified.
"""

import hashlib
import hmac

import dagster as dg

from lakehouse_assets.lib import settings

SIGNATURE_TAG = "model_signature"
UNSIGNED = "unsigned"


def sign(key: str, sha256: str, run_id: str) -> str:
    """The hex HMAC-SHA256 of `sha256` and `run_id` under `key`."""
    message = f"lakehouse-assets model v1\n{sha256}\n{run_id}".encode()
    return hmac.new(key.encode(), message, hashlib.sha256).hexdigest()


def signature_tags(sha256: str, run_id: str) -> dict[str, str]:
    """The run tag that signs a freshly logged pickle; none without a key."""
    key = settings.model_signing_key()
    return {SIGNATURE_TAG: sign(key, sha256, run_id)} if key else {}


def is_signed(sha256: str, run_id: str, signature: str | None) -> bool:
    """Whether `signature` verifies with the key (False without a key or signature)."""
    key = settings.model_signing_key()
    if not key or not signature:
        return False
    return hmac.compare_digest(sign(key, sha256, run_id), signature)


def status() -> str:
    """What the UI metadata says about provenance: `signed (HMAC-SHA256, tag model_signature)` or
    `unsigned`."""
    return (
        f"signed (HMAC-SHA256, tag {SIGNATURE_TAG})" if settings.model_signing_key() else UNSIGNED
    )


def require_signature(sha256: str, run_id: str, signature: str | None, source: str) -> None:
    """With a key, refuse (final failure) a pickle whose signature does not verify; without a
    key, accept everything, as before signing existed."""
    if not settings.model_signing_key() or is_signed(sha256, run_id, signature):
        return
    problem = "has none" if not signature else "does not verify with the key"
    raise dg.Failure(
        f"Refusing to unpickle {source} (MLflow run {run_id}): its signature tag "
        f"{SIGNATURE_TAG} {problem}. Only churn_model, which holds "
        f"{settings.SIGNING_KEY_ENV}, signs the pickles it logs; this one was uploaded or "
        "re-tagged by someone else (or signed with another key), and unpickling it could run "
        "arbitrary code. Point the alias at a version the pipeline trained, or materialize "
        "churn_model again.",
        metadata={"mlflow_run_id": run_id, "signature_tag": SIGNATURE_TAG, "sha256": sha256},
        allow_retries=False,
    )
