"""Generate docs/api.md from the docstrings of chanlite's public API.

    .venv/bin/python scripts/api_docs.py            # rewrite docs/api.md
    .venv/bin/python scripts/api_docs.py --check    # exit 1 if it is stale

Generated rather than hand-written so the reference cannot drift from the
code: the signatures are read with ``inspect`` and the text is each
object's own docstring. Only names in a module's ``__all__`` are public.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import re
import sys
import typing
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "api.md"

#: (module, one-line role) in reading order; names come from __all__.
MODULES = [
    ("chanlite.channel", "Sending to channels and groups; sends deferred while a consumer runs."),
    ("chanlite.message", "What a consumer receives."),
    ("chanlite.routing", "Which consumer handles which message."),
    ("chanlite.generic", "Class consumers."),
    ("chanlite.sessions", "Channel and HTTP sessions for consumers."),
    ("chanlite.auth", "message.user from the sessions."),
    ("chanlite.ordering", "Running a connection's frames in order."),
    ("chanlite.exceptions", "Exceptions consumers raise or see."),
    ("chanlite.security.websockets", "Origin checks as websocket.connect decorators."),
    ("chanlite.signals", "Signals around each consumer run."),
    ("chanlite.worker", "Workers that run consumers."),
    ("chanlite.asgi", "What a project's asgi.py imports; 1.x's channel_layers."),
    ("chanlite.delay", "Messages delivered later: the asgi.delay request."),
    ("chanlite.delay.service", "The delay service (rundelay, the in-process thread, tests)."),
    ("chanlite.handler", "Django views as consumers (views in workers)."),
    ("chanlite.binding", "Data binding: model changes to groups, client actions to models."),
    ("chanlite.binding.websockets", "Data binding over multiplexed WebSocket streams."),
    ("chanlite.layers", "The channel layer registry and settings."),
    ("chanlite.layers.base", "The API and rules every channel layer shares."),
    ("chanlite.layers.memory", "The in-process layer."),
    ("chanlite.layers.ipc", "The shared-memory layer (one host, many processes)."),
    ("chanlite.layers.redis", "The Redis layer (many hosts)."),
    ("chanlite.layers.redis_sentinel", "The Redis layer through Redis Sentinel (failover)."),
    ("chanlite.layers.redis_ops", "Health check and per-shard figures of a Redis layer."),
    ("chanlite.server.server", "The interface server, for embedding."),
    ("chanlite.server.config", "Server limits and timeouts."),
    ("chanlite.testing", "Test cases, clients, fake clock, live server."),
]

SKIP_ROOT = {"DEFAULT_CHANNEL_LAYER", "__version__"}


def _setup_django() -> None:
    from django.conf import settings

    if not settings.configured:
        settings.configure(
            INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.auth",
                            "django.contrib.sessions", "chanlite"],
            DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
        )
    import django

    django.setup()


def _signature(obj: object) -> str:
    try:  # resolve string annotations (``from __future__ import annotations``)
        return str(inspect.signature(obj, eval_str=True))  # type: ignore[arg-type]
    except Exception:  # a name only imported under TYPE_CHECKING
        pass
    try:
        return str(inspect.signature(obj))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return "(...)"


def _doc(obj: object) -> str:
    return inspect.getdoc(obj) or "*(no docstring)*"


def _members(cls: type) -> list[tuple[str, object]]:
    """Public methods and properties defined on ``cls`` itself (not inherited)."""
    found = []
    # Private bases (``_Sendable``) hold public methods such as ``send``.
    namespace: dict[str, object] = {}
    for base in reversed(cls.__mro__):
        if base is cls or (base is not object and base.__name__.startswith("_")):
            namespace.update(vars(base))
    for name, value in namespace.items():
        if name.startswith("_"):
            continue
        if isinstance(value, (staticmethod, classmethod)):
            value = value.__func__
        if inspect.isfunction(value) or isinstance(value, property):
            found.append((name, value))
    return found


def _render_class(qual: str, cls: type) -> list[str]:
    # A mixin from a private module (e.g. layers._redis_receive) is how a
    # long class is split into files, not API: leave it out.
    bases = [b.__name__ for b in cls.__bases__ if b is not object and not (
        b.__name__.endswith("Mixin") and "._" in b.__module__)]
    head = f"### class `{qual}{_signature(cls)}`"
    lines = [head, ""]
    if bases:
        lines += [f"Bases: {', '.join(f'`{b}`' for b in bases)}", ""]
    lines += [_doc(cls), ""]
    for name, value in _members(cls):
        if isinstance(value, property):
            lines += [f"- **`{name}`** (property) — {_doc(value)}".replace("\n", "\n  "), ""]
        else:
            text = (inspect.getdoc(value) or "").replace("\n", "\n  ")
            lines += [f"- **`{name}{_signature(value)}`**" + (f" — {text}" if text else ""), ""]
    return lines


def _attribute_doc(module: object, name: str) -> str:
    """The ``#:`` comment lines right above ``name = ...`` in ``module``'s source.

    Module-level objects (signals, registries) have no docstring of their
    own, and their ``repr`` carries a memory address that changes on every
    run; the ``#:`` comment (the Sphinx convention) is their documentation.
    """
    try:
        source = inspect.getsource(module)  # type: ignore[arg-type]
    except (OSError, TypeError):
        return ""
    lines = source.splitlines()
    for node in ast.parse(source).body:
        targets = node.targets if isinstance(node, ast.Assign) else (
            [node.target] if isinstance(node, ast.AnnAssign) else [])
        if any(isinstance(t, ast.Name) and t.id == name for t in targets):
            comment: list[str] = []
            index = node.lineno - 2
            while index >= 0 and lines[index].lstrip().startswith("#:"):
                comment.insert(0, lines[index].lstrip()[2:].strip())
                index -= 1
            return " ".join(comment)
    return ""


def _alias(obj: object) -> str:
    """A type alias as written, the same on every Python version."""
    return re.sub(r"\btyping\.|\bcollections\.abc\.|\bbuiltins\.", "", repr(obj))


def _render_value(qual: str, module: object, name: str, obj: object) -> list[str]:
    """A module-level value: its type and its ``#:`` comment, never its
    ``repr`` when that is the default ``<... object at 0x...>`` (an address
    makes the file differ on every run, so ``--check`` could never pass)."""
    kind = type(obj)
    text = _attribute_doc(module, name)
    if not text and kind.__module__.startswith("chanlite"):
        text = inspect.getdoc(kind) or ""
    if isinstance(obj, (set, frozenset)):  # hash order varies by run: sort for a stable page
        shown = f"{type(obj).__name__}({sorted(obj, key=repr)!r})"
    else:
        shown = repr(obj)
    if re.search(r" at 0x[0-9a-fA-F]+>$", shown):
        shown = f"instance of `{kind.__module__}.{kind.__qualname__}`"
    else:
        shown = f"`{shown}`"
    return [f"### `{qual}`", "", shown, ""] + ([text, ""] if text else [])


def render() -> str:
    _setup_django()
    out = [
        "# API reference",
        "",
        "Generated from the docstrings by `scripts/api_docs.py` (run it after changing a",
        "public docstring or signature; `--check` tells whether this file is stale).",
        "`Channel`, `Group` and `Message` are also importable from `chanlite` itself, as",
        "`from channels import Channel, Group` was in Channels 1.x.",
        "Guides: [concepts](concepts.md), [consumers](consumers.md), [routing](routing.md),",
        "[layers](layers.md), [server](server.md), [testing](testing.md).",
        "",
    ]
    toc, body = [], []
    documented = {name for name, _ in MODULES}
    for module_name, role in MODULES:
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:  # an optional dependency is missing
            body += [f"## `{module_name}`", "", f"*(not importable here: {exc})*", ""]
            continue
        names = [n for n in getattr(module, "__all__", []) if n not in SKIP_ROOT]
        if not names:
            continue
        anchor = module_name.replace(".", "")
        toc.append(f"- [`{module_name}`](#{anchor}) — {role}")
        body += [f"## `{module_name}`", "", role, ""]
        for name in names:
            try:
                obj = getattr(module, name)
            except AttributeError:
                continue
            home = getattr(obj, "__module__", module_name)
            if home != module_name and home in documented:
                continue  # re-exported: documented where it is defined
            qual = f"{module_name}.{name}"
            if typing.get_origin(obj) is not None:  # a type alias, e.g. Callable[..., Any]
                body += [f"### `{qual}`", "", f"type alias: `{_alias(obj)}`", ""]
                text = _attribute_doc(module, name)
                body += [text, ""] if text else []
            elif inspect.isclass(obj):
                body += _render_class(qual, obj)
            elif callable(obj):
                body += [f"### `{qual}{_signature(obj)}`", "", _doc(obj), ""]
            else:
                body += _render_value(qual, module, name, obj)
    return "\n".join(out + toc + [""] + body).rstrip() + "\n"


def main() -> int:
    text = render()
    if "--check" in sys.argv:
        if not OUT.exists() or OUT.read_text() != text:
            print(f"{OUT.relative_to(ROOT)} is stale: run python scripts/api_docs.py")
            return 1
        return 0
    OUT.write_text(text)
    print(f"wrote {OUT.relative_to(ROOT)} ({len(text.splitlines())} lines)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
