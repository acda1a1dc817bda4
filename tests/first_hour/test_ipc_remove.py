"""``chanlite_ipc --remove`` refuses while processes use the prefix, and a
worker whose segment is removed anyway (``--force``) says so and exits
non-zero instead of serving a private copy nobody else sees."""

from __future__ import annotations

import uuid

import pytest

from chanlite.layers.ipc import IPCChannelLayer

from .routing_files import write_app


@pytest.fixture
def prefix(project):
    """A fresh IPC prefix for ``project``'s layer (with the app's routing),
    removed from /dev/shm afterwards."""
    prefix = f"firsthour-{uuid.uuid4().hex[:10]}"
    write_app(project)
    project.chanlite_first(backend="chanlite.layers.ipc.IPCChannelLayer",
                           config={"prefix": prefix})
    yield prefix
    IPCChannelLayer.remove_prefix(prefix)


def test_remove_refuses_while_a_worker_runs_then_force_stops_it(project, prefix):
    worker = project.start("runworker", "--workers", "1")
    worker.wait_for(r"Worker: 1 consumer thread\(s\) on layer 'default' listening on")

    refused = project.run("chanlite_ipc", "--remove")
    assert refused.returncode != 0, refused.stdout
    assert f"in use by process(es) {worker.proc.pid}" in refused.stdout
    assert "--force" in refused.stdout
    assert project.run("chanlite_ipc", "--stats").returncode == 0  # still there

    forced = project.run("chanlite_ipc", "--remove", "--force")
    assert forced.returncode == 0, forced.stdout
    assert worker.wait_exit(30) != 0, worker.output
    worker.wait_for(rf"/dev/shm/chanlite\.{prefix} was removed")


def test_remove_goes_ahead_once_the_users_are_gone(project, prefix):
    worker = project.start("runworker", "--workers", "1")
    worker.wait_for("listening on")
    worker.stop()  # SIGTERM: a graceful exit unregisters it
    removed = project.run("chanlite_ipc", "--remove")
    assert removed.returncode == 0, removed.stdout
    assert f"removed /dev/shm/chanlite.{prefix}" in removed.stdout


def test_chanlite_serve_stops_when_its_segment_is_removed(project, prefix):
    from .project import free_port
    from .test_start import ASGI

    project.write("mysite/asgi.py", ASGI)
    server = project.start("serve", "mysite.asgi:channel_layer", "--port", str(free_port()),
                           program="chanlite")
    server.wait_for(r"no embedded workers \(consumers run in `manage.py runworker`\)")
    refused = project.run("chanlite_ipc", "--remove")
    assert f"in use by process(es) {server.proc.pid}" in refused.stdout, refused.stdout
    assert project.run("chanlite_ipc", "--remove", "--force").returncode == 0
    assert server.wait_exit(30) == 1, server.output
    assert f"stopped because /dev/shm/chanlite.{prefix} was removed" in server.output
