"""``chanlite.binding`` written the way Channels 1.x tests used ``channels.binding``:
bindings declared inside tests, ``ChannelTestCase`` + ``WSClient`` +
``apply_routes``; plus the fixes listed in docs/migrating.md (sent on commit,
groups left on update, refusals logged).
"""

from __future__ import annotations

import logging

from django.contrib.auth import get_user_model
from django.contrib.sessions.models import Session
from django.db import transaction
from django.utils import timezone

from chanlite.binding.base import CREATE, DELETE, UPDATE, BindingMetaclass
from chanlite.binding.websockets import WebsocketBinding, WebsocketBindingWithMembers
from chanlite.generic.websockets import WebsocketDemultiplexer
from chanlite.testing import ChannelTestCase, TransactionChannelTestCase, WSClient, apply_routes

User = get_user_model()


def user_binding(test, group="users", **attrs):
    """A WebsocketBinding of User declared the 1.x way (inside the test), and
    unregistered when the test ends so later tests do not trigger it."""
    body = {"model": User, "stream": "users", "fields": ["username", "email", "is_active"],
            "group_names": classmethod(lambda cls, instance: [group]),
            "has_permission": lambda self, user, action, pk: True, **attrs}
    binding = type("UserBinding", (WebsocketBinding,), body)
    test.addCleanup(binding.unregister)
    return binding


def demultiplexer(binding):
    return type("Demultiplexer", (WebsocketDemultiplexer,),
                {"consumers": {"users": binding.consumer}, "groups": ["inbound"]})


class OutboundTests(ChannelTestCase):

    def test_trigger_outbound_create(self):
        user_binding(self, fields=["username", "email", "password", "last_name"])
        client = WSClient()
        client.join_group("users")

        user = User.objects.create(username="test", email="test@test.com")

        received = client.receive()
        self.assertEqual(received["stream"], "users")
        payload = received["payload"]
        self.assertEqual(payload["action"], "create")
        self.assertEqual(payload["model"], "auth.user")
        self.assertEqual(payload["pk"], user.pk)
        self.assertEqual(payload["data"], {"username": "test", "email": "test@test.com",
                                           "password": "", "last_name": ""})
        self.assertIsNone(client.receive())

    def test_trigger_outbound_create_non_auto_pk(self):
        """A string primary key given by the caller: still a create."""

        class SessionBinding(WebsocketBinding):
            model = "sessions.Session"
            stream = "sessions"
            fields = ["expire_date"]

            @classmethod
            def group_names(cls, instance):
                return ["sessions"]

        self.addCleanup(SessionBinding.unregister)
        client = WSClient()
        client.join_group("sessions")
        Session.objects.create(session_key="k" * 32, session_data="", expire_date=timezone.now())
        payload = client.receive()["payload"]
        self.assertEqual((payload["action"], payload["pk"], payload["model"]),
                         ("create", "k" * 32, "sessions.session"))

    def test_trigger_outbound_create_exclude(self):
        user_binding(self, fields=None, exclude=["first_name", "last_name", "password"])
        client = WSClient()
        client.join_group("users")
        User.objects.create(username="test", email="test@test.com")
        data = client.receive()["payload"]["data"]
        self.assertEqual(data["username"], "test")
        self.assertIn("email", data)
        self.assertNotIn("first_name", data)
        self.assertNotIn("last_name", data)
        self.assertNotIn("password", data)

    def test_omit_fields_and_exclude(self):
        with self.assertRaisesRegex(ValueError, "fields or exclude"):
            class TestBinding(WebsocketBinding):
                model = User
                stream = "test"

                @classmethod
                def group_names(cls, instance):
                    return ["users_omit"]

        BindingMetaclass.binding_classes.pop()  # the half-made class

    def test_trigger_outbound_update(self):
        user_binding(self, fields=["__all__"])
        user = User.objects.create(username="test", email="test@test.com")
        client = WSClient()
        client.join_group("users")

        user.username = "test_new"
        user.save()

        payload = client.receive()["payload"]
        self.assertEqual(payload["action"], "update")
        self.assertEqual(payload["pk"], user.pk)
        self.assertEqual(payload["data"]["username"], "test_new")
        self.assertEqual(payload["data"]["email"], "test@test.com")
        self.assertIsNone(client.receive())

    def test_update_fields_limits_the_data(self):
        user_binding(self)
        user = User.objects.create(username="test", email="test@test.com")
        client = WSClient()
        client.join_group("users")
        user.email = "new@test.com"
        user.save(update_fields=["email"])
        self.assertEqual(client.receive()["payload"]["data"], {"email": "new@test.com"})

    def test_trigger_outbound_delete(self):
        user_binding(self, fields=["username"])
        user = User.objects.create(username="test", email="test@test.com")
        pk = user.pk
        client = WSClient()
        client.join_group("users")

        user.delete()

        payload = client.receive()["payload"]
        self.assertEqual((payload["action"], payload["pk"], payload["data"]),
                         ("delete", pk, {"username": "test"}))
        self.assertIsNone(client.receive())

    def test_group_changes_on_update(self):
        """Leaving a group sends it a delete, joining one sends a create, and
        the groups kept get an update (1.x computed the old groups from the
        already-changed instance, so the delete never went out)."""

        class ActiveBinding(WebsocketBinding):
            model = User
            stream = "users"
            fields = ["username", "is_active"]

            @classmethod
            def group_names(cls, instance):
                return ["all", "active" if instance.is_active else "inactive"]

        self.addCleanup(ActiveBinding.unregister)
        user = User.objects.create(username="mover", is_active=True)
        clients = {}
        for group in ("all", "active", "inactive"):
            clients[group] = WSClient()
            clients[group].join_group(group)

        user.is_active = False
        user.save()

        actions = {group: [m["payload"]["action"] for m in iter(client.receive, None)]
                   for group, client in clients.items()}
        self.assertEqual(actions, {"all": ["update"], "active": ["delete"], "inactive": ["create"]})

    def test_with_members(self):
        class MemberBinding(WebsocketBindingWithMembers):
            model = User
            stream = "users"
            fields = ["username"]
            send_members = ["get_full_name", "is_anonymous", "date_joined.year"]

            @classmethod
            def group_names(cls, instance):
                return ["members"]

        self.addCleanup(MemberBinding.unregister)
        client = WSClient()
        client.join_group("members")
        user = User.objects.create(username="m", first_name="Ada", last_name="Lovelace")
        self.assertEqual(client.receive()["payload"]["data"], {
            "username": "m", "get_full_name": "Ada Lovelace", "is_anonymous": False,
            "date_joined__year": user.date_joined.year})

    def test_nested_transaction_sends_on_commit(self):
        """Inside a real transaction (here nested in the test's), nothing is
        sent until it commits."""
        user_binding(self)
        client = WSClient()
        client.join_group("users")
        with self.captureOnCommitCallbacks(execute=True) as callbacks:
            with transaction.atomic():
                User.objects.create(username="later")
                self.assertIsNone(client.receive())
        self.assertEqual(len(callbacks), 1)
        self.assertEqual(client.receive()["payload"]["data"]["username"], "later")


class InboundTests(ChannelTestCase):

    def connect(self, binding):
        client = WSClient()
        self.routes = apply_routes([demultiplexer(binding).as_route(path="^/")])
        self.routes.__enter__()
        self.addCleanup(self.routes.__exit__, None, None, None)
        client.send_and_consume("websocket.connect", path="/")
        return client

    def send(self, client, payload):
        client.send_and_consume("websocket.receive", path="/",
                                text={"stream": "users", "payload": payload})

    def test_inbound_create(self):
        client = self.connect(user_binding(self, fields=["username", "email", "password", "last_name"]))
        self.send(client, {"action": CREATE,
                           "data": {"username": "test_inbound", "email": "test@user-stream.com"}})
        user = User.objects.get()
        self.assertEqual((user.username, user.email), ("test_inbound", "test@user-stream.com"))
        self.assertIsNone(client.receive())

    def test_inbound_update(self):
        user = User.objects.create(username="test", email="test@channels.com")
        client = self.connect(user_binding(self, fields=["username"]))
        self.send(client, {"action": UPDATE, "pk": user.pk, "data": {"username": "test_inbound"}})
        user.refresh_from_db()
        self.assertEqual((user.username, user.email), ("test_inbound", "test@channels.com"))

        # A field outside the binding's fields is refused, with a log line.
        with self.assertLogs("chanlite.binding", logging.WARNING) as logs:
            self.send(client, {"action": UPDATE, "pk": user.pk, "data": {"email": "new@test.com"}})
        self.assertIn("'email'", logs.output[0])
        user.refresh_from_db()
        self.assertEqual(user.email, "test@channels.com")
        self.assertIsNone(client.receive())

    def test_inbound_delete(self):
        user = User.objects.create(username="test", email="test@channels.com")
        client = self.connect(user_binding(self, fields=["username"]))
        self.send(client, {"action": DELETE, "pk": user.pk})
        self.assertFalse(User.objects.filter(pk=user.pk).exists())
        self.assertIsNone(client.receive())

    def test_route_params_saved_in_kwargs(self):
        binding = user_binding(self)
        seen = []
        binding.create = lambda self, data: seen.append(self.kwargs["id"])
        with apply_routes([demultiplexer(binding).as_route(path=r"^/path/(?P<id>\d+)")]):
            client = WSClient()
            client.send_and_consume("websocket.connect", path="/path/789")
            client.send_and_consume("websocket.receive", path="/path/789", text={
                "stream": "users", "payload": {"action": CREATE, "data": {"username": "x"}}})
        self.assertEqual(seen, ["789"])

    def test_permission_denied_writes_nothing(self):
        client = self.connect(user_binding(
            self, has_permission=lambda self, user, action, pk: user.is_authenticated))
        with self.assertLogs("chanlite.binding", logging.WARNING) as logs:
            self.send(client, {"action": CREATE, "data": {"username": "intruder"}})
        self.assertIn("permission denied", logs.output[0])
        self.assertFalse(User.objects.exists())

    def test_user_is_the_logged_in_one(self):
        seen = []
        binding = user_binding(self, has_permission=lambda self, user, action, pk: seen.append(
            user.get_username()) or True)
        User.objects.create_user(username="alice", password="pw")
        client = WSClient()
        client.login(username="alice", password="pw")
        demux = type("Demultiplexer", (WebsocketDemultiplexer,),
                     {"consumers": {"users": binding.consumer}, "http_user": True})
        with apply_routes([demux.as_route(path="^/")]):
            client.send_and_consume("websocket.connect", path="/")
            client.send_and_consume("websocket.receive", path="/", text={
                "stream": "users", "payload": {"action": CREATE, "data": {"username": "bob"}}})
        self.assertEqual(seen, ["alice"])
        self.assertTrue(User.objects.filter(username="bob").exists())

    def test_bad_input_is_refused_with_a_log_line(self):
        user = User.objects.create(username="keep", email="keep@test.com")
        client = self.connect(user_binding(self))
        cases = [
            ({"data": {"username": "x"}}, "no 'action'"),
            ({"action": "explode", "pk": user.pk}, "unknown action 'explode'"),
            ({"action": UPDATE, "pk": 999999, "data": {"username": "x"}}, "no auth.user with pk=999999"),
            ({"action": DELETE, "pk": 999999}, "no auth.user with pk=999999"),
            ({"action": UPDATE, "pk": "not-a-pk", "data": {"username": "x"}}, "not-a-pk"),
            ({"action": UPDATE, "pk": user.pk, "data": {"username": "x" * 500}}, "username"),
            ({"action": UPDATE, "pk": user.pk, "data": {"is_active": "maybe"}}, "is_active"),
            ({"action": CREATE, "data": ["not", "a", "dict"]}, "'data' must be an object"),
            ({"action": CREATE, "data": {"username": "keep"}}, "username"),  # unique
            ({"action": CREATE, "data": {"username": "y", "email": "not an address"}}, "email"),
        ]
        for payload, expected in cases:
            with self.subTest(payload=payload), \
                    self.assertLogs("chanlite.binding", logging.WARNING) as logs:
                self.send(client, payload)
            self.assertIn(expected, logs.output[0])
        user.refresh_from_db()
        self.assertEqual((user.username, user.email, user.is_active), ("keep", "keep@test.com", True))
        self.assertEqual(User.objects.count(), 1)

    def test_connect_and_disconnect_are_ignored(self):
        client = self.connect(user_binding(self))
        client.send_and_consume("websocket.disconnect", path="/")
        self.assertFalse(User.objects.exists())


class CommitTests(TransactionChannelTestCase):
    """With real transactions: sent after commit, nothing for a rollback."""

    def test_rolled_back_change_sends_nothing(self):
        user_binding(self)
        client = WSClient()
        client.join_group("users")
        try:
            with transaction.atomic():
                User.objects.create(username="ghost")
                raise RuntimeError("roll back")
        except RuntimeError:
            pass
        self.assertIsNone(client.receive())
        User.objects.create(username="real")
        self.assertEqual(client.receive()["payload"]["data"]["username"], "real")

    def test_sent_only_when_the_transaction_commits(self):
        user_binding(self)
        client = WSClient()
        client.join_group("users")
        with transaction.atomic():
            User.objects.create(username="one")
            User.objects.create(username="two")
            self.assertIsNone(client.receive())
        self.assertEqual([m["payload"]["data"]["username"] for m in iter(client.receive, None)],
                         ["one", "two"])

    def test_inbound_failure_rolls_back_its_own_write(self):
        """An inbound update that fails half-way (here in save's post_save
        handler) leaves the row as it was and sends nothing."""
        user = User.objects.create(username="stable")
        binding = user_binding(self)
        client = WSClient()
        client.join_group("users")

        def explode(self, pk, data):
            WebsocketBinding.update(self, pk, data)
            raise ValueError("failed after the write")

        binding.update = explode
        with apply_routes([demultiplexer(binding).as_route(path="^/")]):
            client.send_and_consume("websocket.connect", path="/")
            with self.assertLogs("chanlite.binding", logging.WARNING):
                client.send_and_consume("websocket.receive", path="/", text={
                    "stream": "users",
                    "payload": {"action": UPDATE, "pk": user.pk, "data": {"username": "changed"}}})
        user.refresh_from_db()
        self.assertEqual(user.username, "stable")
        self.assertIsNone(client.receive())
