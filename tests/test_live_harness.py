"""The live harness's reading of dora's log (tests/live.py): which nodes never connected."""

from __future__ import annotations

from tests.live import unconnected_nodes

# the shape of dora 1.1's log when the llm node hung before it connected (CI, stop 18)
HUNG = """\
06:02:24 DEBUG  asr: spawner spawned node with pid 30066
06:02:24 DEBUG  llm: spawner spawned node with pid 30067
06:02:24 DEBUG  llm-server: spawner spawned node with pid 30068
06:02:26 INFO   llm-server: daemon node is ready
06:02:28 stdout asr: 2026-12-04 06:02:28,061 asr INFO Whisper tiny.en ready
06:02:28 INFO   asr: daemon node is ready
"""


def test_a_node_spawned_but_never_ready_is_unconnected() -> None:
    assert unconnected_nodes(HUNG) == {"llm": 30067}


def test_all_nodes_ready_leaves_none() -> None:
    assert unconnected_nodes(HUNG + "06:02:29 INFO   llm: daemon node is ready\n") == {}
