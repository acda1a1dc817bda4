"""``apply_routes``: test a consumer with exactly the routes the test names.

As in Channels 1.x, usable as a decorator (on a test function, method or a
whole TestCase class) and as a context manager. The routes replace the
alias's router (settings' ``ROUTING`` is untouched) and the previous router
comes back afterwards, even when the test fails.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from .. import DEFAULT_CHANNEL_LAYER
from ..routing import Include, Route, Router, include, set_router

__all__ = ["apply_routes"]

T = TypeVar("T")


def _as_router(routes: Any) -> Any:
    """Accept a Router, a dotted path, one route, a list of routes, or (1.x)
    a list of lists of routes (each mounted with ``include``)."""
    if isinstance(routes, (Router, str, dict)):
        return Router(routes) if not isinstance(routes, Router) else routes
    if isinstance(routes, (Route, Include)):
        return Router([routes])
    routes = list(routes)
    if routes and all(isinstance(r, (list, tuple)) for r in routes):
        routes = [include(list(r)) for r in routes]
    return Router(routes)


class apply_routes:  # noqa: N801 - the Channels 1.x name
    """Use ``routes`` for ``aliases`` while the decorated test (or block) runs."""

    def __init__(self, routes: Any, aliases: Iterable[str] = (DEFAULT_CHANNEL_LAYER,)) -> None:
        self.router = _as_router(routes)
        self.aliases = list(aliases)
        self._saved: list[dict[str, Any]] = []

    def enter(self) -> Any:
        """Install the routes; returns the Router (``with apply_routes(...) as r``)."""
        # A stack, so one apply_routes object may be nested or reused.
        self._saved.append({alias: set_router(alias, self.router) for alias in self.aliases})
        return self.router

    def exit(self, *exc: Any) -> None:
        """Put back the routers that were there before :meth:`enter`."""
        saved = self._saved.pop()
        for alias, previous in saved.items():
            set_router(alias, previous)

    __enter__ = enter
    __exit__ = exit

    def __call__(self, target: T) -> T:
        if isinstance(target, type):
            return self._decorate_class(target)  # type: ignore[return-value]
        if not callable(target):
            raise TypeError(f"apply_routes decorates a test function or class, not {target!r:.60}")
        func: Callable[..., Any] = target  # type: ignore[assignment]

        @functools.wraps(func)
        def inner(*args: Any, **kwargs: Any) -> Any:
            with self:
                return func(*args, **kwargs)

        if inspect.isgeneratorfunction(func):  # pragma: no cover - rare
            raise TypeError("apply_routes cannot decorate a generator function")
        return inner  # type: ignore[return-value]

    def _decorate_class(self, cls: type) -> type:
        """Wrap the class's ``setUp`` (removal is an ``addCleanup``), so each
        test gets the routes and nothing can leak them into other classes.
        A subclass that overrides ``setUp`` must call ``super().setUp()``."""
        original_setup = cls.__dict__.get("setUp")
        decorator = self

        def setUp(test: Any) -> None:  # noqa: N802 - unittest's name
            decorator.enter()
            test.addCleanup(decorator.exit)
            if original_setup is not None:
                original_setup(test)
            else:
                super(cls, test).setUp()

        setUp.__qualname__ = f"{cls.__qualname__}.setUp"
        cls.setUp = setUp  # type: ignore[attr-defined]
        return cls
