"""Throw-away ``redis-server`` processes for the Redis layer tests.

Why our own servers: multi-host, restart and password cases need servers we
may stop, restart and inspect (``INFO commandstats``) without disturbing the
shared one at 127.0.0.1:6379, which tests only ever touch under a unique
key prefix. Each server keeps nothing on disk and is stopped by whoever
started it (``stop()`` in a fixture finaliser).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time

import redis

from chanlite.testing import eventually

SHARED_URL = "redis://127.0.0.1:6379/0"


def shared_redis_unavailable() -> str | None:
    """Why the shared Redis cannot be used, or None when it answers."""
    try:
        redis.Redis.from_url(SHARED_URL, socket_connect_timeout=1).ping()
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        # Only "no server answers" is a reason to skip; any other error (a
        # broken install, a bug) must fail the tests that need Redis.
        return f"no Redis reachable at {SHARED_URL} ({exc})"
    return None


def redis_server_missing() -> str | None:
    """Why we cannot start our own servers, or None."""
    if shutil.which("redis-server") is None:
        return "the redis-server binary is not on PATH"
    return None


def make_self_signed_cert(directory: str) -> str | None:
    """Write cert.pem/key.pem for 127.0.0.1 with openssl; return why not, or None."""
    if shutil.which("openssl") is None:
        return "openssl is not on PATH (needed for a test certificate)"
    done = subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", f"{directory}/key.pem", "-out", f"{directory}/cert.pem",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
        capture_output=True, check=False,
    )
    if done.returncode != 0:
        return f"openssl could not make a certificate: {done.stderr.decode()[-200:]}"
    return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RedisServer:
    """One private ``redis-server`` on a free port (``start``/``stop``/``restart``)."""

    def __init__(
        self, password: str | None = None, tls_dir: str | None = None,
        unix_socket: str | None = None, extra_args: list[str] | None = None,
        config_file: str | None = None, cwd: str | None = None,
    ) -> None:
        """``tls_dir`` holding ``cert.pem``/``key.pem`` makes it TLS-only;
        ``unix_socket`` (a path) makes it listen there only; ``extra_args``
        are more ``--option value`` pairs (``--replicaof``, ``--sentinel``);
        ``config_file`` comes first on the command line (Sentinel needs a
        writable one); ``cwd`` is where it runs."""
        self.port = free_port()
        self.password = password
        self.tls_dir = tls_dir
        self.unix_socket = unix_socket
        self.extra_args = list(extra_args or [])
        self.config_file = config_file
        self.cwd = cwd
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        if self.unix_socket:
            return f"unix://{self.unix_socket}"
        auth = f":{self.password}@" if self.password else ""
        scheme = "rediss" if self.tls_dir else "redis"
        return f"{scheme}://{auth}127.0.0.1:{self.port}/0"

    @property
    def tls_options(self) -> dict[str, str]:
        """redis-py options trusting this server's self-signed certificate."""
        return {"ssl_ca_certs": f"{self.tls_dir}/cert.pem"} if self.tls_dir else {}

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url, socket_connect_timeout=1, **self.tls_options)

    def start(self, timeout: float = 10.0) -> RedisServer:
        args = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                "--save", "", "--appendonly", "no", "--daemonize", "no"]
        if self.password:
            args += ["--requirepass", self.password]
        if self.unix_socket:
            args[1:3] = ["--port", "0", "--unixsocket", self.unix_socket]
        if self.tls_dir:
            args[1:3] = ["--port", "0", "--tls-port", str(self.port),
                         "--tls-cert-file", f"{self.tls_dir}/cert.pem",
                         "--tls-key-file", f"{self.tls_dir}/key.pem",
                         "--tls-ca-cert-file", f"{self.tls_dir}/cert.pem",
                         "--tls-auth-clients", "no"]
        if self.config_file:
            args.insert(1, self.config_file)
        args += self.extra_args
        self.process = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=self.cwd
        )
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.client().ping()
                return self
            except redis.ConnectionError as exc:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(
                        f"redis-server on port {self.port} did not start: {exc}"
                    ) from exc
                time.sleep(0.02)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self.process = None

    def kill(self) -> None:
        """SIGKILL: the abrupt death of a machine, no shutdown work."""
        if self.process is not None:
            self.process.kill()
            self.process.wait(10)
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def evalsha_calls(self) -> int:
        """How many EVALSHA commands this server has run (INFO commandstats)."""
        stats = self.client().info("commandstats")
        return int(stats.get("cmdstat_evalsha", {}).get("calls", 0))


def wait_for(condition, what: str, timeout: float = 20.0, every: float = 0.05):
    """Poll ``condition()`` until truthy (returned) or fail naming ``what``;
    Redis errors count as "not yet" (a server that is restarting or failing over)."""
    return eventually(condition, what, timeout=timeout, interval=every,
                      ignore=(redis.ConnectionError, redis.TimeoutError, redis.ResponseError))


class SentinelCluster:
    """A master, one replica and three ``redis-server --sentinel`` processes.

    Failover timings are tuned down (``down_after`` ms before a Sentinel
    calls the master down, ``failover_timeout`` ms) so a test can kill the
    master and see the replica promoted within a few seconds. Everything
    lives in a temporary directory removed by ``stop()`` (Sentinel insists
    on a writable config file; the servers keep no data on disk).
    """

    def __init__(self, service: str = "mymaster", down_after: int = 400,
                 failover_timeout: int = 3000) -> None:
        self.service = service
        self.down_after = down_after
        self.failover_timeout = failover_timeout
        self.directory = tempfile.mkdtemp(prefix="chanlite-sentinel-")
        sync = ["--repl-diskless-sync", "yes", "--repl-diskless-sync-delay", "0",
                "--repl-diskless-load", "on-empty-db"]
        self.master = RedisServer(extra_args=sync, cwd=self.directory)
        self.replica = RedisServer(extra_args=sync, cwd=self.directory)
        self.sentinels: list[RedisServer] = []

    @property
    def sentinel_addresses(self) -> list[tuple[str, int]]:
        return [("127.0.0.1", s.port) for s in self.sentinels]

    def start(self) -> SentinelCluster:
        try:
            self.master.start()
            self.replica.extra_args += ["--replicaof", "127.0.0.1", str(self.master.port)]
            self.replica.start()
            wait_for(lambda: self.replica.client().info("replication")["master_link_status"]
                     == "up", "the replica to sync with the master")
            for i in range(3):
                conf = os.path.join(self.directory, f"sentinel-{i}.conf")
                with open(conf, "w") as f:
                    f.write(
                        f"sentinel monitor {self.service} 127.0.0.1 {self.master.port} 2\n"
                        f"sentinel down-after-milliseconds {self.service} {self.down_after}\n"
                        f"sentinel failover-timeout {self.service} {self.failover_timeout}\n"
                        f"sentinel parallel-syncs {self.service} 1\n"
                    )
                sentinel = RedisServer(config_file=conf, extra_args=["--sentinel"],
                                       cwd=self.directory)
                self.sentinels.append(sentinel)
                sentinel.start()
            # A failover needs a quorum that knows the replica and its peers
            # (Sentinels find each other through hello messages, every 2 s).
            for sentinel in self.sentinels:
                wait_for(lambda s=sentinel: self._knows_everyone(s),
                         f"Sentinel {sentinel.port} to see its 2 peers and the replica")
        except BaseException:
            self.stop()
            raise
        return self

    def _knows_everyone(self, sentinel: RedisServer) -> bool:
        state = sentinel.client().sentinel_master(self.service)
        return state["num-other-sentinels"] >= 2 and state["num-slaves"] >= 1

    def current_master_port(self) -> int | None:
        """The master port the Sentinels report now (None if they disagree)."""
        ports = {int(s.client().sentinel_get_master_addr_by_name(self.service)[1])
                 for s in self.sentinels}
        return ports.pop() if len(ports) == 1 else None

    def stop(self) -> None:
        for server in [*self.sentinels, self.replica, self.master]:
            server.stop()
        shutil.rmtree(self.directory, ignore_errors=True)


@contextlib.contextmanager
def private_servers(count: int):
    """``count`` throw-away servers, all stopped afterwards (even if one fails to start)."""
    started: list[RedisServer] = []
    try:
        for _ in range(count):
            started.append(RedisServer().start())
        yield started
    finally:
        for server in started:
            server.stop()
