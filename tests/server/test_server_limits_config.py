"""Every server limit added for issue 13 / 11 is a ServerConfig field with
validation, a `chanlite serve` flag and a runserver option."""

from __future__ import annotations

import pytest

from chanlite.management.commands.runserver import Command as Runserver
from chanlite.server.__main__ import build_parser
from chanlite.server.config import ServerConfig
from chanlite.server.options import server_overrides

NEW = {"max_connections": "5", "max_queued_requests": "6", "body_spool_threshold": "7000",
       "max_body_memory": "8000", "body_idle_timeout": "1.5", "body_timeout": "9"}


def test_serve_flags_reach_the_config():
    argv = ["serve", "x:y", "--proxy-headers", "--trusted-proxy", "10.0.0.0/8",
            "--no-origin-scheme-port-check"]
    for name, value in NEW.items():
        argv += ["--" + name.replace("_", "-"), value]
    args = build_parser().parse_args(argv)
    assert args.proxy_headers is True and args.trusted_proxy == ["10.0.0.0/8"]
    assert args.no_origin_scheme_port_check is True
    config = ServerConfig.from_settings(**{name: getattr(args, name) for name in NEW})
    assert config.max_connections == 5 and config.body_idle_timeout == 1.5
    assert config.connection_limit() == 5


def test_runserver_options_reach_the_config():
    argv = ["--proxy-headers"]
    for name, value in NEW.items():
        argv += ["--" + name.replace("_", "-"), value]
    options = vars(Runserver().create_parser("manage.py", "runserver").parse_args(argv))
    overrides = server_overrides(options)
    overrides["proxy_headers"] = options["proxy_headers"]  # a flag of runserver's own
    config = ServerConfig.from_settings(**overrides)
    assert config.proxy_headers is True and config.max_queued_requests == 6
    assert config.body_spool_threshold == 7000 and config.body_timeout == 9


def test_settings_reach_the_config(settings):
    settings.CHANLITE_SERVER = {"max_connections": 42, "proxy_headers": True}
    config = ServerConfig.from_settings()
    assert config.max_connections == 42 and config.proxy_headers is True


@pytest.mark.parametrize("field, value, words", [
    ("max_connections", 0, "max_connections must be an int >= 1"),
    ("max_queued_requests", "10", "max_queued_requests must be an int >= 1"),
    ("max_body_memory", 0, "max_body_memory must be a positive number of bytes"),
    ("body_timeout", -1, "body_timeout must be a number of seconds"),
    ("trusted_proxies", ["proxy.local"], "not an IP address or network"),
    ("proxy_headers", "yes", "proxy_headers must be True or False"),
])
def test_bad_values_say_what_to_change(field, value, words):
    with pytest.raises(ValueError, match=words):
        ServerConfig(**{field: value})
