"""What runserver and the layers print: what a Django user expects to read."""

from __future__ import annotations

import logging
import threading
import urllib.request

import websocket

from .project import free_port
from .routing_files import write_app


def test_runserver_prints_one_banner_and_a_line_per_request_and_websocket(project):
    write_app(project)
    project.chanlite_first()
    port = free_port()
    proc = project.start("runserver", "--noreload", f"127.0.0.1:{port}")
    proc.wait_for("Quit the server with")
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/") as response:
        assert response.status == 200
    proc.wait_for(r'^\[\d\d/\w{3}/\d{4} [\d:]{8}\] "GET / HTTP/1\.1" 200 \d+$')

    ws = websocket.create_connection(f"ws://127.0.0.1:{port}/ws/", timeout=10)
    local_port = ws.sock.getsockname()[1]
    proc.wait_for(rf'^\[[^]]+\] "WSCONNECT /ws/" 127\.0\.0\.1:{local_port}$')
    ws.close()
    proc.wait_for(rf'^\[[^]]+\] "WSDISCONNECT /ws/" 127\.0\.0\.1:{local_port} 1000$')

    try:
        websocket.create_connection(f"ws://127.0.0.1:{port}/ws/", timeout=10,
                                    origin="http://evil.example")
    except websocket.WebSocketBadStatusException:
        pass
    proc.wait_for(r"origin http://evil\.example not allowed")
    proc.wait_for(r'"WSREJECT /ws/" 127\.0\.0\.1:\d+ 403$')

    out = proc.output
    assert out.count("Starting development server") == 1
    assert out.count("embedded worker") == 1, out
    assert "b'" not in out and "('127.0.0.1'" not in out, out


def test_a_redis_outage_is_logged_once_per_interval_not_per_thread(caplog):
    from chanlite.layers.redis import RedisChannelLayer

    layer = RedisChannelLayer(hosts=[f"redis://127.0.0.1:{free_port()}"],  # nothing listens
                              reconnect_backoff=0.01, reconnect_backoff_max=0.05)
    errors: list[BaseException] = []

    def receive() -> None:
        try:
            layer.receive(["firsthour.outage"], block=True, timeout=1.0)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    with caplog.at_level(logging.WARNING, logger="chanlite.layers.redis"):
        threads = [threading.Thread(target=receive) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
    layer.close()
    outage_lines = [r for r in caplog.records if "reconnecting in" in r.getMessage()]
    assert len(outage_lines) == 1, [r.getMessage() for r in outage_lines]
    assert not errors, errors
