from django.apps import AppConfig


class Channels4Config(AppConfig):
    """``"chanlite.channels4"`` in INSTALLED_APPS: ``manage.py chanlite_ipc``
    for a Channels 4 project, without chanlite's 1.x ``runserver``."""

    name = "chanlite.channels4"
    label = "chanlite_channels4"
    verbose_name = "chanlite IPC layer for Channels 4"
