"""``manage.py chanlite_ipc`` for Channels 4 projects (INSTALLED_APPS gets
``"chanlite.channels4"``, which brings only this command, not chanlite's
runserver): the same inspection and cleanup as chanlite's own command."""

from chanlite.management.commands.chanlite_ipc import Command

__all__ = ["Command"]
