from django.apps import AppConfig


class ChanliteConfig(AppConfig):
    """Lets ``chanlite`` sit in INSTALLED_APPS (management commands, runserver)."""

    name = "chanlite"
    verbose_name = "chanlite"

    def ready(self) -> None:
        from . import checks  # noqa: F401 - registers chanlite's system checks
