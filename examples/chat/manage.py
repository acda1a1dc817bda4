#!/usr/bin/env python
"""Django's command-line utility for the chanlite chat example.

``python manage.py runserver`` serves HTTP and WebSocket with embedded
workers (chanlite replaces Django's runserver because ``chanlite`` is listed
in INSTALLED_APPS before ``django.contrib.staticfiles``).
"""

import os
import sys


def main() -> None:
    # The example lives inside the chanlite repository; make `chatsite` and
    # `chat` importable whatever the current directory is.
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatsite.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
