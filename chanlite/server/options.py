"""Command-line options shared by ``runserver``, ``runworker`` and ``chanlite serve``.

One declaration per option, so the same name means the same thing in every
command and every ``--help`` shows the default:

- :data:`SERVER_OPTIONS`: interface-server limits and timeouts, one row per
  :class:`~chanlite.server.config.ServerConfig` field (the default shown in
  ``--help`` is read from the dataclass, so it cannot drift). ``runserver``
  and ``chanlite serve`` both add every row; add a server option by adding a
  ``ServerConfig`` field and one row here.
- :func:`add_worker_option`: ``--workers N``, consumer threads, everywhere.
- :data:`DEPRECATED`: old spellings, still accepted with a warning on stderr.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from typing import Any

from .config import ServerConfig

__all__ = ["SERVER_OPTIONS", "add_server_options", "add_worker_option", "server_overrides",
           "show_defaults",
           "deprecated_alias", "with_default"]

#: flag (without ``--``) -> (ServerConfig field, type, help without the default)
SERVER_OPTIONS: dict[str, tuple[str, type, str]] = {
    "http-threads": ("threads", int, "threads running Django views (WSGI)"),
    "max-header-size": ("max_header_size", int, "bytes of request line + headers before 431"),
    "max-request-body": ("max_request_body", int, "request body bytes before 413"),
    "body-chunk-size": ("body_chunk_size", int, "body bytes per http.request(.body) message"),
    "header-timeout": (
        "header_timeout", float, "seconds for a request's headers to arrive, else 408"),
    "keepalive-timeout": (
        "keepalive_timeout", float, "seconds an idle keep-alive connection stays open"),
    "http-response-timeout": (
        "http_response_timeout", float,
        "seconds to wait for a consumer's http.response (long-poll), else 504"),
    "websocket-connect-timeout": (
        "websocket_connect_timeout", float,
        "seconds for a consumer to accept a WebSocket, else 403"),
    "websocket-max-message-size": (
        "websocket_max_message_size", int, "WebSocket message bytes before close 1009; "
        "None = the layer's max_message_size minus the message envelope (~1 MiB)"),
    "websocket-close-timeout": (
        "websocket_close_timeout", float,
        "seconds to wait for the client's close frame after ours, then drop"),
    "websocket-ping-interval": (
        "websocket_ping_interval", float, "seconds between pings on a WebSocket, 0 = off"),
    "websocket-ping-timeout": (
        "websocket_ping_timeout", float, "seconds to wait for a pong, else close 1011"),
    "max-outbound-buffer": (
        "max_outbound_buffer", int, "unsent bytes per connection before a slow client is dropped"),
    "shutdown-timeout": (
        "shutdown_timeout", float, "seconds to finish in-flight HTTP on SIGTERM"),
    "max-connections": (
        "max_connections", int, "open connections; beyond it stop accepting until one closes; "
        "None = 10000, or the open-file limit minus a margin if lower"),
    "max-queued-requests": (
        "max_queued_requests", int, "WSGI requests waiting for a thread before 503 + Retry-After"),
    "body-spool-threshold": (
        "body_spool_threshold", int, "request body bytes above which a view's body goes to a "
        "temp file"),
    "max-body-memory": (
        "max_body_memory", int, "request body bytes held in memory by all connections"),
    "body-idle-timeout": (
        "body_idle_timeout", float, "seconds without a request body byte, else 408"),
    "body-timeout": ("body_timeout", float, "seconds for a whole request body, else 408"),
    "backpressure-timeout": (
        "backpressure_timeout", float, "seconds a connection whose channel is full waits (not "
        "read) for room before 1013 / 503"),
}

_CONFIG_DEFAULTS = {f.name: f.default for f in dataclasses.fields(ServerConfig)}


def with_default(text: str, default: Any) -> str:
    """``text (default: X)`` - every option's help says what you get without it."""
    return f"{text} (default: {default})"


def add_server_options(parser: argparse.ArgumentParser) -> None:
    """Add every :data:`SERVER_OPTIONS` row (``dest`` = the ServerConfig field).

    Their argparse default is ``None`` (= not given), so
    ``settings.CHANLITE_SERVER`` applies unless the flag is on the command line.
    """
    group = parser.add_argument_group("server limits (override settings.CHANLITE_SERVER)")
    for flag, (field, kind, text) in SERVER_OPTIONS.items():
        group.add_argument("--" + flag, dest=field, type=kind, default=None,
                           metavar="SECONDS" if kind is float else "N",
                           help=with_default(text, _CONFIG_DEFAULTS[field]))


def server_overrides(options: dict[str, Any]) -> dict[str, Any]:
    """The ServerConfig overrides given on the command line (``None`` = unset)."""
    return {field: options.get(field) for field, _, _ in SERVER_OPTIONS.values()}


def add_worker_option(parser: argparse.ArgumentParser, default: Any, default_text: str) -> None:
    """``--workers N``: consumer threads (embedded in a server, or in runworker)."""
    parser.add_argument(
        "--workers", "-w", type=int, default=default, metavar="N",
        help=with_default("consumer threads running your consumers; 0 = none", default_text))


class _DeprecatedAlias(argparse.Action):
    """Store into the new option's ``dest``, telling the user the new name."""

    def __init__(self, *args: Any, replacement: str, **kwargs: Any) -> None:
        self.replacement = replacement
        super().__init__(*args, **kwargs)

    def __call__(self, parser: Any, namespace: Any, values: Any, option: Any = None) -> None:
        sys.stderr.write(f"{parser.prog}: {option} is deprecated; use {self.replacement} "
                         f"{values} (same meaning)\n")
        setattr(namespace, self.dest, values)


def deprecated_alias(parser: argparse.ArgumentParser, old: str, replacement: str, dest: str,
                     kind: type = int) -> None:
    """Accept ``old`` as a deprecated spelling of ``replacement`` (same ``dest``)."""
    parser.add_argument(old, dest=dest, type=kind, action=_DeprecatedAlias,
                        replacement=replacement, default=argparse.SUPPRESS,
                        help=argparse.SUPPRESS)  # works, warns, not advertised


def show_defaults(parser: argparse.ArgumentParser, replace: dict[str, str] | None = None) -> None:
    """Make every option's help say its default (flags: ``off``), and replace
    the help of options inherited from Django where ours behave differently."""
    replace = replace or {}
    for action in parser._actions:
        if not action.option_strings or action.help == argparse.SUPPRESS:
            continue
        if isinstance(action, (argparse._HelpAction, argparse._VersionAction)):
            continue
        for option in action.option_strings:
            if option in replace:
                action.help = replace[option]
        if action.default in (None, argparse.SUPPRESS) and not isinstance(
                action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
            continue  # Django's --settings/--pythonpath say what happens without them
        if action.help and "default" not in action.help:
            if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
                action.help = with_default(action.help.rstrip("."), "off")
            else:
                action.help = with_default(action.help.rstrip("."), action.default)
