"""Helpers to drive nodes with dora.testing.MockNode (which keeps outputs but not metadata)."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
from dora.testing import MockNode


class RecordingNode(MockNode):
    """MockNode that also records every output's metadata, in send order."""

    def __init__(self, events: list[dict[str, Any]], **kw: Any) -> None:
        super().__init__(events, **kw)
        self.sent: list[tuple[str, pa.Array, dict[str, Any]]] = []

    def send_output(self, output_id: str, data: Any, metadata: dict[str, Any] | None = None) -> None:
        super().send_output(output_id, data, metadata)
        self.sent.append((output_id, data, dict(metadata or {})))

    def of(self, output_id: str) -> list[tuple[pa.Array, dict[str, Any]]]:
        return [(v, meta) for oid, v, meta in self.sent if oid == output_id]


def ev(input_id: str, value: pa.Array, **meta: Any) -> dict[str, Any]:
    return {"type": "INPUT", "id": input_id, "value": value, "metadata": meta}


def closed(input_id: str) -> dict[str, Any]:
    return {"type": "INPUT_CLOSED", "id": input_id}
