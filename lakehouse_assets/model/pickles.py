"""Pickled models with a SHA-256 that must match before anything is unpickled."""

import hashlib
import pickle

import dagster as dg


def dump(model) -> tuple[bytes, str]:
    payload = pickle.dumps(model, protocol=pickle.HIGHEST_PROTOCOL)
    return payload, hashlib.sha256(payload).hexdigest()


def load_verified(payload: bytes, expected_sha256: str | None, source: str):
    """Unpickle `payload` only if its SHA-256 equals `expected_sha256`; refuse otherwise."""
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
    return pickle.loads(payload)  # noqa: S301 - verified against the hash recorded at training
