"""Smoke tests for ``bench/layers.py --peers`` (bench/layer_peers.py).

Why: the peers table leads docs/performance.md; if the driver mixes up
rounds or columns, or chanlite's side of a workload stops checking what it
received, the table would be wrong without anyone noticing. The peers
themselves (channels_redis) live in another venv, so here the driver is fed
fake rounds and chanlite's own Redis workloads run for real, scaled down.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from .redis_server import SHARED_URL, shared_redis_unavailable

_BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(_BENCH))
_spec = importlib.util.spec_from_file_location("layer_peers", _BENCH / "layer_peers.py")
peers = importlib.util.module_from_spec(_spec)
sys.modules["layer_peers"] = peers
_spec.loader.exec_module(peers)  # type: ignore[union-attr]


def test_rounds_are_interleaved_and_rotated_and_land_in_their_columns(tmp_path, monkeypatch):
    calls: list[tuple[str, str]] = []

    def fake_round(python: str, impl: str, url: str) -> dict:
        calls.append((impl, python))
        n = len(calls)
        if impl == "chanlite-ipc":
            return {peers.CHANLITE: {peers.IPC_W3: 100.0 + n}, peers.MPQ: {peers.IPC_W3: 50.0}}
        column = {"chanlite-redis": peers.CHANLITE, "channels_redis-core": peers.CORE,
                  "channels_redis-pubsub": peers.PUBSUB}[impl]
        return {column: {peers.W5: float(n)}}

    monkeypatch.setattr(peers, "_subprocess_round", fake_round)
    monkeypatch.setattr(peers, "_versions", lambda python, packages: "x 1")
    impls = list(peers.IMPLS)
    record = tmp_path / "peers.json"
    table = peers.run_peers(3, "/peers/python", SHARED_URL, impls, "python bench/layers.py --peers",
                            str(record))
    # round r starts at implementation r: nobody always runs first
    assert [impl for impl, _ in calls] == impls + impls[1:] + impls[:1] + impls[2:] + impls[:2]
    # channels_redis under the peers' interpreter, chanlite under this one
    pythons = {python for impl, python in calls if impl.startswith("channels_redis")}
    assert pythons == {"/peers/python"}
    assert {python for impl, python in calls if impl.startswith("chanlite")} == {sys.executable}
    assert json.loads(record.read_text()) == table
    assert table["kind"] == "table" and table["ours"] == peers.CHANLITE
    rows = {row["figure"]: row for row in table["rows"]}
    assert rows[peers.W5]["values"][peers.CORE] == [2.0, 5.0, 12.0]  # one value per round
    assert rows[peers.IPC_W3]["values"][peers.MPQ] == [50.0, 50.0, 50.0]
    assert rows[peers.IPC_W3]["higher_is_better"] is True


def test_peers_takes_no_layer(capsys) -> None:
    import layers

    with pytest.raises(SystemExit, match="--peers takes no layer"):
        layers.main(["chanlite.layers.memory.InMemoryChannelLayer", "--peers"])


def test_chanlite_redis_side_runs_and_checks_every_message(monkeypatch) -> None:
    reason = shared_redis_unavailable()
    if reason:
        print(f"skipping: {reason}", file=sys.stderr)
        pytest.skip(reason)
    monkeypatch.setattr(peers, "W2_PAIRS", 30)
    monkeypatch.setattr(peers, "W4_ROUNDS", 20)
    monkeypatch.setattr(peers, "W5_MEMBERS", 4)
    monkeypatch.setattr(peers, "W5_SENDS", 3)
    figures = peers.run_one("chanlite-redis", SHARED_URL)[peers.CHANLITE]
    assert set(figures) == {peers.W2, peers.W4_50, peers.W4_99, peers.W5}
    assert all(value > 0 for value in figures.values()), figures
    assert figures[peers.W4_50] <= figures[peers.W4_99]
