from docs_routing import channel_routing  # noqa: F401 - an echo consumer
