"""``chanlite serve module:attribute`` - the production entry point.

Also ``python -m chanlite.server serve ...``. The attribute is a channel
layer, as in a Channels 1.x project's ``asgi.py``::

    # myproject/asgi.py
    import os
    from chanlite.asgi import get_channel_layer
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "myproject.settings")
    channel_layer = get_channel_layer()

    $ chanlite serve myproject.asgi:channel_layer --port 8000 --workers 0

SIGTERM or Ctrl-C stops gracefully (stop accepting, close WebSockets with
1001, finish in-flight HTTP) and the process exits 0.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from typing import Any

__all__ = ["main", "build_parser", "load_layer"]

log = logging.getLogger("chanlite.server")

# flag -> ServerConfig field, for the limits and timeouts
_LIMITS = {
    "threads": (int, "WSGI pool threads running Django views (default 8)"),
    "max_header_size": (int, "bytes of request line + headers before 431 (default 65536)"),
    "max_request_body": (int, "request body bytes before 413 (default 10 MiB)"),
    "body_chunk_size": (int, "body bytes per http.request(.body) message (default 256 KiB)"),
    "header_timeout": (float, "seconds for a request's headers to arrive, else 408 (default 10)"),
    "keepalive_timeout": (float, "seconds an idle keep-alive connection stays open (default 30)"),
    "http_response_timeout": (
        float, "seconds to wait for a consumer's http.response (long-poll), else 504 (default 60)"),
    "websocket_connect_timeout": (
        float, "seconds for a consumer to accept a WebSocket, else 403 (default 20)"),
    "websocket_max_message_size": (
        int, "WebSocket message bytes before close 1009 (default: the layer's max_message_size "
        "minus the message envelope, ~1 MiB)"),
    "websocket_ping_interval": (float, "seconds between pings on a WebSocket, 0 = off (default 20)"),
    "websocket_ping_timeout": (float, "seconds to wait for a pong, else close 1011 (default 20)"),
    "websocket_close_timeout": (
        float, "seconds to wait for the client's close frame after ours, then drop (default 5)"),
    "max_outbound_buffer": (int, "unsent bytes per connection before a slow client is dropped"),
    "shutdown_timeout": (float, "seconds to finish in-flight HTTP on SIGTERM (default 30)"),
    "max_connections": (
        int, "open connections; beyond it stop accepting until one closes (default 10000, or "
        "the open-file limit minus a margin)"),
    "max_queued_requests": (
        int, "WSGI requests waiting for a thread before 503 + Retry-After (default 1000)"),
    "body_spool_threshold": (
        int, "request body bytes above which a view's body goes to a temp file (default 512 KiB)"),
    "max_body_memory": (
        int, "request body bytes held in memory by all connections (default 64 MiB)"),
    "body_idle_timeout": (float, "seconds without a request body byte, else 408 (default 30)"),
    "body_timeout": (float, "seconds for a whole request body, else 408 (default 300)"),
    "backpressure_timeout": (
        float, "seconds a connection waits (not read) for room on a full channel before "
        "1013 / 503 (default 10)"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="chanlite",
        description="chanlite's HTTP/WebSocket interface server (ASGI 1.0 messages over a "
        "channel layer; Django views through WSGI).",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser(
        "serve",
        help="serve HTTP and WebSocket for a channel layer",
        description="Serve HTTP and WebSocket. DJANGO_SETTINGS_MODULE must be set (or set "
        "by the module you name, as Channels' asgi.py does).",
    )
    serve.add_argument("application", metavar="module:attribute",
                       help="a channel layer, e.g. myproject.asgi:channel_layer")
    serve.add_argument("--bind", "-b", default="127.0.0.1", help="address (default 127.0.0.1)")
    serve.add_argument("--port", "-p", type=int, default=8000, help="TCP port (default 8000)")
    serve.add_argument("--unix-socket", "-u", help="listen on this Unix socket instead of TCP")
    serve.add_argument(
        "--workers", "-w", type=int, default=None,
        help="embedded worker threads running consumers; 0 = none (use runworker processes). "
        "Default: 4 for the in-memory layer, 0 for cross-process layers")
    serve.add_argument("--nodelay", action="store_true",
                       help="do not run the delay service (asgi.delay) in-process; it runs "
                       "only for the in-memory layer with embedded workers")
    serve.add_argument("--access-log", action="store_true",
                       help="log one line per request to stderr (logger chanlite.server.access)")
    serve.add_argument("--log-level", default="INFO", help="server log level (default INFO)")
    serve.add_argument("--root-path", default=None, help="SCRIPT_NAME / root_path prefix")
    serve.add_argument("--no-origin-check", action="store_true",
                       help="accept WebSocket handshakes from any Origin")
    serve.add_argument("--allowed-origin", action="append", default=None, metavar="HOST",
                       help="allowed WebSocket Origin host (repeatable; default ALLOWED_HOSTS)")
    serve.add_argument(
        "--proxy-headers", action="store_true", default=None,
        help="trust X-Forwarded-For/-Port/-Proto and Daphne-Root-Path/X-Script-Name from "
        "--trusted-proxy peers (use behind a reverse proxy only)")
    serve.add_argument("--trusted-proxy", action="append", default=None, metavar="ADDR",
                       help="peer address or network allowed to send proxy headers "
                       "(repeatable; '*' = any; default 127.0.0.1 and ::1)")
    serve.add_argument("--no-origin-scheme-port-check", action="store_true",
                       help="origin check compares the host only (not scheme and port)")
    for name, (kind, text) in _LIMITS.items():
        serve.add_argument("--" + name.replace("_", "-"), type=kind, default=None, help=text)
    return parser


def load_layer(spec: str) -> Any:
    """Import ``module:attribute`` (from the current directory too) -> a layer."""
    from ..layers.base import BaseChannelLayer

    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise SystemExit(f"chanlite serve: expected module:attribute, got {spec!r} "
                         "(e.g. myproject.asgi:channel_layer)")
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise SystemExit(f"chanlite serve: cannot import {module_name!r}: {exc}") from exc
    try:
        layer = getattr(module, attribute)
    except AttributeError:
        raise SystemExit(f"chanlite serve: {module_name!r} has no attribute {attribute!r}") from None
    from ..asgi import ChannelLayerWrapper

    if isinstance(layer, ChannelLayerWrapper):  # 1.x style: channel_layers["default"]
        layer = layer.channel_layer
    if not isinstance(layer, BaseChannelLayer):
        raise SystemExit(
            f"chanlite serve: {spec} is a {type(layer).__name__}, not a channel layer; point "
            "it at e.g. `channel_layer = chanlite.asgi.get_channel_layer()`"
        )
    return layer


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and ":" in argv[0] and not argv[0].startswith("-"):
        argv.insert(0, "serve")  # `python -m chanlite.server app:layer` also works
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.access_log:
        logging.getLogger("chanlite.server.access").setLevel(logging.INFO)

    layer = load_layer(args.application)
    if not os.environ.get("DJANGO_SETTINGS_MODULE"):
        raise SystemExit("chanlite serve: set DJANGO_SETTINGS_MODULE (e.g. myproject.settings)")
    import django

    django.setup()
    from ..layers.memory import InMemoryChannelLayer
    from .config import ServerConfig
    from .server import Server

    overrides = {name: getattr(args, name) for name in _LIMITS}
    try:
        config = ServerConfig.from_settings(
            host=args.bind, port=args.port, unix_socket=args.unix_socket,
            root_path=args.root_path, allowed_origins=args.allowed_origin,
            check_origin=False if args.no_origin_check else None,
            proxy_headers=args.proxy_headers, trusted_proxies=args.trusted_proxy,
            check_origin_scheme_port=False if args.no_origin_scheme_port_check else None,
            access_log=args.access_log or None, **overrides,
        )
    except ValueError as exc:
        raise SystemExit(f"chanlite serve: {exc}") from exc
    workers = args.workers
    if workers is None:
        workers = 4 if isinstance(layer, InMemoryChannelLayer) else 0
    try:
        server = Server(layer, config, workers=workers,
                        access_logger="chanlite.server.access" if config.access_log else None)
    except ValueError as exc:  # limits that do not fit the layer
        raise SystemExit(f"chanlite serve: {exc}") from exc
    try:
        server.bind()
    except OSError as exc:
        raise SystemExit(f"chanlite serve: cannot listen on "
                         f"{config.unix_socket or (config.host, config.port)}: {exc}") from exc
    server.install_signal_handlers()
    log.info("serving %s with %d embedded worker thread(s)", args.application, workers)
    from ..delay.embedded import embedded_delay

    with embedded_delay(layer, workers=workers, enabled=not args.nodelay):
        server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
