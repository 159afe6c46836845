"""Signed model provenance: an HMAC-SHA256, keyed with `$LAKEHOUSE_MODEL_SIGNING_KEY`, over a
model file's SHA-256 (the pickle's, or the ONNX graph's) and the MLflow run that logged it.

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
ONNX_SIGNATURE_TAG = "model_onnx_signature"
UNSIGNED = "unsigned"
PICKLE, ONNX = "model", "onnx"  # what is signed: a signature of one never verifies the other
TAG_OF = {PICKLE: SIGNATURE_TAG, ONNX: ONNX_SIGNATURE_TAG}
SHA_TAG_OF = {PICKLE: "model_sha256", ONNX: "model_onnx_sha256"}
# How a refusal starts, and what loading the file anyway would risk.
_REFUSAL = {
    PICKLE: ("Refusing to unpickle", "unpickling it could run arbitrary code"),
    ONNX: ("Refusing to load the ONNX model of", "its scores cannot be trusted"),
}


def sign(key: str, sha256: str, run_id: str, kind: str = PICKLE) -> str:
    """The hex HMAC-SHA256 of `sha256` and `run_id` under `key`, for a file of `kind`."""
    message = f"lakehouse-assets {kind} v1\n{sha256}\n{run_id}".encode()
    return hmac.new(key.encode(), message, hashlib.sha256).hexdigest()


def signature_tags(sha256: str, run_id: str, kind: str = PICKLE) -> dict[str, str]:
    """The run tag that signs a freshly logged model file of `kind`; none without a key."""
    key = settings.model_signing_key()
    return {TAG_OF[kind]: sign(key, sha256, run_id, kind)} if key else {}


def is_signed(sha256: str, run_id: str, signature: str | None, kind: str = PICKLE) -> bool:
    """Whether `signature` verifies with the key (False without a key or signature)."""
    key = settings.model_signing_key()
    if not key or not signature:
        return False
    return hmac.compare_digest(sign(key, sha256, run_id, kind), signature)


def status() -> str:
    """What the UI metadata says about provenance: `signed (HMAC-SHA256, tag model_signature)` or
    `unsigned`."""
    return (
        f"signed (HMAC-SHA256, tag {SIGNATURE_TAG})" if settings.model_signing_key() else UNSIGNED
    )


def require_signature(
    sha256: str, run_id: str, signature: str | None, source: str, kind: str = PICKLE
) -> None:
    """With a key, refuse (final failure) a model file whose signature does not verify; without
    a key, accept everything, as before signing existed."""
    if not settings.model_signing_key() or is_signed(sha256, run_id, signature, kind):
        return
    problem = "has none" if not signature else "does not verify with the key"
    refusal, risk = _REFUSAL[kind]
    raise dg.Failure(
        f"{refusal} {source} (MLflow run {run_id}): its signature tag "
        f"{TAG_OF[kind]} {problem}. Only churn_model, which holds "
        f"{settings.SIGNING_KEY_ENV}, signs the models it logs; this one was uploaded or "
        f"re-tagged by someone else (or signed with another key), and {risk}. Point the alias "
        "at a version the pipeline trained, or materialize churn_model again.",
        metadata={"mlflow_run_id": run_id, "signature_tag": TAG_OF[kind], "sha256": sha256},
        allow_retries=False,
    )


def require_verified(
    payload: bytes,
    expected_sha256: str | None,
    source: str,
    *,
    run_id: str,
    signature: str | None,
    kind: str = PICKLE,
) -> None:
    """Refuse (final failure) `payload` unless its SHA-256 equals `expected_sha256` and, with a
    key, `signature` is the key's HMAC of that SHA-256 and `run_id`."""
    (refusal, risk), tag = _REFUSAL[kind], SHA_TAG_OF[kind]
    actual = hashlib.sha256(payload).hexdigest()
    if not expected_sha256:
        raise dg.Failure(
            f"{refusal} {source}: it has no recorded SHA-256 (tag {tag}) to verify it against.",
            allow_retries=False,
        )
    if actual != expected_sha256:
        raise dg.Failure(
            f"{refusal} {source}: its SHA-256 is {actual}, but the recorded {tag} is "
            f"{expected_sha256}. The file was changed after it was logged (tampered with or "
            f"corrupted); {risk}.",
            metadata={"actual_sha256": actual, "expected_sha256": expected_sha256},
            allow_retries=False,
        )
    require_signature(actual, run_id, signature, source, kind)
