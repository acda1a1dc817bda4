"""``MessageCipher`` (the Redis layer's body encryption) on its own: no Redis."""

from __future__ import annotations

import os

import pytest

from chanlite.layers import redis_crypto
from chanlite.layers.redis_crypto import MessageCipher


def test_seal_open_round_trip_and_overhead():
    cipher = MessageCipher(["k"])
    token = cipher.seal(b"hello")
    assert b"hello" not in token
    assert len(token) == len(b"hello") + 33  # version, key id, nonce, tag
    assert cipher.open(token) == b"hello"
    assert MessageCipher(["other"]).open(token) is None
    assert cipher.open(b"\x81\xa1a\x01") is None  # a plain msgpack dict
    assert cipher.open(token[:-1] + bytes([token[-1] ^ 1])) is None


def test_nonces_never_repeat_across_counter_wrap(monkeypatch):
    monkeypatch.setattr(redis_crypto, "_COUNTER_LIMIT", 3)
    cipher = MessageCipher(["k"])
    nonces = [cipher.seal(b"x")[5:17] for _ in range(20)]
    assert len(set(nonces)) == 20
    prefixes = {nonce[:8] for nonce in nonces}
    assert len(prefixes) >= 6  # a new random prefix every 3 messages
    assert all(int.from_bytes(n[8:], "big") < 3 for n in nonces)


def test_a_forked_child_draws_its_own_nonce_prefix():
    cipher = MessageCipher(["k"])
    parent_prefix = cipher.seal(b"x")[5:13]
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: report its prefix and leave at once
        os.write(write, cipher.seal(b"x")[5:13])
        os._exit(0)
    os.close(write)
    child_prefix = os.read(read, 8)
    os.waitpid(pid, 0)
    os.close(read)
    assert len(child_prefix) == 8 and child_prefix != parent_prefix
    assert cipher.seal(b"x")[5:13] == parent_prefix  # the parent keeps its own


def test_missing_cryptography_says_which_extra(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_cryptography(name, *args, **kwargs):
        if name.startswith("cryptography"):
            raise ImportError("No module named 'cryptography'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_cryptography)
    with pytest.raises(ImportError, match=r"pip install chanlite\[redis-crypto\]"):
        MessageCipher(["k"])
