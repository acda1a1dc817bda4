from __future__ import unicode_literals

from django.contrib.auth import get_user_model
from django.http.cookie import parse_cookie

from chanlite import Group, route, route_class
from chanlite.auth import channel_session_user_from_http
from chanlite.exceptions import ChannelSocketException, WebsocketCloseException
from chanlite.generic.websockets import JsonWebsocketConsumer, WebsocketConsumer
from chanlite.sessions import enforce_ordering
from chanlite.test import ChannelTestCase, Client, HttpClient, WSClient, apply_routes


class WSClientTests(ChannelTestCase):
    def test_cookies(self):
        client = WSClient()
        client.set_cookie('foo', 'not-bar')
        client.set_cookie('foo', 'bar')
        client.set_cookie('qux', 'qu;x')

        # Django's interpretation of the serialized cookie.
        cookie_dict = parse_cookie(client.headers['cookie'].decode('ascii'))

        self.assertEqual(client.get_cookies(), cookie_dict)
        self.assertEqual({'foo': 'bar', 'qux': 'qu;x'}, cookie_dict)

    def test_session_cookie_after_login(self):
        user = get_user_model().objects.create_user(username='test', password='pw')
        client = WSClient()
        self.assertTrue(client.login(username='test', password='pw'))
        self.assertIn('sessionid', client.get_cookies())

        @channel_session_user_from_http
        def consumer(message):
            message.reply_channel.send({'accept': True})
            message.reply_channel.send({'text': message.user.username})

        with apply_routes(route('websocket.connect', consumer)):
            client.send_and_consume('websocket.connect', path='/')
            self.assertEqual(client.receive(json=False), user.username)

    def test_force_login(self):
        user = get_user_model().objects.create_user(username='forced')
        client = WSClient()
        client.force_login(user)

        class Who(WebsocketConsumer):
            http_user = True

            def connect(self, message, **kwargs):
                self.message.reply_channel.send({'accept': True})
                self.send(text=self.message.user.username)

        with apply_routes(route_class(Who)):
            client.send_and_consume('websocket.connect', path='/')
            self.assertEqual(client.receive(json=False), 'forced')

    def test_headers(self):
        client = WSClient()
        client.set_header('origin', 'https://example.com')
        with self.assertRaises(ValueError):
            client.set_header('cookie', 'a=b')
        client.send('websocket.connect', path='/path?x=1')
        message = self.get_next_message('websocket.connect', require=True)
        self.assertIn([b'origin', b'https://example.com'], message['headers'])
        self.assertEqual(message['path'], '/path')
        self.assertEqual(message['reply_channel'], client.reply_channel)

    def test_text_json_encoded(self):
        client = WSClient()
        client.send('websocket.receive', text={'key': 'value'}, path='/my/path')
        message = self.get_next_message('websocket.receive', require=True)
        self.assertEqual(message['text'], '{"key": "value"}')
        self.assertEqual(message['path'], '/my/path')

    def test_path_in_content(self):
        client = WSClient()
        client.send('websocket.receive', content={'path': '/my_path'}, text={'path': 'hi'}, path='/my/path')
        message = self.get_next_message('websocket.receive', require=True)
        self.assertEqual(message['text'], '{"path": "hi"}')
        self.assertEqual(message['path'], '/my_path')

    def test_ordering_in_content(self):
        client = WSClient(ordered=True)
        client.send('websocket.receive')
        self.assertEqual(self.get_next_message('websocket.receive')['order'], 0)
        client.order = 2
        client.send('websocket.receive')
        self.assertEqual(self.get_next_message('websocket.receive')['order'], 2)
        with self.assertRaises(ValueError):
            client.send('websocket.receive', {'order': 5})

    def test_ordering(self):

        client = WSClient(ordered=True)

        @enforce_ordering
        def consumer(message):
            message.reply_channel.send({'text': message['text']})

        with apply_routes(route('websocket.receive', consumer)):
            client.send_and_consume('websocket.receive', text='1')  # order = 0
            client.send_and_consume('websocket.receive', text='2')  # order = 1
            client.send_and_consume('websocket.receive', text='3')  # order = 2

            self.assertEqual(client.receive(), 1)
            self.assertEqual(client.receive(), 2)
            self.assertEqual(client.receive(), 3)

    def test_get_params(self):
        client = WSClient()
        client.send('websocket.connect', path='/my/path?test=1&token=2')
        message = self.get_next_message('websocket.connect', require=True)
        self.assertEqual(message['path'], '/my/path')
        # ASGI 1.0 says bytes; 1.x's test client sent a str here.
        self.assertEqual(message['query_string'], b'test=1&token=2')

    def test_channel_socket_exception(self):

        class MyChannelSocketException(ChannelSocketException):

            def run(self, message):
                message.reply_channel.send({'text': 'error'})

        def consumer(message):
            raise MyChannelSocketException

        client = WSClient()
        with apply_routes(route('websocket.receive', consumer)):
            client.send_and_consume('websocket.receive')

            self.assertEqual(client.receive(json=False), 'error')

    def test_websocket_close_exception(self):

        def consumer(message):
            raise WebsocketCloseException

        client = WSClient(reply_channel='daphne.response.1')

        with apply_routes(route('websocket.receive', consumer)):
            client.send_and_consume('websocket.receive')

        self.assertEqual(client.get_next_message(client.reply_channel).content, {'close': True})

    def test_websocket_close_exception_close_code(self):

        def consumer(message):
            raise WebsocketCloseException(3001)

        client = WSClient(reply_channel='daphne.response.1')

        with apply_routes(route('websocket.receive', consumer)):
            client.send_and_consume('websocket.receive')

        self.assertEqual(client.get_next_message(client.reply_channel).content, {'close': 3001})

    def test_websocket_close_exception_invalid_close_code(self):

        with self.assertRaises(ValueError):
            WebsocketCloseException(2000)

        with self.assertRaises(ValueError):
            WebsocketCloseException('code')


class Echo(JsonWebsocketConsumer):
    groups = ['echoes']

    def receive(self, content, **kwargs):
        self.send(content)


class ClientTests(ChannelTestCase):

    def test_consume_returns_what_the_consumer_returned(self):
        def consumer(message):
            return 'result'

        client = Client()
        with apply_routes([route('task', consumer)]):
            self.assertEqual(client.send_and_consume('task', {'n': 1}), 'result')
            client.send('task', {'n': 2})
            self.assertEqual(client.consume('task'), 'result')
            self.assertIsNone(client.consume('task', fail_on_none=False))
            with self.assertRaises(AssertionError):
                client.consume('task')

    def test_class_consumer_instance(self):
        client = WSClient()
        with apply_routes([route_class(Echo, path=r'^/echo/$')]):
            consumer = client.send_and_consume('websocket.connect', path='/echo/')
            self.assertIsInstance(consumer, Echo)
            self.assertEqual(consumer.message.reply_channel.name, client.reply_channel)
            consumer = client.send_and_consume('websocket.receive', text={'a': 1}, path='/echo/')
            self.assertIsInstance(consumer, Echo)
            self.assertEqual(client.receive(), {'a': 1})

    def test_groups_and_get_next_message(self):
        client = Client()
        client.join_group('news')
        Group('news').send({'text': 'hello'})
        self.assertEqual(client.receive(), {'text': 'hello'})
        self.assertIsNone(client.receive())
        client.send('other', {'x': 1})
        self.assertEqual(client.get_next_message('other').content['x'], 1)
        self.assertEqual(client.get_next_message('other'), None)

    def test_get_consumer_by_channel(self):
        def consumer(message):
            pass

        with apply_routes([route('websocket.receive', consumer)]):
            self.assertIs(Client().get_consumer_by_channel('websocket.receive'), consumer)
            self.assertIsNone(Client().get_consumer_by_channel('websocket.connect'))

    def test_http_client_is_a_ws_client(self):
        client = HttpClient()
        self.assertIsInstance(client, WSClient)
        with apply_routes([route_class(Echo)]):
            client.send_and_consume('websocket.connect', path='/')
            client.send_and_consume('websocket.receive', text={'b': 2}, path='/')
            self.assertEqual(client.receive(), {'b': 2})


@apply_routes([route('websocket.receive', lambda message: message.reply_channel.send({'text': 'routed'}))])
class ApplyRoutesOnClassTests(ChannelTestCase):

    def test_routes_applied(self):
        client = WSClient()
        client.send_and_consume('websocket.receive', path='/')
        self.assertEqual(client.receive(json=False), 'routed')
