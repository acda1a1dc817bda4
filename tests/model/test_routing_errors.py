"""Routing's error messages, exactly: what the user reads when a route or a
routing module is wrong must name the consumer, the file and the fix.

(The mutation run of chanlite/routing.py found these unpinned: tests that
only matched a word of each message passed with the message emptied.)
"""

from __future__ import annotations

import re
import sys
import textwrap

import pytest
from django.core.exceptions import ImproperlyConfigured

from chanlite.generic import WebsocketConsumer
from chanlite.routing import (
    Router,
    RoutingImportError,
    get_router,
    import_routing,
    include,
    reset_routers,
    route,
    route_class,
)

HERE = __name__  # "tests.model.test_routing_errors"


def a(message, **kwargs):
    pass


def b(message, **kwargs):
    pass


class CallableObject:
    """A consumer without ``__qualname__`` (instances have none)."""

    def __call__(self, message, **kwargs):
        pass

    def __repr__(self):
        return "<a callable object>"


class ModulelessCallable(CallableObject):
    __module__ = None  # type: ignore[assignment]


def error_text(excinfo) -> str:
    return str(excinfo.value)


# -- route() / route_class() / include() ------------------------------------

def test_a_non_str_channel_names_the_consumer():
    with pytest.raises(ValueError) as excinfo:
        route([42], a)
    assert error_text(excinfo) == f"route for {HERE}.a: channel must be a str, not 42"


def test_an_invalid_channel_name_names_the_consumer():
    with pytest.raises(ValueError) as excinfo:
        route("bad name", a)
    assert error_text(excinfo).startswith(f"route for {HERE}.a: ")
    assert "invalid channel name" in error_text(excinfo)


def test_a_process_specific_channel_is_not_routable():
    with pytest.raises(ValueError) as excinfo:
        route("reply!", a)
    assert error_text(excinfo) == (
        f"route for {HERE}.a on 'reply!': process-specific channels are reply channels of a "
        "server, not routable"
    )


def test_a_consumer_without_qualname_is_named_by_module_and_repr():
    with pytest.raises(ValueError) as excinfo:
        route("reply!", CallableObject())
    assert error_text(excinfo).startswith(f"route for {HERE}.<a callable object> on 'reply!'")
    with pytest.raises(ValueError) as excinfo:
        route("reply!", ModulelessCallable())
    assert error_text(excinfo).startswith("route for <a callable object> on 'reply!'")


def test_no_channel_and_not_callable():
    with pytest.raises(ValueError) as excinfo:
        route([], a)
    assert error_text(excinfo) == f"route() for {HERE}.a names no channel"
    with pytest.raises(ValueError) as excinfo:
        route("x", 42)
    assert error_text(excinfo) == (
        "route('x', ...): consumer 42 is not callable; pass a function taking "
        "(message, **kwargs) or use route_class() for a class"
    )


POSITIONAL = ("contains positional groups; only named groups (?P<name>...) are allowed (they "
              "become consumer kwargs); use (?:...) for a group that captures nothing")


@pytest.mark.parametrize("pattern", [r"^/c/([^/]+)/$", re.compile(r"^/c/([^/]+)/$")])
def test_a_positional_group_is_refused_naming_filter_and_consumer(pattern):
    with pytest.raises(ValueError) as excinfo:
        route("x", a, path=pattern)
    assert error_text(excinfo) == f"route filter path='^/c/([^/]+)/$' for {HERE}.a {POSITIONAL}"


def test_an_include_filter_error_says_include_and_shows_the_routing():
    with pytest.raises(ValueError) as excinfo:
        include([route("x", a)], path=r"^(a)")
    assert error_text(excinfo) == (
        f"include filter path='^(a)' for [<Route ['x'] -> {HERE}.a >] {POSITIONAL}"
    )


def test_a_filter_that_is_no_regex():
    with pytest.raises(ValueError) as excinfo:
        route("x", a, path=42)
    assert error_text(excinfo) == (
        f"route filter path=42 for {HERE}.a must be a regex string like r'^/chat/$' or a "
        "compiled pattern"
    )


def test_route_class_by_dotted_path_keeps_its_filters():
    entry = route_class("chanlite.generic.WebsocketConsumer", path=r"^/live/")
    assert entry.consumer is WebsocketConsumer
    assert entry.channels == set(WebsocketConsumer.channel_names())
    assert entry.match("websocket.connect", {"path": "/live/"}) == (WebsocketConsumer, {})
    assert entry.match("websocket.connect", {"path": "/other/"}) is None


def test_route_class_of_a_function_says_what_to_use():
    with pytest.raises(ValueError) as excinfo:
        route_class(a)
    assert error_text(excinfo) == (
        f"route_class({HERE}.a): the class has no channel_names(); subclass "
        "chanlite.generic.BaseConsumer, or use route() for a function"
    )


def test_reprs_show_channels_consumer_and_filters():
    entry = route("websocket.connect", a, path=r"^/x", query_string=r"^q")
    assert repr(entry) == f"<Route ['websocket.connect'] -> {HERE}.a path='^/x' query_string='^q'>"
    assert repr(include([entry, entry], path=r"^/p")) == "<Include 2 entries ['path']>"
    expected = "<Router channels=['b.y', 'websocket.connect']>"
    assert repr(Router([entry, route("b.y", b)])) == expected


def test_add_route_appends_validates_and_recomputes_channels():
    router = Router([route("a.x", a)])
    router.add_route(route("b.y", b))
    assert router.channels == {"a.x", "b.y"}
    assert router.match("b.y", {}) == (b, {})
    with pytest.raises(ImproperlyConfigured, match="did you mean route"):
        router.add_route(("c.z", a))
    assert router.channels == {"a.x", "b.y"}
    assert router.match("c.z", {}) is None


# -- import_routing: the routing module ------------------------------------

@pytest.fixture
def package(tmp_path, monkeypatch):
    """A throw-away package ``tpin_routing`` whose modules each test writes."""
    root = tmp_path / "tpin_routing"
    root.mkdir()
    (root / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))

    def write(name: str, source: str):
        path = root / f"{name}.py"
        path.write_text(textwrap.dedent(source))
        return str(path)

    yield write
    for name in [n for n in sys.modules if n == "tpin_routing" or n.startswith("tpin_routing.")]:
        del sys.modules[name]


@pytest.mark.parametrize("path", ["norouting", "norouting."])
def test_a_path_without_a_dot_says_what_a_path_looks_like(path):
    with pytest.raises(ImproperlyConfigured) as excinfo:
        import_routing(path)
    assert error_text(excinfo) == (
        f"routing {path!r} is not a dotted path; use e.g. 'myproject.routing.channel_routing'"
    )


def test_a_missing_package_says_which_file_to_create():
    with pytest.raises(RoutingImportError) as excinfo:
        import_routing("tpin_nowhere.routing.channel_routing")
    assert error_text(excinfo) == (
        "cannot import routing 'tpin_nowhere.routing.channel_routing': there is no module "
        "'tpin_nowhere'. Create tpin_nowhere/routing.py with a list named 'channel_routing', or "
        "fix the dotted path (e.g. 'myproject.routing.channel_routing')"
    )
    assert isinstance(excinfo.value.__cause__, ModuleNotFoundError)


def test_a_missing_module_in_an_existing_package_says_which_file_to_create(package):
    with pytest.raises(RoutingImportError) as excinfo:
        import_routing("tpin_routing.routing.channel_routing")
    assert "there is no module 'tpin_routing.routing'. Create tpin_routing/routing.py" in (
        error_text(excinfo))


def test_a_module_the_routing_imports_is_missing_reported_as_an_import_error(package):
    filename = package("needs", "import tpin_not_installed\nchannel_routing = []\n")
    with pytest.raises(RoutingImportError) as excinfo:
        import_routing("tpin_routing.needs.channel_routing")
    assert error_text(excinfo) == (
        "cannot import routing 'tpin_routing.needs.channel_routing': importing "
        "'tpin_routing.needs' raised ModuleNotFoundError: No module named 'tpin_not_installed'"
    )
    assert excinfo.value.filename == filename


def test_an_error_while_importing_names_the_file_of_the_failing_line(package):
    helper = package("helper", "import os\n\ndef build():\n    return os.getcwdd()\n")
    package("raises", "from tpin_routing import helper\nchannel_routing = helper.build()\n")
    with pytest.raises(RoutingImportError) as excinfo:
        import_routing("tpin_routing.raises.channel_routing")
    assert error_text(excinfo) == (
        "cannot import routing 'tpin_routing.raises.channel_routing': importing "
        "'tpin_routing.raises' raised AttributeError: module 'os' has no attribute 'getcwdd'. "
        "Did you mean: 'getcwd'?"
    )
    assert excinfo.value.filename == helper, "the file to fix is where the line failed"
    assert isinstance(excinfo.value.__cause__, AttributeError)


def test_an_attribute_typo_suggests_the_public_name(package):
    filename = package("good", "_channel_routnig = None\nchannel_routing = []\n")
    with pytest.raises(RoutingImportError) as excinfo:
        import_routing("tpin_routing.good.channel_routnig")
    assert error_text(excinfo) == (
        "cannot import routing 'tpin_routing.good.channel_routnig': module 'tpin_routing.good' "
        "has no attribute 'channel_routnig'. Did you mean 'channel_routing'?"
    )
    assert excinfo.value.filename == filename
    assert excinfo.value.__cause__ is None
    with pytest.raises(RoutingImportError) as excinfo:
        import_routing("tpin_routing.good.zzz")
    assert error_text(excinfo) == (
        "cannot import routing 'tpin_routing.good.zzz': module 'tpin_routing.good' has no "
        "attribute 'zzz'."
    )


# -- get_router: errors of the configured ROUTING -----------------------------

@pytest.fixture
def routing_setting(settings):
    def configure(routing):
        reset_routers()
        settings.CHANNEL_LAYERS = {
            "default": {"BACKEND": "chanlite.layers.memory.InMemoryChannelLayer",
                        "ROUTING": routing},
        }
    yield configure
    reset_routers()


def test_get_router_import_error_names_the_setting_and_keeps_file_and_cause(
        package, routing_setting):
    filename = package("boom", "raise RuntimeError('typo in routing')\n")
    routing_setting("tpin_routing.boom.channel_routing")
    with pytest.raises(RoutingImportError) as excinfo:
        get_router()
    assert error_text(excinfo) == (
        "CHANNEL_LAYERS['default']['ROUTING']: cannot import routing "
        "'tpin_routing.boom.channel_routing': importing 'tpin_routing.boom' raised "
        "RuntimeError: typo in routing"
    )
    assert excinfo.value.filename == filename
    assert isinstance(excinfo.value.__cause__, RuntimeError)


def test_get_router_invalid_route_names_the_setting(routing_setting):
    routing_setting({"reply!": a})
    with pytest.raises(ImproperlyConfigured) as excinfo:
        get_router()
    assert error_text(excinfo) == (
        f"CHANNEL_LAYERS['default']['ROUTING'] is invalid: route for {HERE}.a on 'reply!': "
        "process-specific channels are reply channels of a server, not routable"
    )


def test_reset_routers_of_an_alias_never_built_is_fine():
    reset_routers("tpin-never-built")


def test_a_syntax_error_shows_the_line_and_the_caret(package):
    filename = package("broken", "channel_routing = [\n    route(\n")
    with pytest.raises(RoutingImportError) as excinfo:
        import_routing("tpin_routing.broken.channel_routing")
    text = error_text(excinfo)
    assert text.startswith(
        "cannot import routing 'tpin_routing.broken.channel_routing': importing "
        f"'tpin_routing.broken' raised File \"{filename}\", line 2\n")
    assert text.endswith("SyntaxError: '(' was never closed")
    assert "XX" not in text and "\n    route(\n" in text
    assert excinfo.value.filename == filename, excinfo.value.filename


def test_an_attribute_error_without_a_name_is_reported_as_raised(package):
    package("custom", "raise AttributeError('the settings object is not ready')\n")
    with pytest.raises(RoutingImportError) as excinfo:
        import_routing("tpin_routing.custom.channel_routing")
    assert error_text(excinfo).endswith(
        "raised AttributeError: the settings object is not ready")


def test_a_namespace_package_without_the_list_has_no_file_to_name(tmp_path, monkeypatch):
    (tmp_path / "tpin_namespace").mkdir()  # no __init__.py: a namespace package, no __file__
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        with pytest.raises(RoutingImportError) as excinfo:
            import_routing("tpin_namespace.channel_routing")
    finally:
        sys.modules.pop("tpin_namespace", None)
    assert error_text(excinfo) == (
        "cannot import routing 'tpin_namespace.channel_routing': module 'tpin_namespace' has "
        "no attribute 'channel_routing'."
    )
    assert getattr(excinfo.value, "filename", None) is None


def test_a_layer_without_routing_says_what_to_add(routing_setting):
    routing_setting(None)
    with pytest.raises(ImproperlyConfigured) as excinfo:
        get_router()
    assert error_text(excinfo) == (
        "CHANNEL_LAYERS['default'] has no 'ROUTING'; add 'ROUTING': "
        "'myproject.routing.channel_routing' (a list of route() entries)"
    )


def test_code_run_by_exec_in_the_routing_module_names_the_routing_module(package):
    """Frames and syntax errors of exec'd strings ("<string>") are no file to
    fix: the file named is the routing module that ran them."""
    runtime = package("execs", "exec(\"raise RuntimeError('from exec')\")\n")
    with pytest.raises(RoutingImportError) as excinfo:
        import_routing("tpin_routing.execs.channel_routing")
    assert error_text(excinfo).endswith("raised RuntimeError: from exec")
    assert excinfo.value.filename == runtime
    syntax = package("execs_syntax", "exec('channel_routing = [')\n")
    with pytest.raises(RoutingImportError) as excinfo:
        import_routing("tpin_routing.execs_syntax.channel_routing")
    assert excinfo.value.filename == syntax


def test_a_builtin_module_without_the_list_has_no_file_to_name():
    with pytest.raises(RoutingImportError) as excinfo:
        import_routing("sys.channel_routing")
    assert error_text(excinfo) == (
        "cannot import routing 'sys.channel_routing': module 'sys' has no attribute "
        "'channel_routing'."
    )
    assert getattr(excinfo.value, "filename", None) is None


def test_every_filter_applies_compiled_bytes_or_str():
    entry = route("http.request", a, path=re.compile(r"^/a"), query_string=b"^q=(?P<q>\\w+)",
                  method="^GET$")
    assert entry.match("http.request", {"path": "/a", "query_string": b"q=1",
                                        "method": "GET"}) == (a, {"q": "1"})
    assert entry.match("http.request", {"path": "/a", "query_string": b"x=1",
                                        "method": "GET"}) is None
    assert entry.match("http.request", {"path": "/a", "query_string": b"q=1",
                                        "method": "POST"}) is None


@pytest.mark.parametrize(("routing", "shown"), [
    (42, "42 is a int"),
    ("tests.model.routing_fixtures.not_a_list", "'tests.model.routing_fixtures.not_a_list' is a "),
])
def test_a_routing_that_is_no_list_says_what_it_is(routing, shown):
    with pytest.raises(ImproperlyConfigured) as excinfo:
        Router(routing)
    assert error_text(excinfo).startswith(f"routing {shown}")
    assert error_text(excinfo).endswith(
        "; it must be a list of route()/route_class()/include() entries (or a dotted path to one)")


@pytest.mark.parametrize(("entry", "hint"), [
    (42, ""),
    (("websocket.connect", a), " (a tuple: did you mean route(channel, consumer)?)"),
    (WebsocketConsumer, " (a class: did you mean route_class(WebsocketConsumer)?)"),
])
def test_a_bad_entry_is_named_with_its_index_and_a_hint(entry, hint):
    routing = [route("x", a), entry]
    with pytest.raises(ImproperlyConfigured) as excinfo:
        Router(routing)
    assert error_text(excinfo) == (
        f"entry 1 of routing {routing!r:.80} is {entry!r:.80}{hint}; every entry must be "
        "route(), route_class() or include()"
    )


def test_a_router_can_be_the_routing_of_another():
    inner = Router([route("x", a), route("y", b)])
    outer = Router(inner)
    assert outer.channels == {"x", "y"} and outer.match("y", {}) == (b, {})


def test_get_router_of_a_missing_module_has_no_file_to_name(routing_setting):
    routing_setting("tpin_nowhere.routing.channel_routing")
    with pytest.raises(RoutingImportError) as excinfo:
        get_router()
    assert error_text(excinfo).startswith(
        "CHANNEL_LAYERS['default']['ROUTING']: cannot import routing "
        "'tpin_nowhere.routing.channel_routing': there is no module 'tpin_nowhere'.")
    assert getattr(excinfo.value, "filename", None) is None
