"""Runflow-Signature: lowercase hex HMAC-SHA256 of the raw body, keyed with the whole secret."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from runs.runflow.signing import sign, verify

# A known-answer vector. The digest literal was computed with `openssl dgst -sha256 -hmac`
# over these exact bytes; the test recomputes it with hmac/hashlib as a second witness.
KAT_BODY = (
    b'{"event":"run.completed","run_id":"0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b",'
    b'"status":"succeeded"}'
)
KAT_SECRET = "whsec_3kTq9mYx2bP7vR1cW8dZ0fLh"
KAT_SIGNATURE = "70629bfdca6b8d91d2f3f9bedc37b59b9a0c013e4ba3529acc1a650103960d39"

secrets_text = st.text(min_size=1, max_size=80).map(lambda s: "whsec_" + s)


def test_known_answer_vector() -> None:
    independent = hmac.new(KAT_SECRET.encode("utf-8"), KAT_BODY, hashlib.sha256).hexdigest()
    assert independent == KAT_SIGNATURE
    assert sign(KAT_BODY, KAT_SECRET) == KAT_SIGNATURE
    assert verify(KAT_BODY, KAT_SIGNATURE, [KAT_SECRET]) == 0


def test_key_is_the_whole_secret_string_not_its_tail_or_base64() -> None:
    tail = KAT_SECRET.removeprefix("whsec_")
    without_prefix = hmac.new(tail.encode(), KAT_BODY, hashlib.sha256).hexdigest()
    padded = tail + "=" * (-len(tail) % 4)
    decoded = hmac.new(base64.b64decode(padded), KAT_BODY, hashlib.sha256).hexdigest()
    assert sign(KAT_BODY, KAT_SECRET) not in (without_prefix, decoded)


def test_signature_is_64_lowercase_hex_without_prefix() -> None:
    signature = sign(b"{}", KAT_SECRET)
    assert len(signature) == 64
    assert signature == signature.lower()
    assert not signature.startswith("sha256=")


def test_rotation_returns_the_index_of_the_matching_secret() -> None:
    old, new = "whsec_old_one", "whsec_new_one"
    assert verify(KAT_BODY, sign(KAT_BODY, new), [old, new]) == 1
    assert verify(KAT_BODY, sign(KAT_BODY, old), [old, new]) == 0
    assert verify(KAT_BODY, sign(KAT_BODY, "whsec_other"), [old, new]) is None


def test_reserialized_body_does_not_verify() -> None:
    reserialized = json.dumps(json.loads(KAT_BODY)).encode()
    assert reserialized != KAT_BODY
    assert verify(reserialized, KAT_SIGNATURE, [KAT_SECRET]) is None


def test_missing_or_malformed_signatures_are_refused() -> None:
    for bad in (None, "", "sha256=" + KAT_SIGNATURE, KAT_SIGNATURE[:-1], "z" * 64, "é" * 64):
        assert verify(KAT_BODY, bad, [KAT_SECRET]) is None, bad


def test_surrounding_whitespace_and_uppercase_hex_are_tolerated() -> None:
    assert verify(KAT_BODY, f"  {KAT_SIGNATURE.upper()}\n", [KAT_SECRET]) == 0


def test_no_secrets_or_empty_secrets_never_verify() -> None:
    assert verify(KAT_BODY, KAT_SIGNATURE, []) is None
    assert verify(KAT_BODY, KAT_SIGNATURE, ["", KAT_SECRET]) == 1


def test_signing_with_an_empty_secret_is_refused() -> None:
    with pytest.raises(ValueError):
        sign(b"{}", "")


@given(body=st.binary(max_size=2048), secret=secrets_text)
def test_sign_then_verify_round_trips(body: bytes, secret: str) -> None:
    assert verify(body, sign(body, secret), [secret]) == 0


@given(body=st.binary(max_size=512), extra=st.binary(min_size=1, max_size=8), secret=secrets_text)
def test_any_change_to_the_body_breaks_the_signature(
    body: bytes, extra: bytes, secret: str
) -> None:
    assert verify(body + extra, sign(body, secret), [secret]) is None


@given(body=st.binary(max_size=256), first=secrets_text, second=secrets_text)
def test_only_the_signing_secret_matches(body: bytes, first: str, second: str) -> None:
    signature = sign(body, second)
    expected = 0 if first == second else 1
    assert verify(body, signature, [first, second]) == expected
