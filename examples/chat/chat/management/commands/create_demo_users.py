"""``manage.py create_demo_users``: the accounts the README's demo signs in with.

Idempotent (scripts/chat runs it on every start) and it resets the password,
so the printed credentials always work.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

DEMO_USERS = ("alice", "bob")
DEMO_PASSWORD = "chanlite-demo"


class Command(BaseCommand):
    help = f"Create (or reset) the demo users {', '.join(DEMO_USERS)} with password {DEMO_PASSWORD!r}."

    def handle(self, *args: Any, **options: Any) -> None:
        User = get_user_model()
        for name in DEMO_USERS:
            user, created = User.objects.get_or_create(username=name)
            user.set_password(DEMO_PASSWORD)
            user.save()
            self.stdout.write(f"{'created' if created else 'reset'} demo user {name!r}")
