"""``manage.py check`` (and every command that runs checks) names each
first-hour mistake and its fix, in a fresh startproject project."""

from __future__ import annotations

import pytest

from .routing_files import ROUTING_TYPO, write_app


def check_fails(project, *args: str, code: str) -> str:
    result = project.run(*(args or ("check",)))
    assert result.returncode != 0, f"expected {code}; got exit 0:\n{result.stdout}"
    assert f"(chanlite.{code})" in result.stdout, result.stdout
    return result.stdout


def test_the_documented_settings_pass_check(project):
    write_app(project)
    project.chanlite_first()
    result = project.run("check")
    assert result.returncode == 0, result.stdout
    assert "System check identified no issues" in result.stdout


def test_chanlite_after_staticfiles_says_to_move_it(project):
    write_app(project)
    project.add_settings(
        "INSTALLED_APPS += ['chat', 'chanlite']\n"
        "CHANNEL_LAYERS = {'default': {'BACKEND': 'chanlite.layers.memory.InMemoryChannelLayer',"
        " 'ROUTING': 'chat.routing.channel_routing'}}")
    out = check_fails(project, code="E001")
    assert ("move 'chanlite' above 'django.contrib.staticfiles' in INSTALLED_APPS, or "
            "runserver will be Django's own server without WebSockets") in out
    # ...and staticfiles' own runserver, which runs the checks, refuses to start
    check_fails(project, "runserver", "--noreload", "127.0.0.1:0", code="E001")


@pytest.mark.parametrize("old, new", [
    ("asgi_redis.RedisChannelLayer", "chanlite.layers.redis.RedisChannelLayer"),
    ("asgiref.inmemory.ChannelLayer", "chanlite.layers.memory.InMemoryChannelLayer"),
    ("asgi_ipc.IPCChannelLayer", "chanlite.layers.ipc.IPCChannelLayer"),
])
def test_a_channels_1x_backend_names_the_chanlite_one(project, old, new):
    write_app(project)
    project.chanlite_first(backend=old)
    out = check_fails(project, code="E002")
    assert f"CHANNEL_LAYERS['default']['BACKEND'] = '{old}' cannot be imported" in out
    assert new in out


def test_a_routing_that_raises_while_importing_shows_the_real_error(project):
    write_app(project, routing=ROUTING_TYPO)
    project.chanlite_first()
    out = check_fails(project, code="E003")
    assert "module 'chat.consumers' has no attribute 'who_connect'" in out
    assert "Did you mean: 'ws_connect'?" in out
    assert "does not define" not in out  # import_string's misleading wording


def test_a_routing_module_that_does_not_exist_says_so(project):
    write_app(project)
    project.chanlite_first(routing="chat.routes.channel_routing")
    out = check_fails(project, code="E003")
    assert "no module 'chat.routes'" in out


def test_a_routing_attribute_typo_suggests_the_name(project):
    write_app(project)
    project.chanlite_first(routing="chat.routing.channel_routes")
    out = check_fails(project, code="E003")
    assert "has no attribute 'channel_routes'. Did you mean 'channel_routing'?" in out


def test_a_bad_config_value_names_the_key(project):
    write_app(project)
    project.chanlite_first(config={"capacity": 0})
    out = check_fails(project, code="E005")
    assert "capacity must be a positive int, not 0" in out


def test_an_unknown_config_key_lists_the_allowed_ones(project):
    write_app(project)
    project.chanlite_first(config={"capasity": 10})
    out = check_fails(project, code="E005")
    assert "unknown key 'capasity'" in out
    assert "capacity, channel_capacity" in out


def test_migrate_and_runworker_run_the_checks_too(project):
    write_app(project, routing=ROUTING_TYPO)
    project.chanlite_first(backend="chanlite.layers.ipc.IPCChannelLayer",
                           config={"prefix": "firsthour-never-created"})
    check_fails(project, "migrate", code="E003")
    check_fails(project, "runworker", code="E003")


def test_runserver_noworker_on_the_memory_layer_is_an_error(project):
    write_app(project)
    project.chanlite_first()
    out = check_fails(project, "runserver", "--noworker", "--noreload", "127.0.0.1:0",
                      code="E004")
    assert "no consumer could ever answer" in out
