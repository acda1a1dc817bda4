"""Re-apply a few mutants that tests are known to kill, and check they still do.

The full mutation run (``nox -s mutation``) takes an hour, so CI cannot run
it; this ratchet keeps the most important kills from silently regressing
(a test weakened, renamed or deleted). Each entry patches one function's
source in this process, runs the killing test with ``pytest.main`` and
expects it to fail, then restores the function. Every killing test is first
run unpatched and must pass, or a failure would prove nothing. One process,
one Django start-up: a few seconds of CPU in all.

Only patch functions the killing test reaches through their module or class
(private helpers, methods): a test that did ``from module import function``
keeps the unpatched object (mutmut's trampolines do not have that limit).

Run as ``python -m tests.toolkit.mutation_ratchet`` (tests/toolkit/test_mutation_ratchet.py
does, in a subprocess, so the patches never touch the test session).
"""

from __future__ import annotations

import importlib
import inspect
import sys
import textwrap
from dataclasses import dataclass


@dataclass(frozen=True)
class Mutant:
    module: str
    function: str  # "name" or "Class.name"
    old: str  # exact text in the function's source
    new: str
    test: str  # pytest node id that must fail with the mutant
    why: str  # the behaviour the test pins

    def label(self) -> str:
        return f"{self.module}.{self.function}: {self.old!r} -> {self.new!r}"


MUTANTS = [
    Mutant("chanlite.ordering", "_release", 'content.pop(_ORIGIN_KEY, None) or "websocket.receive"',
           'content.pop(_ORIGIN_KEY, None) and "websocket.receive"',
           "tests/model/test_ordering.py::test_a_released_message_goes_back_to_its_own_channel_without_the_marker",
           "a parked disconnect goes back to websocket.disconnect"),
    Mutant("chanlite.ordering", "_park", 'if _runnable(int(message["order"]), next_order, slight):',
           'if _runnable(int(message["order"]), next_order, None):',
           "tests/model/test_ordering.py::test_slight_parked_message_is_released_if_connect_ran_while_parking",
           "the parking race under slight ordering"),
    Mutant("chanlite.ordering", "_release", "if not slight:", "if slight:",
           "tests/model/test_ordering.py::test_slight_connect_releases_every_parked_frame_at_once",
           "slight ordering releases every parked frame at connect"),
    Mutant("chanlite.layers.memory", "InMemoryChannelLayer._pop_locked", "if expires > now:",
           "if expires >= now:",
           "tests/layers/test_layers_base.py::test_expired_messages_are_never_delivered",
           "a message is not delivered at exactly its expiry"),
    Mutant("chanlite.routing", "_failing_file", "return files[-1] if files else None",
           "return files[0] if files else None",
           "tests/model/test_routing_errors.py::test_an_error_while_importing_names_the_file_of_the_failing_line",
           "RoutingImportError names the file of the failing line"),
    Mutant("chanlite.testing.websocket", "WSClient.receive",
           # (indented as in the dedented method source)
           "        raise AssertionError(\n            f\"the reply text is not JSON",
           "        return text\n"
           "        raise AssertionError(\n            f\"the reply text is not JSON",
           "tests/toolkit/test_testing_reply_checks.py::"
           "test_receive_of_text_that_is_not_json_fails_pointing_at_json_false",
           "WSClient.receive fails on text that is not JSON"),
    Mutant("chanlite.ordering", "_park", "immediately=False, next_order=next_order",
           "immediately=True, next_order=next_order",
           "tests/model/test_ordering.py::test_a_self_released_frame_waits_for_room_in_a_full_channel",
           "a frame released after the parking race is a deferred requeue"),
    Mutant("chanlite.server.ws_session", "WebSocketSession._feed",
           "ws.receive(data, max_messages=0)", "ws.receive(data, max_messages=1)",
           "tests/server/test_ws_session_unit.py::"
           "test_bytes_read_after_back_pressure_paused_reading_wait_as_bytes_and_arrive_in_order",
           "bytes read while back-pressure blocks are kept, not parsed and dropped"),
    Mutant("chanlite.layers.memory", "InMemoryChannelLayer._register",
           "waiter.registered = True", "waiter.registered = False",
           "tests/layers/test_layers_memory.py::"
           "test_a_timed_out_receiver_unregisters_and_does_not_swallow_the_next_wake_up",
           "a timed-out receiver leaves the queue's list of receivers"),
    Mutant("chanlite.server.http_session", "HTTPSession._on_reject",
           "    self.outbox.discard()\n", "",  # (indented as in the dedented method)
           "tests/server/test_http_session_unit.py::"
           "test_a_request_rejected_while_its_http_request_waits_for_room_is_never_sent",
           "a request refused while it waits for room never reaches a consumer"),
    Mutant("chanlite.server.http_session", "HTTPSession._response_done",
           "if len(self.answered) > 64:", "if len(self.answered) > 65:",
           "tests/server/test_http_session_unit.py::"
           "test_the_65th_answered_request_sends_the_first_its_http_disconnect",
           "a long keep-alive connection keeps at most 64 answered requests"),
    Mutant("chanlite.server.http_session", "HTTPSession._send_body_chunk",
           "        self._close_body_channel()\n", "",
           "tests/server/test_http_session_unit.py::"
           "test_a_body_chunk_too_large_for_the_layer_answers_503",
           "a consumer reading a body the layer refused hears closed at once"),
    Mutant("chanlite.layers.base", "BaseChannelLayer.receive",
           "max(0.0, deadline - time.monotonic())", "max(1.0, deadline - time.monotonic())",
           "tests/layers/test_layers_base.py::"
           "test_after_dropping_a_forged_entry_a_receive_waits_only_what_is_left_of_its_timeout",
           "a forged entry does not extend a receive's timeout"),
]


def _patch(mutant: Mutant):
    """Replace the function by one compiled from its mutated source; return an undo."""
    module = importlib.import_module(mutant.module)
    owner_name, _, name = mutant.function.rpartition(".")
    owner = getattr(module, owner_name) if owner_name else module
    original = inspect.getattr_static(owner, name)
    source = textwrap.dedent(inspect.getsource(original))
    if source.count(mutant.old) != 1:
        raise SystemExit(f"ratchet out of date: {mutant.label()} does not match "
                         f"{mutant.module}.{mutant.function} exactly once; update MUTANTS")
    namespace = dict(vars(module))
    if owner_name:  # zero-argument super() and __class__ need the class cell
        namespace["__class__"] = owner
    code = compile(source.replace(mutant.old, mutant.new), inspect.getsourcefile(original), "exec")
    exec(code, namespace)
    setattr(owner, name, namespace[name])
    return lambda: setattr(owner, name, original)


def _run(test: str, quiet: bool = False) -> int:
    import pytest

    output = ["-qq", "--tb=no"] if quiet else ["-q", "--tb=short"]
    return int(pytest.main([*output, "-p", "no:randomly", "-p", "no:cacheprovider",
                            "--no-header", "-o", "addopts=", test]))


def main() -> int:
    problems = []
    tests = sorted({m.test for m in MUTANTS})
    for test in tests:
        if _run(test) != 0:
            problems.append(f"{test} fails WITHOUT a mutant: fix it first")
    if not problems:
        for mutant in MUTANTS:
            undo = _patch(mutant)
            try:
                if _run(mutant.test, quiet=True) != 1:
                    problems.append(f"SURVIVED {mutant.label()}: {mutant.test} no longer pins "
                                    f"{mutant.why}")
            finally:
                undo()
    print("\n".join(problems) if problems else f"ratchet: all {len(MUTANTS)} mutants killed")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
