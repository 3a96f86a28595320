"""Request ids this deployment issued, told apart from ids it never issued.

A server-issued id is ``<32 hex digits>.<16 hex digits>``: a random version-4 UUID
(hex) and the first 64 bits of an HMAC-SHA256 of it under a key derived from
``SECRET_KEY``. With Kafka, feedback may arrive before the consumer has written a
prediction's rows; the signature is how the feedback endpoint knows such an id is a
real prediction on its way (kept as pending) and not an id that was never issued
(404), without any lookup on the predict path. Ids a client supplies (the Open
Inference Protocol's ``id``) carry no valid signature and are never "ours".

The UUID comes from ``random`` (seeded from urandom, reseeded after fork), not
``uuid4()``: that reads urandom once per id, a system call that costs tens of
microseconds in sandboxed containers. The id needs to be unique and unforgeable,
not unpredictable; the HMAC makes it unforgeable. ``request_id_new`` costs ~1.5 us.

Only the key comes from Django (read lazily, re-derived when ``SECRET_KEY``
changes); pass ``secret`` to use the functions without settings.
"""

from __future__ import annotations

import hashlib
import hmac
import random
import re
from typing import Any

SIGNATURE_HEX_DIGITS = 16
REQUEST_ID_LENGTH = 32 + 1 + SIGNATURE_HEX_DIGITS

# A key for this purpose only (as Django's salted_hmac does), so a signature made
# here is never a signature valid anywhere else that uses SECRET_KEY.
_KEY_SALT = b"phoenix.inference.request_id"

# Version 4 and RFC 4122 variant bits of a UUID, and the bits they occupy.
_UUID4_BITS = (4 << 76) | (2 << 62)
_UUID4_MASK = ~((0xF << 76) | (0x3 << 62)) & ((1 << 128) - 1)

# The module's generator is reseeded in a forked child, so binding its method is safe.
_getrandbits = random.getrandbits

_SHAPE = re.compile(rf"[0-9a-f]{{32}}\.[0-9a-f]{{{SIGNATURE_HEX_DIGITS}}}")


class _Signer:
    """HMAC-SHA256 with the padded key hashed once: ``hmac.digest`` looks the hash up
    by name on every call (~1.5 us with OpenSSL 3); copying two prepared SHA-256
    states costs ~0.6 us. Same result as ``hmac.digest(key, message, "sha256")``."""

    def __init__(self, secret: str | bytes) -> None:
        raw = secret.encode() if isinstance(secret, str) else secret
        key = hashlib.sha256(_KEY_SALT + raw).digest().ljust(64, b"\0")
        self._inner = hashlib.sha256(bytes(b ^ 0x36 for b in key))
        self._outer = hashlib.sha256(bytes(b ^ 0x5C for b in key))

    def sign(self, uuid_hex: str) -> str:
        inner = self._inner.copy()
        inner.update(uuid_hex.encode())
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.hexdigest()[:SIGNATURE_HEX_DIGITS]


_django_settings: Any = None  # django.conf.settings, imported on first use
_cached_secret: str | bytes | None = None
_cached_signer: _Signer | None = None


def _settings_signer() -> _Signer:
    """The signer for ``settings.SECRET_KEY``, rebuilt when the setting changes."""
    global _django_settings, _cached_secret, _cached_signer
    if _django_settings is None:
        from django.conf import settings

        _django_settings = settings
    secret = _django_settings.SECRET_KEY
    if secret is not _cached_secret or _cached_signer is None:
        _cached_signer, _cached_secret = _Signer(secret), secret
    return _cached_signer


def _settings_signers() -> list[_Signer]:
    """The current signer first, then those of ``SECRET_KEY_FALLBACKS`` (key rotation)."""
    from django.conf import settings

    fallbacks = getattr(settings, "SECRET_KEY_FALLBACKS", None) or []
    return [_settings_signer(), *(_Signer(s) for s in fallbacks)]


def request_id_new(*, secret: str | bytes | None = None) -> str:
    """A new signed request id, ``<uuid hex>.<signature>`` (49 characters)."""
    signer = _settings_signer() if secret is None else _Signer(secret)
    uuid_hex = f"{(_getrandbits(128) & _UUID4_MASK) | _UUID4_BITS:032x}"
    return f"{uuid_hex}.{signer.sign(uuid_hex)}"


def request_id_is_ours(request_id: str, *, secret: str | bytes | None = None) -> bool:
    """True when ``request_id`` was issued by ``request_id_new`` under this secret
    (or, reading settings, under one of ``SECRET_KEY_FALLBACKS``). Never raises."""
    if not isinstance(request_id, str) or len(request_id) != REQUEST_ID_LENGTH:
        return False
    if _SHAPE.fullmatch(request_id) is None:
        return False
    uuid_hex, signature = request_id[:32], request_id[33:]
    signers = _settings_signers() if secret is None else [_Signer(secret)]
    # Every key is tried (no early exit), so the timing says nothing about which matched.
    matches = [hmac.compare_digest(s.sign(uuid_hex), signature) for s in signers]
    return any(matches)
