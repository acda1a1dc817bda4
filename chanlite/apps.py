from django.apps import AppConfig


class ChanliteConfig(AppConfig):
    """Lets ``chanlite`` sit in INSTALLED_APPS (management commands, runserver)."""

    name = "chanlite"
    verbose_name = "chanlite"
