"""Django system checks for chanlite: misconfigurations fail loudly, at once.

Every check here is a plain function ``check_x(app_configs, **kwargs) ->
list[CheckMessage]`` decorated with :func:`chanlite_check`, which records it
in :data:`CHECKS`; ``ChanliteConfig.ready()`` registers all of them with
Django under the ``chanlite`` tag, so ``manage.py check``, ``runserver``,
``runworker``, ``migrate`` and ``chanlite serve`` run them. Add a check by
writing one self-contained decorated function; ids are ``chanlite.E0NN``
(errors) and ``chanlite.W0NN`` (warnings), each used once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.core import checks

__all__ = ["CHECKS", "chanlite_check", "register_checks"]

CheckFunction = Callable[..., list[checks.CheckMessage]]

#: Every chanlite check, in definition order (registered by the app config).
CHECKS: list[CheckFunction] = []


def chanlite_check(function: CheckFunction) -> CheckFunction:
    """Record ``function`` as a chanlite system check (see :func:`register_checks`)."""
    CHECKS.append(function)
    return function


def register_checks() -> None:
    """Register every check in :data:`CHECKS` with Django (idempotent: Django's
    registry is a set, so calling this again does not run a check twice)."""
    for function in CHECKS:
        checks.register(function, "chanlite")
