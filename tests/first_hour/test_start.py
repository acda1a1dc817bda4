"""``runserver`` and ``chanlite serve`` fail at start - with the traceback -
when the routing cannot be imported; under autoreload they show it and wait
for the fix, as Django does for a broken ``urls.py``."""

from __future__ import annotations

from .project import free_port
from .routing_files import ROUTING, ROUTING_TYPO, write_app

ASGI = '''\
import os

from chanlite.asgi import get_channel_layer

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mysite.settings")
channel_layer = get_channel_layer()
'''


def test_runserver_noreload_exits_with_the_routing_traceback(project):
    write_app(project, routing=ROUTING_TYPO)
    project.chanlite_first()
    proc = project.start("runserver", "--noreload", f"127.0.0.1:{free_port()}")
    assert proc.wait_exit(60) != 0, proc.output
    out = proc.output
    assert "Traceback (most recent call last)" in out
    assert 'chat/routing.py", line' in out  # the line to fix
    assert "module 'chat.consumers' has no attribute 'who_connect'" in out
    assert "Starting development server" not in out


def test_runserver_autoreload_shows_the_error_then_starts_once_fixed(project):
    write_app(project, routing=ROUTING_TYPO)
    project.chanlite_first()
    port = free_port()
    proc = project.start("runserver", f"127.0.0.1:{port}")
    proc.wait_for(r"AttributeError: module 'chat.consumers' has no attribute 'who_connect'")
    assert proc.proc.poll() is None, "the autoreloader should wait for a fix, not exit"
    # The fix. The reloader starts watching the broken file on its next tick
    # (once a second) and takes the mtime it then sees as the baseline, so an
    # edit in that same tick would go unnoticed: save again until it restarts,
    # as an editor user would.
    started = rf"Starting development server at http://127\.0\.0\.1:{port}/"
    for attempt in range(30):
        path = project.write("chat/routing.py", ROUTING + f"# saved {attempt}\n")
        try:
            proc.wait_for(started, timeout=2)
            break
        except AssertionError:
            assert proc.proc.poll() is None, proc.output
    else:
        raise AssertionError(f"runserver never restarted after {path} was fixed:\n{proc.output}")
    proc.wait_for(r"4 embedded worker thread\(s\)")


def test_chanlite_serve_exits_with_the_routing_traceback(project):
    write_app(project, routing=ROUTING_TYPO)
    project.chanlite_first()
    project.write("mysite/asgi.py", ASGI)
    proc = project.start("serve", "mysite.asgi:channel_layer", "--port", str(free_port()),
                         program="chanlite")
    assert proc.wait_exit(60) != 0, proc.output
    assert "Traceback (most recent call last)" in proc.output
    assert "has no attribute 'who_connect'" in proc.output
    assert "embedded worker" not in proc.output


def test_chanlite_serve_on_startprojects_asgi_says_what_to_add(project):
    write_app(project)
    project.chanlite_first()  # mysite/asgi.py is startproject's: no channel_layer
    proc = project.start("serve", "mysite.asgi:channel_layer", program="chanlite")
    assert proc.wait_exit(60) != 0
    out = proc.output
    assert "'mysite.asgi' has no attribute 'channel_layer'" in out
    assert "channel_layer = get_channel_layer()" in out
    assert "mysite/asgi.py" in out


def test_chanlite_serve_prints_one_consistent_line_about_workers(project):
    write_app(project)
    project.chanlite_first()
    project.write("mysite/asgi.py", ASGI)
    port = free_port()
    proc = project.start("serve", "mysite.asgi:channel_layer", "--port", str(port),
                         program="chanlite")
    proc.wait_for(rf"at http://127\.0\.0\.1:{port}/: layer 'default' \(InMemoryChannelLayer\), "
                  r"4 embedded worker thread\(s\), 8 HTTP thread\(s\)")
    proc.stop()
    assert proc.output.count("embedded worker") == 1, proc.output
    assert proc.output.count("listening") == 0, proc.output  # the banner is the one line
    assert "('127.0.0.1'" not in proc.output  # no tuple reprs


def test_chanlite_serve_workers_0_on_the_memory_layer_is_an_error(project):
    write_app(project)
    project.chanlite_first()
    project.write("mysite/asgi.py", ASGI)
    proc = project.start("serve", "mysite.asgi:channel_layer", "--workers", "0",
                         "--port", str(free_port()), program="chanlite")
    assert proc.wait_exit(60) != 0
    assert "(chanlite.E004)" in proc.output


def test_chanlite_serve_checks_installed_apps(project):
    write_app(project)
    project.add_settings(
        "INSTALLED_APPS += ['chat', 'chanlite']\n"
        "CHANNEL_LAYERS = {'default': {'BACKEND': 'chanlite.layers.memory.InMemoryChannelLayer',"
        " 'ROUTING': 'chat.routing.channel_routing'}}")
    project.write("mysite/asgi.py", ASGI)
    proc = project.start("serve", "mysite.asgi:channel_layer", "--port", str(free_port()),
                         program="chanlite")
    assert proc.wait_exit(60) != 0
    assert "(chanlite.E001)" in proc.output


def test_chanlite_serve_without_chanlite_in_installed_apps(project):
    write_app(project)
    project.add_settings(  # CHANNEL_LAYERS set, 'chanlite' forgotten
        "INSTALLED_APPS += ['chat']\n"
        "CHANNEL_LAYERS = {'default': {'BACKEND': 'chanlite.layers.memory.InMemoryChannelLayer',"
        " 'ROUTING': 'chat.routing.channel_routing'}}")
    project.write("mysite/asgi.py", ASGI)
    proc = project.start("serve", "mysite.asgi:channel_layer", "--port", str(free_port()),
                         program="chanlite")
    assert proc.wait_exit(60) != 0
    assert "(chanlite.E001) 'chanlite' is not in INSTALLED_APPS" in proc.output
