from __future__ import unicode_literals

import threading

from django.test import override_settings

from chanlite import DEFAULT_CHANNEL_LAYER, Channel, route
from chanlite.asgi import ChannelLayerWrapper, InvalidChannelLayerError, channel_layers
from chanlite.exceptions import ChannelSocketException, ConsumeLater
from chanlite.layers.memory import InMemoryChannelLayer
from chanlite.test import ChannelTestCase, apply_routes
from chanlite.worker import Worker

try:
    from unittest import mock
except ImportError:
    import mock


class PatchedWorker(Worker):
    """Worker with specific numbers of loops"""
    def get_termed(self):
        if not self.__iters:
            return True
        self.__iters -= 1
        return False

    def set_termed(self, value):
        self.__iters = value

    termed = property(get_termed, set_termed)


class WorkerTests(ChannelTestCase):
    """
    Tests that the worker's dispatching code works correctly.
    """

    def test_channel_filters(self):
        """
        Tests that the include/exclude logic works
        """
        # Include
        worker = Worker(None, only_channels=["yes.*", "maybe.*"])
        self.assertEqual(
            worker.apply_channel_filters(["yes.1", "no.1"]),
            ["yes.1"],
        )
        self.assertEqual(
            worker.apply_channel_filters(["yes.1", "no.1", "maybe.2", "yes"]),
            ["yes.1", "maybe.2"],
        )
        # Exclude
        worker = Worker(None, exclude_channels=["no.*", "maybe.*"])
        self.assertEqual(
            worker.apply_channel_filters(["yes.1", "no.1", "maybe.2", "yes"]),
            ["yes.1", "yes"],
        )
        # Both
        worker = Worker(None, exclude_channels=["no.*"], only_channels=["yes.*"])
        self.assertEqual(
            worker.apply_channel_filters(["yes.1", "no.1", "maybe.2", "yes"]),
            ["yes.1"],
        )

    def test_run_with_consume_later_error(self):

        # consumer with ConsumeLater error at first call
        def _consumer(message, **kwargs):
            _consumer._call_count = getattr(_consumer, '_call_count', 0) + 1
            if _consumer._call_count == 1:
                raise ConsumeLater()

        Channel('test').send({'test': 'test'}, immediately=True)
        channel_layer = channel_layers[DEFAULT_CHANNEL_LAYER]
        channel_layer.router.add_route(route('test', _consumer))
        old_send = channel_layer.send
        channel_layer.send = mock.Mock(side_effect=old_send)  # proxy 'send' for counting

        worker = PatchedWorker(channel_layer)
        worker.termed = 2  # first loop with error, second with sending

        worker.run()
        self.assertEqual(getattr(_consumer, '_call_count', None), 2)
        self.assertEqual(channel_layer.send.call_count, 1)

    def test_normal_run(self):
        consumer = mock.Mock()
        Channel('test').send({'test': 'test'}, immediately=True)
        channel_layer = channel_layers[DEFAULT_CHANNEL_LAYER]
        channel_layer.router.add_route(route('test', consumer))
        old_send = channel_layer.send
        channel_layer.send = mock.Mock(side_effect=old_send)  # proxy 'send' for counting

        worker = PatchedWorker(channel_layer)
        worker.termed = 1

        worker.run()
        self.assertEqual(consumer.call_count, 1)
        self.assertEqual(channel_layer.send.call_count, 0)

    def test_added_routes_stay_in_their_test(self):
        """
        The previous tests added a 'test' route; each test has its own copy.
        """
        self.assertNotIn("test", channel_layers[DEFAULT_CHANNEL_LAYER].router.channels)

    def test_callback(self):
        seen = []
        consumer = mock.Mock()

        def callback(channel, message):
            seen.append((channel, message.content, consumer.call_count))

        Channel('test').send({'n': 1}, immediately=True)
        channel_layer = channel_layers[DEFAULT_CHANNEL_LAYER]
        channel_layer.router.add_route(route('test', consumer))
        worker = PatchedWorker(channel_layer, callback=callback, signal_handlers=False)
        worker.termed = 1
        worker.run()
        # Called with the channel and the Message, before the consumer ran.
        self.assertEqual(seen, [('test', {'n': 1}, 0)])
        self.assertEqual(consumer.call_count, 1)

    def test_channel_socket_exception(self):

        class MyChannelSocketException(ChannelSocketException):

            def run(self, message):
                message.reply_channel.send({'text': 'error'})

        def consumer(message):
            raise MyChannelSocketException

        Channel('test').send({'reply_channel': 'test.reply!abc'}, immediately=True)
        channel_layer = channel_layers[DEFAULT_CHANNEL_LAYER]
        channel_layer.router.add_route(route('test', consumer))
        worker = PatchedWorker(channel_layer)
        worker.termed = 1
        with self.assertNoLogs('chanlite.worker', level='ERROR'):
            worker.run()
        self.assertEqual(self.get_next_message('test.reply!abc', require=True).content, {'text': 'error'})

    def test_message_retries(self):
        attempts = []

        def consumer(message):
            attempts.append(getattr(message, '__doomed__', False))
            raise ConsumeLater()

        Channel('test').send({'a': 1}, immediately=True)
        channel_layer = channel_layers[DEFAULT_CHANNEL_LAYER]
        channel_layer.router.add_route(route('test', consumer))
        worker = PatchedWorker(channel_layer, message_retries=2)
        worker.termed = 3
        with self.assertLogs('chanlite.worker', level='WARNING'):
            worker.run()
        # Tried once plus two retries; the last try was marked doomed.
        self.assertEqual(attempts, [False, False, True])
        self.assertIsNone(self.get_next_message('test'))

    def test_worker_on_its_own_wrapped_layer(self):
        """
        A Worker on a standalone ChannelLayerWrapper uses that wrapper's routing.
        """
        consumer = mock.Mock()
        channel_layer = ChannelLayerWrapper(
            channel_layer=InMemoryChannelLayer(),
            alias='test',
            routing=[route('test', consumer)],
        )
        Channel('test', channel_layer=channel_layer).send({'test': 'test'}, immediately=True)
        worker = Worker(channel_layer, signal_handlers=False)
        thread = threading.Thread(target=worker.run)
        thread.start()
        try:
            for _ in range(200):
                if consumer.call_count:
                    break
                threading.Event().wait(0.01)
        finally:
            worker.termed = True
            thread.join(5)
        self.assertFalse(thread.is_alive())
        self.assertEqual(consumer.call_count, 1)


class ChannelLayersTests(ChannelTestCase):

    def test_wrapper_attributes(self):
        wrapper = channel_layers[DEFAULT_CHANNEL_LAYER]
        self.assertEqual(wrapper.alias, DEFAULT_CHANNEL_LAYER)
        self.assertIs(wrapper.channel_layer, self.channel_layer)
        # The alias's routing, live: apply_routes shows through.
        with apply_routes([route("routed", mock.Mock())]):
            self.assertEqual(wrapper.router.channels, {"routed"})
            self.assertEqual(len(wrapper.routing), 1)
        # The layer API goes through to the layer.
        wrapper.send("wrapped", {"a": 1})
        self.assertEqual(wrapper.receive(["wrapped"]), ("wrapped", {"a": 1}))
        wrapper.group_add("g", "wrapped")
        self.assertEqual(set(wrapper.group_channels("g")), {"wrapped"})
        wrapper.flush()
        self.assertEqual(list(wrapper.group_channels("g")), [])
        self.assertTrue(issubclass(wrapper.ChannelFull, Exception))

    def test_wrapper_where_a_layer_is_expected(self):
        wrapper = channel_layers[DEFAULT_CHANNEL_LAYER]
        Channel("direct", channel_layer=wrapper).send({"x": 1})
        self.assertEqual(self.get_next_message("direct").content, {"x": 1})

    def test_set_and_restore(self):
        channel_layers[DEFAULT_CHANNEL_LAYER].router.add_route(route("mine", mock.Mock()))
        other = ChannelLayerWrapper(InMemoryChannelLayer(), DEFAULT_CHANNEL_LAYER, [])
        old = channel_layers.set(DEFAULT_CHANNEL_LAYER, other)
        try:
            self.assertIs(channel_layers[DEFAULT_CHANNEL_LAYER].channel_layer, other.channel_layer)
            self.assertEqual(channel_layers[DEFAULT_CHANNEL_LAYER].router.channels, set())
        finally:
            channel_layers.set(DEFAULT_CHANNEL_LAYER, old)
        self.assertIs(channel_layers[DEFAULT_CHANNEL_LAYER].channel_layer, self.channel_layer)
        self.assertEqual(channel_layers[DEFAULT_CHANNEL_LAYER].router.channels, {"mine"})

    def test_invalid_alias(self):
        with self.assertRaises(InvalidChannelLayerError):
            channel_layers["nope"]
        # 1.x's InvalidChannelLayerError was a ValueError.
        with self.assertRaises(ValueError):
            channel_layers["nope"]

    @override_settings(CHANNEL_LAYERS={"broken": {"BACKEND": "no.such.Layer", "ROUTING": []}})
    def test_invalid_backend(self):
        with self.assertRaises(InvalidChannelLayerError):
            channel_layers["broken"]


class SignalTests(ChannelTestCase):

    def test_1x_signal_receivers(self):
        """
        Receivers written for 1.x's signal arguments still work.
        """
        from chanlite.signals import consumer_finished, consumer_started, worker_ready

        calls = []

        def started(sender, environ, **kwargs):
            calls.append(('started', environ))

        def finished(sender, **kwargs):
            calls.append(('finished',))

        def ready(sender, **kwargs):
            calls.append(('ready', isinstance(sender, Worker)))

        consumer_started.connect(started)
        consumer_finished.connect(finished)
        worker_ready.connect(ready)
        try:
            Channel('test').send({'n': 1}, immediately=True)
            channel_layer = channel_layers[DEFAULT_CHANNEL_LAYER]
            channel_layer.router.add_route(route('test', mock.Mock()))
            worker = PatchedWorker(channel_layer, signal_handlers=False)
            worker.termed = 1
            worker.run()
        finally:
            consumer_started.disconnect(started)
            consumer_finished.disconnect(finished)
            worker_ready.disconnect(ready)
        self.assertEqual(calls, [('ready', True), ('started', {}), ('finished',)])
