from django.apps import AppConfig


class DelayConfig(AppConfig):
    """``chanlite.delay`` in INSTALLED_APPS: the ``rundelay`` command and the
    table that keeps delayed messages across a restart of the delay process."""

    name = "chanlite.delay"
    label = "chanlite_delay"
    verbose_name = "chanlite delay service"
    default_auto_field = "django.db.models.BigAutoField"
