"""Encrypted message bodies on the Redis layer (``symmetric_encryption_keys``).

Against the shared Redis at 127.0.0.1:6379, each test under its own prefix
(skipped, printing why, when none answers). ``cryptography`` is in the test
extras, so these run in CI.
"""

from __future__ import annotations

import logging
import sys
import uuid

import pytest

from .redis_server import SHARED_URL, shared_redis_unavailable

_REASON = shared_redis_unavailable()
if _REASON:
    print(f"\nskipping Redis encryption tests: {_REASON}", file=sys.stderr)
    pytest.skip(_REASON, allow_module_level=True)

import redis  # noqa: E402

from chanlite.layers.redis import RedisChannelLayer  # noqa: E402


@pytest.fixture
def prefix():
    prefix = f"chanlite-crypto-{uuid.uuid4().hex[:12]}"
    yield prefix
    client = redis.Redis.from_url(SHARED_URL)
    RedisChannelLayer(hosts=[SHARED_URL], prefix=prefix).flush()
    assert not list(client.scan_iter(match=prefix + "*"))
    client.close()


def layer_with(prefix: str, keys) -> RedisChannelLayer:
    return RedisChannelLayer(hosts=[SHARED_URL], prefix=prefix, symmetric_encryption_keys=keys)


def test_bodies_are_sealed_in_redis_and_opened_on_receive(prefix):
    layer = layer_with(prefix, ["first-secret"])
    layer.send("secret.chan", {"text": "attack at dawn", "blob": b"\x00\x01"})
    layer.group_add("room", "secret.chan")
    layer.send_group("room", {"text": "group dawn"})
    stored = redis.Redis.from_url(SHARED_URL).lrange(f"{prefix}:q:secret.chan", 0, -1)
    assert len(stored) == 2
    assert all(b"dawn" not in item for item in stored), stored
    assert layer.receive(["secret.chan"]) == (
        "secret.chan", {"text": "attack at dawn", "blob": b"\x00\x01"})
    assert layer.receive(["secret.chan"], block=True, timeout=1) == (
        "secret.chan", {"text": "group dawn"})


def test_rotation_first_key_seals_every_key_opens(prefix):
    old = layer_with(prefix, ["old-key"])
    rotating = layer_with(prefix, ["new-key", "old-key"])
    old.send("rot", {"n": 1})
    rotating.send("rot", {"n": 2})
    assert rotating.receive(["rot"]) == ("rot", {"n": 1})  # old key still opens
    assert rotating.receive(["rot"]) == ("rot", {"n": 2})
    rotating.send("rot", {"n": 3})
    new_only = layer_with(prefix, ["new-key"])
    assert new_only.receive(["rot"]) == ("rot", {"n": 3})  # sealed with the new key


def test_unknown_key_is_dropped_with_a_log_line_never_delivered(prefix, caplog):
    sender = layer_with(prefix, ["someone-else"])
    receiver = layer_with(prefix, ["ours"])
    plain = RedisChannelLayer(hosts=[SHARED_URL], prefix=prefix)
    sender.send("mixed", {"n": "foreign"})
    plain.send("mixed", {"n": "cleartext"})
    layer_with(prefix, ["ours"]).send("mixed", {"n": "ours"})
    with caplog.at_level(logging.WARNING, logger="chanlite.layers.redis"):
        # Both bad ones are skipped inside one receive call.
        assert receiver.receive(["mixed"]) == ("mixed", {"n": "ours"})
    drops = [r for r in caplog.records if "none of symmetric_encryption_keys" in r.getMessage()]
    assert len(drops) == 2
    assert receiver.delivery_statistics()["messages_undecryptable"] == 2
    sender.send("mixed", {"n": "foreign"})
    assert receiver.receive(["mixed"], block=True, timeout=0.2) == (None, None)


def test_a_tampered_body_is_dropped(prefix):
    layer = layer_with(prefix, ["k"])
    layer.send("tamper", {"n": 1})
    client = redis.Redis.from_url(SHARED_URL)
    key = f"{prefix}:q:tamper"
    item = client.lpop(key)
    client.rpush(key, item[:-5] + (b"AAAAA" if item[-5:] != b"AAAAA" else b"BBBBB"))
    assert layer.receive(["tamper"]) == (None, None)
    assert layer.delivery_statistics()["messages_undecryptable"] == 1


def test_bad_key_settings_say_what_to_change():
    with pytest.raises(ValueError, match="non-empty list"):
        RedisChannelLayer(hosts=[SHARED_URL], symmetric_encryption_keys="just-a-string")
    with pytest.raises(ValueError, match="non-empty str or bytes"):
        RedisChannelLayer(hosts=[SHARED_URL], symmetric_encryption_keys=["ok", ""])
