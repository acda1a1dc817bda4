from django.apps import AppConfig


class ChanliteConfig(AppConfig):
    """Lets ``chanlite`` sit in INSTALLED_APPS (management commands, runserver)
    and registers its system checks (``chanlite/checks.py``)."""

    name = "chanlite"
    verbose_name = "chanlite"

    def ready(self) -> None:
        from .checks import register_checks

        register_checks()
