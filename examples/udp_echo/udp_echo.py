"""A UDP interface server in a few dozen lines: chanlite beyond HTTP and WebSocket.

An interface server only turns network events into channel messages and
reply messages back into network events; consumers never see a socket. Here:

    datagram from (host, port) -> "udp.receive" {"reply_channel", "data", "client"}
    consumer: message.reply_channel.send({"data": ...}) -> datagram to (host, port)

The reply channel is process-specific (``udp.response.<random>!<host>_<port>``),
so one thread receiving on the prefix gets every reply for this process,
and the client address is read back from the channel name - no table to
grow. Consumers run on a worker pool (embedded here; with the IPC or Redis
layer they could run in ``runworker`` processes instead)::

    python examples/udp_echo/udp_echo.py --port 9999
    echo hi | nc -u -w1 127.0.0.1 9999
"""

from __future__ import annotations

import argparse
import secrets
import socket
import threading

from chanlite.layers.base import BaseChannelLayer
from chanlite.message import Message
from chanlite.routing import Router, route
from chanlite.worker import WorkerPool


def echo(message: Message) -> None:
    """The consumer: send the datagram back to whoever sent it."""
    message.reply_channel.send({"data": message["data"]})


channel_routing = [route("udp.receive", echo)]


class UDPInterfaceServer:
    """Datagrams in -> ``udp.receive``; replies on our reply channels -> datagrams out."""

    def __init__(self, layer: BaseChannelLayer, host: str = "127.0.0.1", port: int = 0) -> None:
        self.layer = layer
        self.sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET,
                                  socket.SOCK_DGRAM)
        self.sock.bind((host, port))
        self.address = self.sock.getsockname()[:2]
        self.prefix = f"udp.response.{secrets.token_hex(6)}!"
        self._stopping = threading.Event()
        self._threads = [threading.Thread(target=f, daemon=True, name=f"udp-{f.__name__}")
                         for f in (self._read, self._reply)]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def _read(self) -> None:
        while not self._stopping.is_set():
            data, (host, port) = self.sock.recvfrom(65535)[:2]
            if self._stopping.is_set():
                break
            reply = f"{self.prefix}{host.replace(':', '-')}_{port}"  # names allow no ':'
            try:
                self.layer.send("udp.receive", {"reply_channel": reply, "data": data,
                                                "client": [host, port]})
            except self.layer.ChannelFull:
                pass  # UDP may drop: so do we when the consumers fall behind

    def _reply(self) -> None:
        while not self._stopping.is_set():
            channel, message = self.layer.receive([self.prefix], block=True, timeout=1.0)
            if channel is None or "data" not in message:
                continue
            host, _, port = channel[len(self.prefix):].rpartition("_")
            self.sock.sendto(message["data"], (host.replace("-", ":"), int(port)))

    def stop(self, timeout: float = 5.0) -> bool:
        """Stop both threads (each is woken at once); True if they ended in time."""
        self._stopping.set()
        self.layer.send(self.prefix + "stop", {"stop": True})  # wakes the reply thread
        self.sock.sendto(b"", self.address)  # wakes the blocked recvfrom
        for thread in self._threads:
            thread.join(timeout)
        self.sock.close()
        return not any(t.is_alive() for t in self._threads)


def main() -> None:
    parser = argparse.ArgumentParser(description="UDP echo over a chanlite channel layer")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9999)
    args = parser.parse_args()
    from django.conf import settings

    settings.configure()  # no Django project needed: routing and workers only
    from chanlite.layers.memory import InMemoryChannelLayer

    layer = InMemoryChannelLayer()
    workers = WorkerPool(layer, Router(channel_routing), threads=2)
    server = UDPInterfaceServer(layer, args.host, args.port)
    workers.start()
    server.start()
    print(f"UDP echo on {server.address[0]}:{server.address[1]} (Ctrl-C stops)")
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        server.stop()
        workers.stop()


if __name__ == "__main__":
    main()
