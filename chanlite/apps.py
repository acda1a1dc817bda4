from django.apps import AppConfig

from .binding.base import BindingMetaclass
from .checks import register_checks


class ChanliteConfig(AppConfig):
    """Lets ``chanlite`` sit in INSTALLED_APPS (management commands, runserver),
    registers its system checks (``chanlite/checks.py``) and connects the
    model signals of data bindings once models are ready."""

    name = "chanlite"
    verbose_name = "chanlite"

    def ready(self) -> None:
        register_checks()
        BindingMetaclass.register_all()
