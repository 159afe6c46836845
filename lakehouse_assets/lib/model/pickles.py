"""Pickled models with a SHA-256 (and, with a signing key, a signature) that must verify before
anything is unpickled. Every model the pipeline loads goes through `load_verified`."""

import pickle

from lakehouse_assets.lib.model import signing


def load_verified(
    payload: bytes, expected_sha256: str | None, source: str, *, run_id: str, signature: str | None
):
    """Unpickle `payload` only if its SHA-256 equals `expected_sha256` and, when
    `$LAKEHOUSE_MODEL_SIGNING_KEY` is set, `signature` (tag `model_signature`) is the key's
    HMAC of that SHA-256 and `run_id`; refuse otherwise, with a final failure."""
    signing.require_verified(
        payload, expected_sha256, source, run_id=run_id, signature=signature, kind=signing.PICKLE
    )
    return pickle.loads(payload)  # noqa: S301 - verified against the hash (and signature)
