"""``manage.py chanlite_ipc``: inspect, check, flush or remove an IPC layer's segment.

    manage.py chanlite_ipc [--layer ALIAS | --prefix PREFIX] [--wait SECONDS]
                           (--stats | --check | --flush | --remove [--force])

The IPC layer keeps everything in ``/dev/shm/chanlite.<prefix>`` plus one
doorbell semaphore per blocked receiver (``/dev/shm/sem.chanlite.<prefix>.w*``).
They outlive the processes on purpose (queued messages survive a restart);
this command is how an operator looks inside and cleans up.

It never hangs: it waits at most ``--wait`` seconds for a segment lock held
by a live process, then reports "segment locked by pid N for X s" and how to
free it; a corrupt segment is reported (``IPCCorrupt``) with the way out.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from chanlite.layers import layer_settings
from chanlite.layers._ipc_platform import IPCUnavailable

if TYPE_CHECKING:
    from chanlite.layers.ipc import IPCChannelLayer


class Command(BaseCommand):
    help = (
        "Inspect (--stats), verify (--check), empty (--flush) or delete (--remove) the "
        "shared-memory segment of a chanlite IPC channel layer."
    )
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        where = parser.add_mutually_exclusive_group()
        where.add_argument("--layer", default="default",
                           help="CHANNEL_LAYERS alias whose CONFIG names the prefix "
                           "(default: %(default)s).")
        where.add_argument("--prefix", help="IPC prefix to act on (overrides --layer).")
        parser.add_argument("--wait", type=float, default=5.0,
                            help="Seconds to wait for a segment locked by another process "
                            "before reporting who holds it (default: %(default)s).")
        action = parser.add_mutually_exclusive_group(required=True)
        action.add_argument("--stats", action="store_true",
                            help="Print segment figures and the queued messages per channel.")
        action.add_argument("--check", action="store_true",
                            help="Verify every invariant of the shared data structures.")
        action.add_argument("--flush", action="store_true",
                            help="Drop every message, group and statistic (processes may run).")
        action.add_argument("--remove", action="store_true",
                            help="Delete the segment and its semaphores from /dev/shm. Refused "
                            "while processes use the prefix (it lists their pids): stop them "
                            "first, or pass --force.")
        parser.add_argument("--force", action="store_true",
                            help="With --remove: remove even while processes use the prefix "
                            "(their workers notice, log it and exit non-zero) (default: off)")

    def _config(self, options: dict[str, Any]) -> dict[str, Any]:
        """The layer's CONFIG (only ``prefix``, when given --prefix)."""
        if options["prefix"]:
            return {"prefix": options["prefix"]}
        alias = options["layer"]
        entry = layer_settings(alias)
        backend = entry["BACKEND"]
        if not backend.endswith("IPCChannelLayer"):
            raise CommandError(
                f"CHANNEL_LAYERS[{alias!r}] uses {backend}, not the IPC layer; "
                "pass --prefix or --layer naming an IPC layer"
            )
        return {"prefix": "chanlite", **entry.get("CONFIG", {})}

    def handle(self, *args: Any, **options: Any) -> None:
        # Imported here, not at module level: `manage.py help` must list this
        # command on platforms where the IPC layer cannot run (Windows, macOS).
        try:
            from chanlite.layers.ipc import (  # noqa: PLC0415 — the IPC layer needs posix_ipc (optional off Linux); checks the platform first
                DEFAULT_MODE,
                IPCChannelLayer,
                IPCCorrupt,
                IPCError,
            )
        except IPCUnavailable as exc:
            raise CommandError(str(exc)) from None
        import posix_ipc  # noqa: PLC0415 — the IPC layer needs posix_ipc (optional off Linux)

        from chanlite.layers._ipc_segment import segment_name as _segment_name  # noqa: PLC0415 — the IPC layer needs posix_ipc (optional off Linux)

        config = self._config(options)
        prefix = config["prefix"]
        segment = f"/dev/shm{_segment_name(prefix)}"
        if not options["wait"] > 0:
            raise CommandError("--wait must be a number of seconds above 0")
        if options["remove"]:
            users = self._users(prefix, options["wait"])
            if users and not options["force"]:
                raise CommandError(
                    f"{segment} is in use by process(es) {', '.join(map(str, users))}; stop "
                    "them first (a process keeps serving a private copy of a removed "
                    "segment), or pass --force"
                )
            try:
                existed = IPCChannelLayer.remove_prefix(prefix)
            except IPCError as exc:
                raise CommandError(str(exc)) from exc
            self.stdout.write(f"removed {segment}" if existed else f"{segment} did not exist; "
                              "removed any stray semaphores")
            return
        try:
            posix_ipc.SharedMemory(_segment_name(prefix)).close_fd()  # exists? never create
        except posix_ipc.ExistentialError:
            raise CommandError(f"no IPC segment {segment} (prefix {prefix!r})") from None
        except posix_ipc.PermissionsError:
            pass  # another user's: the layer below says so
        try:
            layer = IPCChannelLayer(prefix=prefix, mode=config.get("mode", DEFAULT_MODE),
                                    lock_timeout=options["wait"])
        except (IPCError, ValueError) as exc:
            raise CommandError(str(exc)) from exc
        try:
            if options["flush"]:
                layer.flush()
                self.stdout.write(f"flushed {segment}")
            elif options["check"]:
                figures = layer.check()
                self.stdout.write(f"{segment} is consistent: {figures}")
            else:
                self._stats(layer)
        except IPCCorrupt as exc:
            raise CommandError(f"{segment} is inconsistent: {exc}") from exc
        except IPCError as exc:  # IPCLockTimeout: who holds it, and how to free it
            raise CommandError(str(exc)) from exc
        finally:
            layer.close()

    @staticmethod
    def _users(prefix: str, wait: float) -> list[int]:
        """Pids of the live processes attached to ``prefix``'s segment, read
        from its pid table (without creating the segment if it is missing)."""
        import posix_ipc  # noqa: PLC0415 — the IPC layer needs posix_ipc (optional off Linux)

        from chanlite.layers._ipc_segment import IPCError  # noqa: PLC0415 — the IPC layer needs posix_ipc (optional off Linux)
        from chanlite.layers._ipc_segment import segment_name as _segment_name  # noqa: PLC0415 — the IPC layer needs posix_ipc (optional off Linux)
        from chanlite.layers.ipc import IPCChannelLayer  # noqa: PLC0415 — the IPC layer needs posix_ipc (optional off Linux)

        try:
            posix_ipc.SharedMemory(_segment_name(prefix)).close_fd()
        except posix_ipc.ExistentialError:
            return []
        try:
            layer = IPCChannelLayer(prefix=prefix, lock_timeout=wait)
        except (IPCError, ValueError):
            return []  # not readable as a segment (or another user's): nothing to protect
        try:
            return layer.attached_pids()
        finally:
            layer.close()

    def _stats(self, layer: IPCChannelLayer) -> None:
        for key, value in layer.segment_info().items():
            self.stdout.write(f"{key:<20}{value}")
        for key, value in layer.global_statistics().items():
            self.stdout.write(f"{key:<20}{value}")
        dump = layer.dump()
        for name, items in sorted(dump["queues"].items()):
            self.stdout.write(f"  channel {name}: {len(items)} queued")
        for name, members in sorted(dump["groups"].items()):
            self.stdout.write(f"  group {name}: {len(members)} members")
