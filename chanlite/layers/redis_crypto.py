"""Symmetric encryption of message bodies for the Redis channel layer.

Why: messages sit in Redis (and travel to it, and to its replicas) in the
clear otherwise; anyone who can read the server's memory, its replication
stream or a ``MONITOR`` sees cookies, session ids and chat text. With
``symmetric_encryption_keys=[...]`` every message body is sealed with
Fernet (AES-128-CBC + HMAC-SHA256, from the maintained ``cryptography``
package; ``pip install chanlite[redis-crypto]``) before it leaves the
process, exactly what asgi_redis and channels_redis offer:

- the *first* key encrypts, *every* key decrypts, so keys rotate without a
  flag day: add the new key second everywhere, then move it first, then
  drop the old one;
- a key is any string (or bytes) of any length; it is stretched with
  SHA-256 into a Fernet key, as asgi_redis/channels_redis do;
- Fernet is authenticated: a message sealed with an unknown key, or
  altered in Redis, fails its HMAC and is *dropped with a log line* by the
  layer — never delivered garbled. Fernet's random 128-bit IV per message
  has no practical limit on how many messages one key may seal (unlike a
  random 96-bit AES-GCM nonce).

Only message bodies are sealed: channel and group names are the keys Redis
routes by, so they stay readable (put secrets in bodies, not names).
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Sequence
from typing import Any

__all__ = ["MessageCipher"]


class MessageCipher:
    """Seal and open message bodies with a list of keys (first one seals)."""

    def __init__(self, keys: Sequence[str | bytes]) -> None:
        if isinstance(keys, (str, bytes)) or not isinstance(keys, Sequence) or not keys:
            raise ValueError(
                "symmetric_encryption_keys must be a non-empty list of keys (str or bytes), "
                f"first one encrypting, e.g. ['a-long-random-secret']; got {keys!r:.40}"
            )
        for key in keys:
            if not isinstance(key, (str, bytes)) or not key:
                raise ValueError(
                    f"each of symmetric_encryption_keys must be a non-empty str or bytes, "
                    f"not {type(key).__name__}"
                )
        try:
            from cryptography.fernet import Fernet, InvalidToken, MultiFernet
        except ImportError as exc:
            raise ImportError(
                "symmetric_encryption_keys needs the cryptography package: "
                f"pip install chanlite[redis-crypto] ({exc})"
            ) from exc
        self._fernet = MultiFernet([Fernet(self.derive(key)) for key in keys])
        self._invalid: type[Exception] = InvalidToken

    @staticmethod
    def derive(key: str | bytes) -> bytes:
        """The Fernet key for ``key`` (SHA-256, url-safe base64)."""
        raw = key.encode() if isinstance(key, str) else key
        return base64.urlsafe_b64encode(hashlib.sha256(raw).digest())

    def seal(self, data: bytes) -> bytes:
        """Encrypt and authenticate ``data`` with the first key."""
        return self._fernet.encrypt(data)

    def open(self, token: Any) -> bytes | None:
        """The plaintext of ``token``, or None if no key opens it (or it was altered)."""
        try:
            return self._fernet.decrypt(token)
        except (self._invalid, TypeError, ValueError):
            return None
