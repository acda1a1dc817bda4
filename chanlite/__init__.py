"""chanlite: Django Channels 1.x programming model, cheap to run and easy to test."""

__version__ = "0.1.0"

DEFAULT_CHANNEL_LAYER = "default"
