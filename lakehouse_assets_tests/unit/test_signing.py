"""Signed model provenance: an HMAC-SHA256 under `$LAKEHOUSE_MODEL_SIGNING_KEY` over a pickle's
SHA-256 and the MLflow run that logged it; without a key nothing is signed or verified."""

import hashlib
import hmac

import dagster as dg
import pytest

from lakehouse_assets.lib import settings
from lakehouse_assets.lib.model import signing

KEY = "unit-test-signing-key"
SHA256 = hashlib.sha256(b"a pickled model").hexdigest()
RUN_ID = "0123456789abcdef0123456789abcdef"


@pytest.fixture
def key(monkeypatch) -> str:
    monkeypatch.setenv(settings.SIGNING_KEY_ENV, KEY)
    return KEY


@pytest.fixture
def no_key(monkeypatch) -> None:
    monkeypatch.delenv(settings.SIGNING_KEY_ENV, raising=False)


def test_sign_is_the_hmac_of_the_versioned_message():
    """The message format is a contract: signatures already stored in MLflow must still verify."""
    message = f"lakehouse-assets model v1\n{SHA256}\n{RUN_ID}".encode()
    expected = hmac.new(KEY.encode(), message, hashlib.sha256).hexdigest()
    assert signing.sign(KEY, SHA256, RUN_ID) == expected
    assert len(expected) == 64


def test_sign_changes_with_the_key_the_digest_and_the_run():
    signature = signing.sign(KEY, SHA256, RUN_ID)
    assert signing.sign(KEY, SHA256, RUN_ID) == signature
    assert signing.sign("another-key", SHA256, RUN_ID) != signature
    assert signing.sign(KEY, hashlib.sha256(b"other").hexdigest(), RUN_ID) != signature
    assert signing.sign(KEY, SHA256, RUN_ID[::-1]) != signature


def test_with_a_key_a_fresh_pickle_is_tagged_and_verifies(key):
    tags = signing.signature_tags(SHA256, RUN_ID)
    assert tags == {signing.SIGNATURE_TAG: signing.sign(key, SHA256, RUN_ID)}
    assert signing.is_signed(SHA256, RUN_ID, tags[signing.SIGNATURE_TAG])
    assert signing.status().startswith("signed (HMAC-SHA256")


@pytest.mark.parametrize(
    ("sha256", "run_id", "signature_key"),
    [
        (hashlib.sha256(b"another pickle").hexdigest(), RUN_ID, KEY),  # tampered digest
        (SHA256, "fedcba9876543210fedcba9876543210", KEY),  # replayed on another run
        (SHA256, RUN_ID, "another-key"),  # signed with another key
    ],
)
def test_a_signature_of_anything_else_does_not_verify(key, sha256, run_id, signature_key):
    signature = signing.sign(signature_key, SHA256, RUN_ID)
    assert not signing.is_signed(sha256, run_id, signature)
    with pytest.raises(dg.Failure) as error:
        signing.require_signature(sha256, run_id, signature, "the champion")
    assert "does not verify with the key" in error.value.description
    assert not error.value.allow_retries
    assert key not in error.value.description


@pytest.mark.parametrize("signature", [None, ""])
def test_with_a_key_a_missing_signature_is_refused(key, signature):
    assert not signing.is_signed(SHA256, RUN_ID, signature)
    with pytest.raises(dg.Failure) as error:
        signing.require_signature(SHA256, RUN_ID, signature, "models:/churn@champion")
    assert "has none" in error.value.description
    assert "models:/churn@champion" in error.value.description
    assert error.value.metadata["mlflow_run_id"].value == RUN_ID


def test_without_a_key_nothing_is_signed_and_everything_is_accepted(no_key):
    assert signing.signature_tags(SHA256, RUN_ID) == {}
    assert signing.status() == signing.UNSIGNED
    valid = signing.sign(KEY, SHA256, RUN_ID)
    assert not signing.is_signed(SHA256, RUN_ID, valid)  # nothing to verify with
    assert signing.require_signature(SHA256, RUN_ID, None, "the champion") is None
    assert signing.require_signature(SHA256, RUN_ID, "garbage", "the champion") is None


def test_a_blank_key_is_no_key(monkeypatch):
    monkeypatch.setenv(settings.SIGNING_KEY_ENV, "   ")
    assert signing.signature_tags(SHA256, RUN_ID) == {}
    assert signing.status() == signing.UNSIGNED
