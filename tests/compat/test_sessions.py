from __future__ import unicode_literals

from importlib import import_module

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AnonymousUser

from chanlite.auth import http_session_user
from chanlite.message import Message
from chanlite.sessions import channel_session, http_session, session_for_reply_channel
from chanlite.test import ChannelTestCase


def http_session_store():
    session = import_module(settings.SESSION_ENGINE).SessionStore()
    session.save()
    return session


class MessageTests(ChannelTestCase):

    def test_message_built_by_hand(self):
        """
        Unit tests build messages with no channel name and no layer.
        """
        message = Message({"reply_channel": "test-reply", "text": "hi"}, None, None)
        self.assertEqual(message["text"], "hi")
        self.assertEqual(message.reply_channel.name, "test-reply")
        self.assertIsNone(message.channel.name)
        # Replies go through the default layer.
        message.reply_channel.send({"text": "back"})
        self.assertEqual(self.get_next_message("test-reply", require=True)["text"], "back")

    def test_message_defaults(self):
        message = Message({"text": "x"})
        self.assertIsNone(message.reply_channel)
        with self.assertRaises(ValueError):
            message.channel.send({"text": "nowhere"})


class SessionTests(ChannelTestCase):
    """
    Tests the channels session module.
    """

    def test_channel_session(self):
        """
        Tests the channel_session decorator
        """
        # Construct message to send
        message = Message({"reply_channel": "test-reply"}, None, None)

        # Run through a simple fake consumer that assigns to it
        @channel_session
        def inner(message):
            message.channel_session["num_ponies"] = -1

        inner(message)
        # Test the session worked
        session2 = session_for_reply_channel("test-reply")
        self.assertEqual(session2["num_ponies"], -1)

    def test_http_session(self):
        """
        Tests that http_session correctly extracts a session cookie.
        """
        # Make a session to try against
        session1 = http_session_store()
        # Construct message to send
        message = Message({
            "reply_channel": "test-reply",
            "http_version": "1.1",
            "method": "GET",
            "path": "/test2/",
            "headers": {
                "host": b"example.com",
                "cookie": ("%s=%s" % (settings.SESSION_COOKIE_NAME, session1.session_key)).encode("ascii"),
            },
        }, None, None)

        # Run it through http_session, make sure it works (test double-decorating too)
        @http_session
        @http_session
        def inner(message):
            message.http_session["species"] = "horse"

        inner(message)
        # Check value assignment stuck
        session2 = import_module(settings.SESSION_ENGINE).SessionStore(session_key=session1.session_key)
        self.assertEqual(session2["species"], "horse")

    def test_http_session_list_headers(self):
        session1 = http_session_store()
        session1["species"] = "zebra"
        session1.save()
        message = Message({
            "reply_channel": "test-reply",
            "path": "/",
            "headers": [
                [b"host", b"example.com"],
                [b"cookie", ("%s=%s" % (settings.SESSION_COOKIE_NAME, session1.session_key)).encode("ascii")],
            ],
        }, None, None)

        @http_session
        def inner(message):
            return message.http_session["species"]

        self.assertEqual(inner(message), "zebra")

    def test_http_session_user_dict_headers(self):
        user = get_user_model().objects.create_user(username="pony", password="pw")
        session = http_session_store()
        session["_auth_user_id"] = str(user.pk)
        session["_auth_user_backend"] = settings.AUTHENTICATION_BACKENDS[0] \
            if hasattr(settings, "AUTHENTICATION_BACKENDS") else "django.contrib.auth.backends.ModelBackend"
        session["_auth_user_hash"] = user.get_session_auth_hash()
        session.save()

        @http_session_user
        def inner(message):
            return message.user

        cookie = ("%s=%s" % (settings.SESSION_COOKIE_NAME, session.session_key)).encode("ascii")
        found = inner(Message({"reply_channel": "r", "headers": {"cookie": cookie}}, None, None))
        self.assertEqual(found, user)
        anonymous = inner(Message({"reply_channel": "r", "headers": {"host": b"x"}}, None, None))
        self.assertIsInstance(anonymous, AnonymousUser)
