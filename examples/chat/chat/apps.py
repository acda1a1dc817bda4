from django.apps import AppConfig


class ChatConfig(AppConfig):
    name = "chat"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Bindings connect model signals: import them in every process that
        # saves rooms (the server's views and admin, and runworker processes).
        from . import bindings  # noqa: F401
