"""Symmetric encryption of message bodies for the Redis channel layer.

Why: messages sit in Redis (and travel to it, and to its replicas) in the
clear otherwise; anyone who can read the server's memory, its replication
stream or a ``MONITOR`` sees cookies, session ids and chat text. With
``symmetric_encryption_keys=[...]`` every message body is sealed with
AES-256-GCM (authenticated encryption from the maintained ``cryptography``
package; ``pip install chanlite[redis-crypto]``) before it leaves the
process, the feature asgi_redis and channels_redis offer (they use Fernet;
AES-GCM costs about a seventh of Fernet's CPU per message here and adds 33
bytes instead of ~120 — see docs/performance.md):

- the *first* key encrypts, *every* key decrypts, so keys rotate without a
  flag day: add the new key second everywhere, then move it first, then
  drop the old one. A key is any string (or bytes) of any length,
  stretched with SHA-256 as asgi_redis/channels_redis do, so their key
  settings port unchanged;
- GCM is authenticated: a message sealed with an unknown key, sent
  unencrypted, or altered in Redis fails to open and is *dropped with a
  log line* by the layer — never delivered garbled;
- GCM must never reuse a nonce under one key. Random 96-bit nonces would
  cap a key at about 2**32 messages; instead each process draws a random
  64-bit prefix and counts the other 32 bits, drawing a new prefix after
  ``fork()`` and whenever the counter wraps. Two prefixes collide with
  probability ~n**2/2**65 for n prefixes ever drawn under a key.

Sealed body: ``b"\\x01"`` (format version) + 4-byte key id + 12-byte nonce +
ciphertext and 16-byte tag. Only message bodies are sealed: channel and
group names are what Redis routes by, so they stay readable (put secrets in
bodies, not names). Someone who can *write* to Redis still cannot forge or
alter a message, but can replay or drop sealed ones.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # cryptography is an optional extra: only for the checker here
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = ["MessageCipher"]

_VERSION = b"\x01"
_AAD = b"chanlite message v1"
_HEADER = 1 + 4 + 12
_COUNTER_LIMIT = 2**32


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
            # cryptography is the optional ``redis-crypto`` extra: the Redis
            # layer imports this module without it and only a layer given
            # keys needs it, so that one says which extra to install.
            from cryptography.exceptions import InvalidTag  # noqa: PLC0415 — optional extra
            from cryptography.hazmat.primitives.ciphers.aead import (  # noqa: PLC0415 — optional extra
                AESGCM,
            )
        except ImportError as exc:
            raise ImportError(
                "symmetric_encryption_keys needs the cryptography package: "
                f"pip install chanlite[redis-crypto] ({exc})"
            ) from exc
        self._invalid: type[Exception] = InvalidTag
        #: key id -> AESGCM, for opening; the first key seals.
        self._openers: dict[bytes, AESGCM] = {}
        for key in keys:
            secret = self.derive(key)
            self._openers.setdefault(self.key_id(secret), AESGCM(secret))
        first = self.derive(keys[0])
        self._seal_id = _VERSION + self.key_id(first)
        self._sealer = AESGCM(first)
        self._lock = threading.Lock()
        self._new_prefix()

    @staticmethod
    def derive(key: str | bytes) -> bytes:
        """The 256-bit AES key for ``key`` (SHA-256 of it)."""
        return hashlib.sha256(key.encode() if isinstance(key, str) else key).digest()

    @staticmethod
    def key_id(secret: bytes) -> bytes:
        """4 bytes naming a key without revealing it (picks the opener in O(1))."""
        return hashlib.sha256(b"chanlite key id" + secret).digest()[:4]

    def _new_prefix(self) -> None:
        # One tuple, read at once: a prefix is only ever used with its own
        # counter (next() on itertools.count is atomic under the GIL).
        self._state = (os.getpid(), os.urandom(8), itertools.count())

    def _nonce(self) -> bytes:
        pid, prefix, counter = self._state
        n = next(counter)
        if n >= _COUNTER_LIMIT or pid != os.getpid():
            with self._lock:
                if self._state[0] != os.getpid() or next(self._state[2]) >= _COUNTER_LIMIT:
                    self._new_prefix()
                pid, prefix, counter = self._state
                n = next(counter)
        return prefix + n.to_bytes(4, "big")

    def seal(self, data: bytes) -> bytes:
        """Encrypt and authenticate ``data`` with the first key."""
        nonce = self._nonce()
        return self._seal_id + nonce + self._sealer.encrypt(nonce, data, _AAD)

    def open(self, token: Any) -> bytes | None:
        """The plaintext of ``token``, or None if no key opens it (or it was altered)."""
        if type(token) is not bytes or len(token) < _HEADER + 16 or token[:1] != _VERSION:
            return None
        opener = self._openers.get(token[1:5])
        if opener is None:
            return None
        try:
            return opener.decrypt(token[5:_HEADER], token[_HEADER:], _AAD)
        except self._invalid:
            return None
