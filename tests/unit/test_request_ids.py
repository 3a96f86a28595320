"""Signed request ids: issued ids verify, anything else does not."""

from __future__ import annotations

import hashlib
import hmac
import uuid

import pytest
from django.test import override_settings

from inference.request_ids import REQUEST_ID_LENGTH, request_id_is_ours, request_id_new

SECRET = "unit-test-secret"


def test_an_issued_id_is_a_uuid_hex_and_a_signature() -> None:
    request_id = request_id_new(secret=SECRET)

    uuid_hex, dot, signature = request_id.partition(".")
    assert dot == "."
    assert len(request_id) == REQUEST_ID_LENGTH == 49
    assert uuid.UUID(hex=uuid_hex).version == 4
    assert len(signature) == 16
    assert int(signature, 16) >= 0


def test_the_signature_is_hmac_sha256_under_a_key_derived_from_the_secret() -> None:
    request_id = request_id_new(secret=SECRET)
    uuid_hex, _, signature = request_id.partition(".")

    key = hashlib.sha256(b"phoenix.inference.request_id" + SECRET.encode()).digest()
    expected = hmac.new(key, uuid_hex.encode(), hashlib.sha256).hexdigest()[:16]
    assert signature == expected


def test_issued_ids_are_distinct() -> None:
    ids = {request_id_new(secret=SECRET) for _ in range(10_000)}

    assert len(ids) == 10_000


def test_an_issued_id_is_ours() -> None:
    assert request_id_is_ours(request_id_new(secret=SECRET), secret=SECRET)


def test_an_id_signed_under_another_secret_is_not_ours() -> None:
    assert not request_id_is_ours(request_id_new(secret="another"), secret=SECRET)


def _flip(character: str) -> str:
    return "0" if character != "0" else "1"


@pytest.mark.parametrize("position", [0, 31, 33, 48])
def test_changing_any_digit_makes_it_not_ours(position: int) -> None:
    request_id = request_id_new(secret=SECRET)
    forged = request_id[:position] + _flip(request_id[position]) + request_id[position + 1 :]

    assert not request_id_is_ours(forged, secret=SECRET)


@pytest.mark.parametrize(
    "candidate",
    [
        "",
        "no-such-request",
        uuid.uuid4().hex,  # the old, unsigned format
        str(uuid.uuid4()),
        "g" * 32 + "." + "0" * 16,
        "0" * 32 + "-" + "0" * 16,
        "A" * 32 + "." + "0" * 16,
        "é" * 49,  # compare_digest refuses non-ASCII str: never reached
        "0" * 32 + "." + "0" * 16 + "\n",
    ],
)
def test_other_strings_are_not_ours(candidate: str) -> None:
    assert not request_id_is_ours(candidate, secret=SECRET)


def test_from_settings_the_secret_key_signs_and_a_rotated_key_still_verifies() -> None:
    with override_settings(SECRET_KEY="old-key-" + "x" * 50):
        issued_before_rotation = request_id_new()
        assert request_id_is_ours(issued_before_rotation)

    with override_settings(
        SECRET_KEY="new-key-" + "y" * 50, SECRET_KEY_FALLBACKS=["old-key-" + "x" * 50]
    ):
        assert request_id_is_ours(issued_before_rotation)
        assert request_id_is_ours(request_id_new())

    with override_settings(SECRET_KEY="new-key-" + "y" * 50, SECRET_KEY_FALLBACKS=[]):
        assert not request_id_is_ours(issued_before_rotation)
