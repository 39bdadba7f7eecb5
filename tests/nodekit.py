"""Helpers to drive nodes with dora.testing.MockNode (which keeps outputs but not metadata)."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
from dora.testing import MockNode

from pipeline.messages import Message


class RecordingNode(MockNode):
    """MockNode that also records every output's metadata, in send order."""

    def __init__(self, events: list[dict[str, Any]], **kw: Any) -> None:
        super().__init__(events, **kw)
        self.sent: list[tuple[str, pa.Array, dict[str, Any]]] = []
        self.taken: list[dict[str, Any]] = []  # the events the node read, in order

    def send_output(self, output_id: str, data: Any, metadata: dict[str, Any] | None = None) -> None:
        super().send_output(output_id, data, metadata)
        self.sent.append((output_id, data, dict(metadata or {})))

    def next(self, timeout: float | None = None) -> dict[str, Any] | None:
        event = super().next(timeout)
        if event is not None:
            self.taken.append(event)
        return event

    def of(self, output_id: str) -> list[tuple[pa.Array, dict[str, Any]]]:
        return [(v, meta) for oid, v, meta in self.sent if oid == output_id]

    def messages(self, output_id: str, cls: type[Message]) -> list[Any]:
        """The outputs sent on `output_id`, decoded as the contract says (`cls`)."""
        return [cls.from_dora(v, meta) for v, meta in self.of(output_id)]


def ev(input_id: str, msg: Message | pa.Array, **meta: Any) -> dict[str, Any]:
    """A dora INPUT event carrying `msg` on input `input_id`.

    Pass a message of the contract; a raw (payload, **metadata) is for tests of what a node
    does with a message that breaks the contract.
    """
    if isinstance(msg, Message):
        value, meta = msg.to_dora()
    else:
        value = msg
    return {"type": "INPUT", "id": input_id, "value": value, "metadata": meta}


def closed(input_id: str) -> dict[str, Any]:
    return {"type": "INPUT_CLOSED", "id": input_id}


def control(kind: str, node_id: str) -> dict[str, Any]:
    """A dora NODE_RESTARTED / NODE_FAILED event about upstream node `node_id`."""
    return {"type": kind, "id": node_id}
