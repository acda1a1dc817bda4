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
import gc
import importlib
import logging
import os
import platform
import sys
import traceback
from typing import Any

import django
from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, SystemCheckError

from .. import __version__
from ..asgi import ChannelLayerWrapper
from ..checks import check_embedded_workers, raise_if_errors, register_checks
from ..delay.embedded import embedded_delay
from ..layers.base import BaseChannelLayer
from ..layers.memory import InMemoryChannelLayer
from ..routing import NoRouting, get_router
from .config import ServerConfig
from .options import (
    add_server_options,
    add_worker_option,
    deprecated_alias,
    server_overrides,
    with_default,
)
from .server import Server

__all__ = ["main", "build_parser", "load_layer"]

log = logging.getLogger("chanlite.server")

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="chanlite",
        description="chanlite's HTTP/WebSocket interface server (ASGI 1.0 messages over a "
        "channel layer; Django views through WSGI).",
    )
    parser.add_argument("--version", action="version", version=_version_line(__version__))
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser(
        "serve",
        help="serve HTTP and WebSocket for a channel layer",
        description="Serve HTTP and WebSocket. DJANGO_SETTINGS_MODULE must be set (or set "
        "by the module you name, as Channels' asgi.py does).",
    )
    serve.add_argument("application", metavar="module:attribute",
                       help="a channel layer, e.g. myproject.asgi:channel_layer")
    serve.add_argument("--bind", "-b", default="127.0.0.1",
                       help=with_default("address to listen on", "127.0.0.1"))
    serve.add_argument("--port", "-p", type=int, default=8000,
                       help=with_default("TCP port", 8000))
    serve.add_argument("--unix-socket", "-u",
                       help=with_default("listen on this Unix socket instead of TCP", "TCP"))
    add_worker_option(serve, None, "4 for the in-memory layer, 0 for cross-process layers "
                      "(consumers run in `manage.py runworker` processes)")
    serve.add_argument("--nodelay", action="store_true",
                       help=with_default("do not run the delay service (asgi.delay) in-process; "
                                         "it runs only for the in-memory layer with embedded "
                                         "workers", "off"))
    serve.add_argument("--access-log", action="store_true",
                       help=with_default("log one line per request and WebSocket open/close "
                                         "to stderr (logger chanlite.server.access)", "off"))
    serve.add_argument("--log-level", default="INFO", help=with_default("server log level", "INFO"))
    serve.add_argument("--root-path", default=None,
                       help=with_default("SCRIPT_NAME / root_path prefix", "none"))
    serve.add_argument("--no-origin-check", action="store_true",
                       help=with_default("accept WebSocket handshakes from any Origin", "off"))
    serve.add_argument("--allowed-origin", action="append", default=None, metavar="HOST",
                       help=with_default("allowed WebSocket Origin: a host pattern or a full "
                                         "origin such as https://app.example.com:8443 "
                                         "(repeatable)", "ALLOWED_HOSTS"))
    serve.add_argument(
        "--proxy-headers", action="store_true", default=None,
        help=with_default("trust X-Forwarded-For/-Port/-Proto and Daphne-Root-Path/X-Script-Name "
                          "from --trusted-proxy peers (use behind a reverse proxy only)", "off"))
    serve.add_argument("--trusted-proxy", action="append", default=None, metavar="ADDR",
                       help=with_default("peer address or network allowed to send proxy "
                                         "headers (repeatable; '*' = any)", "127.0.0.1 and ::1"))
    serve.add_argument("--no-origin-scheme-port-check", action="store_true",
                       help=with_default("origin check compares the host only (not scheme and "
                                         "port)", "off"))
    serve.add_argument("--skip-checks", action="store_true",
                       help=with_default("do not run Django's system checks at start", "off"))
    add_server_options(serve)
    deprecated_alias(serve, "--threads", "--http-threads", dest="threads")
    return parser


def _version_line(version: str) -> str:
    return (f"chanlite {version} (Django {django.get_version()}, "
            f"Python {platform.python_version()})")


_ASGI_SNIPPET = """\
    import os
    from chanlite.asgi import get_channel_layer

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "{settings}")
    channel_layer = get_channel_layer()"""


def load_layer(spec: str) -> Any:
    """Import ``module:attribute`` (from the current directory too) -> a layer."""
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
        settings_module = os.environ.get("DJANGO_SETTINGS_MODULE") or (
            module_name.rpartition(".")[0] or "myproject") + ".settings"
        raise SystemExit(
            f"chanlite serve: {module_name!r} has no attribute {attribute!r}. Add these lines "
            f"to {module_name.replace('.', '/')}.py (startproject's `application` is Django's "
            f"ASGI app; chanlite serves a channel layer):\n\n"
            + _ASGI_SNIPPET.format(settings=settings_module)
            + f"\n\nthen run `chanlite serve {module_name}:channel_layer`."
        ) from None

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

    django.setup()

    workers = args.workers
    if workers is None:
        workers = 4 if isinstance(layer, InMemoryChannelLayer) else 0
    if workers < 0:
        raise SystemExit(f"chanlite serve: --workers must be 0 or more, not {workers}")
    router = _load_router_or_exit(layer)
    if not args.skip_checks:
        _run_checks(layer.alias or "default", workers)
    try:
        config = ServerConfig.from_settings(
            host=args.bind, port=args.port, unix_socket=args.unix_socket,
            root_path=args.root_path, allowed_origins=args.allowed_origin,
            check_origin=False if args.no_origin_check else None,
            proxy_headers=args.proxy_headers, trusted_proxies=args.trusted_proxy,
            check_origin_scheme_port=False if args.no_origin_scheme_port_check else None,
            access_log=args.access_log or None, **server_overrides(vars(args)),
        )
    except ValueError as exc:
        raise SystemExit(f"chanlite serve: {exc}") from exc
    if router is None or not router.channels:
        workers = 0  # a plain Django project: views only (said once, in the banner)
    try:
        server = Server(layer, config, router=router, workers=workers)  # reads access_log
    except ValueError as exc:  # limits that do not fit the layer
        raise SystemExit(f"chanlite serve: {exc}") from exc
    try:
        server.bind()
    except OSError as exc:
        where = config.unix_socket or f"{config.host}:{config.port}"
        raise SystemExit(f"chanlite serve: cannot listen on {where}: {exc.strerror or exc}") \
            from exc
    server.install_signal_handlers()
    log.info("%s", server.banner(args.application))
    _tune_collector()

    with embedded_delay(layer, workers=workers, enabled=not args.nodelay):
        server.serve_forever()
    if server.failure:
        raise SystemExit(f"chanlite serve: stopped because {server.failure}")
    return 0


def _tune_collector() -> None:
    """Make the cyclic garbage collector's cost independent of how many
    connections are open (only this command owns the process, so only it
    decides; an embedding application keeps its own settings).

    Every open WebSocket is ~40 long-lived objects. With CPython's default
    thresholds (700, 10, 10) the collector ran 9 full collections while
    19,000 WebSockets opened, each walking every object in the process:
    2.0-3.1 s of GC, 100-160 µs per handshake, a third of the server's
    CPU. Two changes, both leaving the collector on for everything:

    - ``gc.freeze()``: what is alive now (Django, the project, the
      routing) lives as long as the process; full collections stop
      walking it.
    - young collections every 10,000 allocations instead of 700 (unless
      set higher already): fewer objects survive into older generations
      while a burst of connections opens, so the full collections they
      trigger stop (0 instead of 9 for 19,000 WebSockets; GC time
      0.95-1.15 s). Cyclic garbage is still found, a few thousand
      allocations later.
    """
    gc.freeze()
    young, middle, old = gc.get_threshold()
    gc.set_threshold(max(young, 10_000), middle, old)


def _load_router_or_exit(layer: Any) -> Any:
    """The layer's router; a routing that cannot be imported ends the process
    here with its traceback (never "routes no channel" and 403s later)."""
    try:
        return get_router(layer.alias or "default")
    except NoRouting:
        return None
    except ImproperlyConfigured as exc:
        traceback.print_exc()
        raise SystemExit(f"chanlite serve: {exc}") from None


def _run_checks(alias: str, workers: int) -> None:
    """Django's system checks plus chanlite's (also when 'chanlite' is missing
    from INSTALLED_APPS, which is itself one of the errors)."""
    register_checks()
    try:
        BaseCommand().check(display_num_errors=False)
        raise_if_errors(check_embedded_workers(alias, workers, "chanlite serve --workers 0"))
    except SystemCheckError as exc:
        raise SystemExit(f"chanlite serve: {exc}") from None


if __name__ == "__main__":
    sys.exit(main())
