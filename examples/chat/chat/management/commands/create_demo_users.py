"""``manage.py create_demo_users``: the accounts the README's demo signs in with.

Idempotent (scripts/chat runs it on every start): it creates the users that
are missing and leaves existing ones - their password, sessions and data -
alone, so restarting the demo never logs anyone out. ``--reset`` sets the
demo password again.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

DEMO_USERS = ("alice", "bob")
DEMO_PASSWORD = "chanlite-demo"


class Command(BaseCommand):
    help = f"Create the demo users {', '.join(DEMO_USERS)} (password {DEMO_PASSWORD!r}) if missing."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--reset", action="store_true",
                            help="Set the demo password on existing demo users too (default: off)")

    def handle(self, *args: Any, **options: Any) -> None:
        User = get_user_model()
        for name in DEMO_USERS:
            user, created = User.objects.get_or_create(username=name)
            if created or options["reset"]:
                user.set_password(DEMO_PASSWORD)
                user.save()
                self.stdout.write(f"{'created' if created else 'reset'} demo user {name!r}")
            elif not user.check_password(DEMO_PASSWORD):
                self.stdout.write(f"demo user {name!r} exists with another password; kept "
                                  "(--reset sets it back to the demo one)")
