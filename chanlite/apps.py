from django.apps import AppConfig


class ChanliteConfig(AppConfig):
    """Lets ``chanlite`` sit in INSTALLED_APPS (management commands, runserver)
    and connects the model signals of data bindings once models are ready."""

    name = "chanlite"
    verbose_name = "chanlite"

    def ready(self) -> None:
        from .binding.base import BindingMetaclass

        BindingMetaclass.register_all()
        from . import checks  # noqa: F401 - registers chanlite's system checks
