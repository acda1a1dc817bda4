"""The README's quick-start code runs as printed (so the first example a user
copies cannot rot): the block is read from README.md and executed."""

import re
from pathlib import Path

import pytest
from django.contrib.auth.models import User

from chanlite.testing import WSClient, apply_routes

README = Path(__file__).resolve().parents[2] / "README.md"


def quickstart_routing() -> list:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    assert blocks, "README.md lost its ```python quick-start block"
    namespace: dict = {}
    exec(compile(blocks[0], "README.md quick start", "exec"), namespace)
    assert namespace["CHANNEL_LAYERS"]["default"]["ROUTING"]
    return namespace["channel_routing"]


@pytest.mark.django_db
def test_quickstart_chat_delivers_to_every_member_with_user_names():
    with apply_routes(quickstart_routing()):
        ann, bob = WSClient(), WSClient()
        ann.force_login(User.objects.create_user("ann"))
        bob.force_login(User.objects.create_user("bob"))
        ann.connect("/")
        bob.connect("/")
        ann.send_and_consume("websocket.receive", text="hello")
        assert bob.receive(json=False) == "ann: hello"
        assert ann.receive(json=False) == "ann: hello"
