"""`load_verified`: a pickle is unpickled only once its SHA-256 (and, with a key, its signature)
verifies; a tampered one is refused before any of its code can run."""

import hashlib
import hmac
import pickle
from pathlib import Path

import dagster as dg
import pytest

from lakehouse_assets.lib import settings
from lakehouse_assets.lib.model import signing
from lakehouse_assets.lib.model.pickles import load_verified

KEY = "unit-test-signing-key"
RUN_ID = "0123456789abcdef0123456789abcdef"


class Planted:
    """A pickle that, when unpickled, creates the file `marker` (it could do anything)."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def sha256(payload: bytes) -> str:
    return hashlib.sha256(payload).hexdigest()


@pytest.fixture
def model_payload() -> bytes:
    return pickle.dumps({"coef": [0.5, -1.25], "intercept": 0.1})


@pytest.fixture
def no_key(monkeypatch) -> None:
    monkeypatch.delenv(settings.SIGNING_KEY_ENV, raising=False)


def test_a_pickle_whose_hash_matches_loads(no_key, model_payload):
    model = load_verified(
        model_payload, sha256(model_payload), "model.pkl", run_id=RUN_ID, signature=None
    )
    assert model == {"coef": [0.5, -1.25], "intercept": 0.1}


def test_a_replaced_file_is_refused_before_it_is_unpickled(no_key, model_payload, tmp_path):
    marker = tmp_path / "pwned"
    planted = pickle.dumps(Planted(marker))
    with pytest.raises(dg.Failure) as error:
        load_verified(planted, sha256(model_payload), "model.pkl", run_id=RUN_ID, signature=None)
    assert not marker.exists()
    assert not error.value.allow_retries
    assert error.value.metadata["actual_sha256"].value == sha256(planted)
    assert error.value.metadata["expected_sha256"].value == sha256(model_payload)
    assert "changed after it was logged" in error.value.description


def test_a_flipped_byte_is_refused(no_key, model_payload):
    tampered = bytes([model_payload[0] ^ 1]) + model_payload[1:]
    with pytest.raises(dg.Failure, match="SHA-256"):
        load_verified(tampered, sha256(model_payload), "model.pkl", run_id=RUN_ID, signature=None)


@pytest.mark.parametrize("expected", [None, ""])
def test_a_pickle_without_a_recorded_hash_is_refused(no_key, tmp_path, expected):
    marker = tmp_path / "pwned"
    planted = pickle.dumps(Planted(marker))
    with pytest.raises(dg.Failure, match="no recorded SHA-256"):
        load_verified(planted, expected, "model.pkl", run_id=RUN_ID, signature=None)
    assert not marker.exists()


def test_with_a_key_a_matching_hash_without_a_valid_signature_is_refused(monkeypatch, tmp_path):
    """Whoever can write to MLflow can set `model_sha256`; only the key holder can sign."""
    monkeypatch.setenv(settings.SIGNING_KEY_ENV, KEY)
    marker = tmp_path / "pwned"
    planted = pickle.dumps(Planted(marker))
    digest = sha256(planted)
    forged = signing.sign("not-the-key", digest, RUN_ID)
    for signature in (None, forged):
        with pytest.raises(dg.Failure, match="Refusing to unpickle"):
            load_verified(planted, digest, "model.pkl", run_id=RUN_ID, signature=signature)
    assert not marker.exists()


def test_with_a_key_a_signed_pickle_loads(monkeypatch, model_payload):
    monkeypatch.setenv(settings.SIGNING_KEY_ENV, KEY)
    digest = sha256(model_payload)
    signature = signing.sign(KEY, digest, RUN_ID)
    model = load_verified(model_payload, digest, "model.pkl", run_id=RUN_ID, signature=signature)
    assert model["intercept"] == 0.1


def test_a_signature_signs_one_kind_of_file(monkeypatch, model_payload):
    """The HMAC names the file kind: a pickle's signature never verifies an ONNX file with the
    same hash and run (nor the other way round), and the old pickle signatures still verify."""
    monkeypatch.setenv(settings.SIGNING_KEY_ENV, KEY)
    digest = sha256(model_payload)
    pickle_signature = signing.sign(KEY, digest, RUN_ID)
    onnx_signature = signing.sign(KEY, digest, RUN_ID, signing.ONNX)
    assert pickle_signature != onnx_signature
    message = f"lakehouse-assets model v1\n{digest}\n{RUN_ID}".encode()  # as signed before ONNX
    assert pickle_signature == hmac.new(KEY.encode(), message, hashlib.sha256).hexdigest()
    assert signing.is_signed(digest, RUN_ID, onnx_signature, signing.ONNX)
    assert not signing.is_signed(digest, RUN_ID, pickle_signature, signing.ONNX)
    assert not signing.is_signed(digest, RUN_ID, onnx_signature, signing.PICKLE)
    assert signing.signature_tags(digest, RUN_ID, signing.ONNX) == {
        signing.ONNX_SIGNATURE_TAG: onnx_signature
    }


def test_with_a_key_an_onnx_file_is_refused_unsigned_or_with_a_pickles_signature(
    monkeypatch, model_payload
):
    monkeypatch.setenv(settings.SIGNING_KEY_ENV, KEY)
    digest = sha256(model_payload)
    for signature in (None, signing.sign(KEY, digest, RUN_ID)):
        with pytest.raises(dg.Failure, match="Refusing to load the ONNX model of v1") as error:
            signing.require_verified(
                model_payload, digest, "v1", run_id=RUN_ID, signature=signature, kind=signing.ONNX
            )
        assert signing.ONNX_SIGNATURE_TAG in error.value.description
        assert not error.value.allow_retries
    with pytest.raises(dg.Failure, match="recorded model_onnx_sha256"):
        signing.require_verified(
            model_payload + b"x", digest, "v1", run_id=RUN_ID, signature=None, kind=signing.ONNX
        )
    signing.require_verified(  # signed for ONNX: accepted
        model_payload,
        digest,
        "v1",
        run_id=RUN_ID,
        signature=signing.sign(KEY, digest, RUN_ID, signing.ONNX),
        kind=signing.ONNX,
    )
