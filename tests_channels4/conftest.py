"""Channels 4 tests: they need ``pip install -e '.[channels4]' uvicorn``
(scripts/test installs them); chanlite's own tests never import Channels."""

pytest_plugins = ["chanlite.channels4.pytest_plugin"]
