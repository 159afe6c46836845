"""Pickled models with a SHA-256 (and, with a signing key, a signature) that must verify before
anything is unpickled. Every model the pipeline loads goes through `load_verified`."""

import hashlib
import pickle

import dagster as dg

from lakehouse_assets.lib.model import signing


def load_verified(
    payload: bytes, expected_sha256: str | None, source: str, *, run_id: str, signature: str | None
):
    """Unpickle `payload` only if its SHA-256 equals `expected_sha256` and, when
    `$LAKEHOUSE_MODEL_SIGNING_KEY` is set, `signature` (tag `model_signature`) is the key's
    HMAC of that SHA-256 and `run_id`; refuse otherwise, with a final failure."""
    actual = hashlib.sha256(payload).hexdigest()
    if not expected_sha256:
        raise dg.Failure(
            f"Refusing to unpickle {source}: it has no recorded SHA-256 (tag model_sha256) to "
            "verify it against.",
            allow_retries=False,
        )
    if actual != expected_sha256:
        raise dg.Failure(
            f"Refusing to unpickle {source}: its SHA-256 is {actual}, but the recorded "
            f"model_sha256 is {expected_sha256}. The file was changed after it was logged "
            "(tampered with or corrupted); unpickling it could run arbitrary code.",
            metadata={"actual_sha256": actual, "expected_sha256": expected_sha256},
            allow_retries=False,
        )
    signing.require_signature(actual, run_id, signature, source)
    return pickle.loads(payload)  # noqa: S301 - verified against the hash (and signature)
