"""Routing: which consumer handles a message, chosen by channel and content.

``channel_routing`` is a list (or a dotted path to one) of entries::

    channel_routing = [
        route("websocket.connect", ws_connect, path=r"^/chat/(?P<room>[^/]+)/$"),
        route_class(ChatConsumer, path=r"^/live/"),
        include("myapp.routing.channel_routing", path=r"^/app"),
    ]

Filters are regular expressions matched with ``re.match`` (anchored at the
start, so ``path="/chat/"`` and ``path="^/chat/"`` mean the same, as in
Channels 1.x) against string fields of the message content; named groups
become keyword arguments of the consumer, and positional (unnamed) groups are
refused when the route is built. ``include()`` strips the part of each
filtered field that its own filter matched before trying the included routes,
so included routing is written relative to its mount point. The first entry
that matches wins. :attr:`Router.channels` is the set of channels the routing
names: exactly what workers listen on.

:meth:`Router.match` works on a plain ``(channel, content)`` pair, so the
interface server can ask "is there an ``http.request`` route for this path?"
without building a :class:`~chanlite.message.Message`.
"""

from __future__ import annotations

import difflib
import importlib
import re
import threading
import traceback
from collections.abc import Callable, Iterable
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

from . import DEFAULT_CHANNEL_LAYER
from .layers import InvalidChannelLayerError, layer_settings
from .layers.names import queue_for_receive

__all__ = ["route", "route_class", "include", "Route", "RouteClass", "Include", "Router",
           "get_router", "set_router", "reset_routers", "as_router", "Consumer", "Match",
           "NoRouting", "RoutingImportError", "import_routing"]

Consumer = Callable[..., Any]
Match = tuple[Consumer, dict[str, Any]]


def _compile_filters(kind: str, target: object, filters: dict[str, Any]) -> dict[str, re.Pattern]:
    compiled: dict[str, re.Pattern] = {}
    for field, pattern in filters.items():
        if isinstance(pattern, re.Pattern):
            compiled[field] = _named_groups_only(kind, target, field, pattern)
            continue
        if isinstance(pattern, bytes):
            pattern = pattern.decode("latin-1")
        if not isinstance(pattern, str):
            raise ValueError(
                f"{kind} filter {field}={pattern!r} for {_name(target)} must be a regex string "
                "like r'^/chat/$' or a compiled pattern"
            )
        try:
            regex = re.compile(pattern)
        except re.error as exc:
            raise ValueError(
                f"{kind} filter {field}={pattern!r} is not a valid regex: {exc}"
            ) from exc
        compiled[field] = _named_groups_only(kind, target, field, regex)
    return compiled


def _named_groups_only(kind: str, target: object, field: str, regex: re.Pattern) -> re.Pattern:
    """Refuse positional groups, as 1.x did: a consumer gets only keyword
    arguments, so an unnamed group's value would be silently lost."""
    if regex.groups != len(regex.groupindex):
        raise ValueError(
            f"{kind} filter {field}={regex.pattern!r} for {_name(target)} contains positional "
            "groups; only named groups (?P<name>...) are allowed (they become consumer "
            "kwargs); use (?:...) for a group that captures nothing"
        )
    return regex


def _field_text(value: Any) -> str | None:
    """The string a filter is matched against (bytes fields decode as latin-1)."""
    if isinstance(value, str):
        return value
    if isinstance(value, bytes):
        return value.decode("latin-1")
    return None


def _match_filters(
    filters: dict[str, re.Pattern], content: dict
) -> tuple[dict[str, Any], dict[str, int]] | None:
    """``(named groups, end offset per field)`` when every filter matches."""
    kwargs: dict[str, Any] = {}
    ends: dict[str, int] = {}
    for field, regex in filters.items():
        text = _field_text(content.get(field))
        if text is None:
            return None
        found = regex.match(text)
        if found is None:
            return None
        kwargs.update({k: v for k, v in found.groupdict().items() if v is not None})
        ends[field] = found.end()
    return kwargs, ends


def _unpack(channel: Any, content: dict | None) -> tuple[Any, dict]:
    """``(channel name, content)`` from either call form: ``(name, content)``
    or a single :class:`~chanlite.message.Message` (what 1.x passed)."""
    if content is None and hasattr(channel, "content"):
        return channel.channel.name, channel.content
    return channel, content or {}


def _name(thing: object) -> str:
    module = getattr(thing, "__module__", None)
    qualname = getattr(thing, "__qualname__", None) or repr(thing)
    return f"{module}.{qualname}" if module else qualname


def _check_channel(channel: object, target: object) -> str:
    if not isinstance(channel, str):
        raise ValueError(f"route for {_name(target)}: channel must be a str, not {channel!r:.60}")
    try:
        queue_for_receive(channel)
    except TypeError as exc:
        raise ValueError(f"route for {_name(target)}: {exc}") from exc
    if channel.endswith("!"):
        raise ValueError(
            f"route for {_name(target)} on {channel!r}: process-specific channels are "
            "reply channels of a server, not routable"
        )
    return channel


class Route:
    """A consumer callable on one or more channels, with optional filters."""

    def __init__(self, channels: str | Iterable[str], consumer: Consumer | str, **filters: Any):
        if isinstance(consumer, str):
            try:
                consumer = import_string(consumer)
            except ImportError as exc:
                raise ImproperlyConfigured(
                    f"route({channels!r}, {consumer!r}): cannot import the consumer: {exc}"
                ) from exc
        if not callable(consumer):
            raise ValueError(
                f"route({channels!r}, ...): consumer {consumer!r:.60} is not callable; pass a "
                "function taking (message, **kwargs) or use route_class() for a class"
            )
        names = [channels] if isinstance(channels, str) else list(channels)
        if not names:
            raise ValueError(f"route() for {_name(consumer)} names no channel")
        self.channels: set[str] = {_check_channel(c, consumer) for c in names}
        self.consumer = consumer
        self.filters = _compile_filters("route", consumer, filters)

    def channel_names(self) -> set[str]:
        return set(self.channels)

    def match(self, channel: Any, content: dict | None = None) -> Match | None:
        """``(consumer, kwargs)`` or None; ``match(message)`` (1.x) works too."""
        channel, content = _unpack(channel, content)
        if channel not in self.channels:
            return None
        found = _match_filters(self.filters, content)
        if found is None:
            return None
        return self.consumer, found[0]

    def __repr__(self) -> str:
        filters = " ".join(f"{k}={v.pattern!r}" for k, v in self.filters.items())
        return (
            f"<{type(self).__name__} {sorted(self.channels)} -> {_name(self.consumer)} {filters}>"
        )


class RouteClass(Route):
    """A class consumer on the channels its ``channel_names()`` returns."""

    def __init__(self, consumer: type | str, **filters: Any):
        if isinstance(consumer, str):
            consumer = import_string(consumer)
        names = getattr(consumer, "channel_names", None)
        if not callable(names):
            raise ValueError(
                f"route_class({_name(consumer)}): the class has no channel_names(); "
                "subclass chanlite.generic.BaseConsumer, or use route() for a function"
            )
        super().__init__(sorted(names()), consumer, **filters)


class Include:
    """Another routing mounted under filters whose matched prefix is stripped."""

    def __init__(self, routing: Any, **filters: Any):
        self.routing = Router.resolve_routing(routing)
        self.filters = _compile_filters("include", routing, filters)

    def channel_names(self) -> set[str]:
        names: set[str] = set()
        for entry in self.routing:
            names |= entry.channel_names()
        return names

    def match(self, channel: Any, content: dict | None = None) -> Match | None:
        """``(consumer, kwargs)`` or None; ``match(message)`` (1.x) works too."""
        channel, content = _unpack(channel, content)
        found = _match_filters(self.filters, content)
        if found is None:
            return None
        kwargs, ends = found
        if ends:
            content = dict(content)
            for field, end in ends.items():
                content[field] = content[field][end:]
        for entry in self.routing:
            matched = entry.match(channel, content)
            if matched is not None:
                return matched[0], {**kwargs, **matched[1]}
        return None

    def __repr__(self) -> str:
        return f"<Include {len(self.routing)} entries {sorted(self.filters)}>"


def route(channels: str | Iterable[str], consumer: Consumer | str, **filters: Any) -> Route:
    """Route messages on ``channels`` (matching ``filters``) to ``consumer``."""
    return Route(channels, consumer, **filters)


def route_class(consumer: type | str, **filters: Any) -> RouteClass:
    """Route a class consumer on the channels it declares."""
    return RouteClass(consumer, **filters)


def include(routing: Any, **filters: Any) -> Include:
    """Mount ``routing`` (a list or dotted path) under ``filters``."""
    return Include(routing, **filters)


Entry = Route | Include


class NoRouting(InvalidChannelLayerError):
    """The layer has no ``ROUTING``: a plain Django project, views only (also
    1.x's ``InvalidChannelLayerError``, which 1.x raised for it)."""


class RoutingImportError(ImproperlyConfigured):
    """The routing module could not be imported, or raised while importing.

    Chained (``from``) to the real exception, so the traceback shows the
    line that failed. ``filename`` names the file to fix: Django's autoreloader
    watches it (as it does for a broken ``urls.py``) and restarts on a fix.
    """

    def __init__(self, message: str, filename: str | None = None) -> None:
        super().__init__(message)
        if filename:
            self.filename = filename


def _failing_file(exc: BaseException) -> str | None:
    """The last real source file in ``exc``'s traceback (not importlib's frames).

    A ``SyntaxError`` happens while compiling, before any frame of the broken
    file runs: the traceback ends in importlib, and the file to fix is the
    one the error names.
    """
    if isinstance(exc, SyntaxError) and exc.filename and not exc.filename.startswith("<"):
        return exc.filename

    files = [frame.filename for frame in traceback.extract_tb(exc.__traceback__)
             if not frame.filename.startswith("<")]
    return files[-1] if files else None


def describe_exception(exc: BaseException) -> str:
    """``Type: message`` as Python prints it, including 3.10+'s "Did you mean"."""
    text = "".join(traceback.format_exception_only(exc)).strip()
    # Python 3.11 adds the suggestion only when printing a whole traceback.
    name, obj = getattr(exc, "name", None), getattr(exc, "obj", None)
    if isinstance(exc, AttributeError) and name and obj is not None and "Did you mean" not in text:
        close = difflib.get_close_matches(name, [n for n in dir(obj) if not n.startswith("__")], 1)
        if close:
            text += f". Did you mean: {close[0]!r}?"
    return text


def import_routing(path: str) -> Any:
    """Import the routing list named by a dotted path, reporting the real error.

    Unlike ``import_string`` (which turns an ``AttributeError`` raised *while
    importing* the module into "does not define an attribute"), this imports
    the module first and looks the attribute up second, so the message says
    what actually went wrong.
    """
    module_path, _, attribute = path.rpartition(".")
    if not module_path or not attribute:
        raise ImproperlyConfigured(
            f"routing {path!r} is not a dotted path; use e.g. 'myproject.routing.channel_routing'"
        )
    try:
        module = importlib.import_module(module_path)
    except ModuleNotFoundError as exc:
        if exc.name and (module_path == exc.name or module_path.startswith(exc.name + ".")):
            raise RoutingImportError(
                f"cannot import routing {path!r}: there is no module {exc.name!r}. Create "
                f"{module_path.replace('.', '/')}.py with a list named {attribute!r}, or "
                "fix the dotted path (e.g. 'myproject.routing.channel_routing')"
            ) from exc
        raise RoutingImportError(
            f"cannot import routing {path!r}: importing {module_path!r} raised "
            f"{describe_exception(exc)}", _failing_file(exc)
        ) from exc
    except Exception as exc:
        raise RoutingImportError(
            f"cannot import routing {path!r}: importing {module_path!r} raised "
            f"{describe_exception(exc)}", _failing_file(exc)
        ) from exc
    try:
        return getattr(module, attribute)
    except AttributeError:
        names = [n for n in vars(module) if not n.startswith("_")]
        close = difflib.get_close_matches(attribute, names, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise RoutingImportError(
            f"cannot import routing {path!r}: module {module_path!r} has no attribute "
            f"{attribute!r}.{hint}", getattr(module, "__file__", None)
        ) from None


class Router:
    """The whole routing of a layer: resolves it once, matches messages.

    ``routing`` is a list of ``route``/``route_class``/``include`` entries, a
    dotted path to such a list, or an old-style dict ``{channel: consumer}``.
    """

    def __init__(self, routing: Any) -> None:
        self.root = Include(routing)
        #: Every channel the routing names: what a worker listens on.
        self.channels: set[str] = self.root.channel_names()

    def match(self, channel: Any, content: dict | None = None) -> Match | None:
        """``(consumer, kwargs)`` for a message, or None if nothing matches.

        Call as ``match(channel_name, content_dict)``; ``match(message)`` with
        a :class:`~chanlite.message.Message` also works (the 1.x form).
        """
        channel, content = _unpack(channel, content)
        if channel not in self.channels:
            return None
        return self.root.match(channel, content)

    def add_route(self, route: Entry) -> None:
        """Append ``route`` (tried after every existing entry) and recompute
        :attr:`channels` — as 1.x's ``Router.add_route``."""
        Router.resolve_routing([route])  # the same validation as a routing list
        self.root.routing.append(route)
        self.channels = self.root.channel_names()

    @staticmethod
    def resolve_routing(routing: Any) -> list[Entry]:
        """Turn a list / dotted path / dict into a validated list of entries."""
        source = routing
        if isinstance(routing, str):
            routing = import_routing(routing)
        if isinstance(routing, Router):
            return list(routing.root.routing)
        if isinstance(routing, dict):
            return [Route(channel, consumer) for channel, consumer in routing.items()]
        if not isinstance(routing, (list, tuple)):
            raise ImproperlyConfigured(
                f"routing {source!r:.80} is a {type(routing).__name__}; it must be a list of "
                "route()/route_class()/include() entries (or a dotted path to one)"
            )
        for index, entry in enumerate(routing):
            if not isinstance(entry, (Route, Include)):
                hint = ""
                if isinstance(entry, tuple):
                    hint = " (a tuple: did you mean route(channel, consumer)?)"
                elif isinstance(entry, type):
                    hint = f" (a class: did you mean route_class({entry.__name__})?)"
                raise ImproperlyConfigured(
                    f"entry {index} of routing {source!r:.80} is {entry!r:.80}{hint}; every "
                    "entry must be route(), route_class() or include()"
                )
        return list(routing)

    def __repr__(self) -> str:
        return f"<Router channels={sorted(self.channels)}>"


_routers: dict[str, Router] = {}
_routers_lock = threading.Lock()


def as_router(routing: Router | Any, alias: str | None = None) -> Router:
    """``routing`` itself if it is a Router, else ``Router(routing)`` (a list of
    routes or a dotted path). With ``alias``, None stands for that alias's
    current Router (``apply_routes``, then settings), as the test clients and
    the live server take it; without, None is refused like any bad routing."""
    if routing is None and alias is not None:
        return get_router(alias)
    return routing if isinstance(routing, Router) else Router(routing)


def get_router(alias: str = DEFAULT_CHANNEL_LAYER) -> Router:
    """The Router for ``CHANNEL_LAYERS[alias]["ROUTING"]`` (built once, cached)."""
    try:
        return _routers[alias]
    except KeyError:
        pass

    with _routers_lock:
        if alias not in _routers:
            entry = layer_settings(alias)
            routing = entry.get("ROUTING")
            if routing is None:
                raise NoRouting(
                    f"CHANNEL_LAYERS[{alias!r}] has no 'ROUTING'; add "
                    "'ROUTING': 'myproject.routing.channel_routing' (a list of route() entries)"
                )
            try:
                _routers[alias] = Router(routing)
            except RoutingImportError as exc:
                raise RoutingImportError(
                    f"CHANNEL_LAYERS[{alias!r}]['ROUTING']: {exc}", getattr(exc, "filename", None)
                ) from exc.__cause__
            except (ValueError, TypeError) as exc:
                raise ImproperlyConfigured(
                    f"CHANNEL_LAYERS[{alias!r}]['ROUTING'] is invalid: {exc}"
                ) from exc
        return _routers[alias]


def set_router(alias: str, router: Router | None) -> Router | None:
    """Install ``router`` for ``alias`` (``None``: rebuild from settings on next
    use); return the previous one. ``chanlite.testing.apply_routes`` uses it to
    swap a test's routes in and back out without touching settings."""
    with _routers_lock:
        previous = _routers.pop(alias, None)
        if router is not None:
            _routers[alias] = router
        return previous


def reset_routers(alias: str | None = None) -> None:
    """Forget cached routers (one alias, or all) so they are rebuilt from settings."""
    with _routers_lock:
        if alias is None:
            _routers.clear()
        else:
            _routers.pop(alias, None)
