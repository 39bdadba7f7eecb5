"""The conversation as one static, self-contained HTML file (for sharing a `make demo` run).

The file is the live page with its stylesheet and script inlined and the final snapshot
embedded as JSON; the script renders that instead of connecting. It loads nothing from
anywhere, so it opens from disk, from a mail attachment or from a CI artifact alike.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

from pipeline.view.server import static_file


def _inline_json(data: dict[str, Any]) -> str:
    # "<" escaped so no text in the conversation can close the <script> element
    return json.dumps(data, separators=(",", ":")).replace("<", "\\u003c")


def render(snapshot: dict[str, Any], saved: float | None = None) -> str:
    """The page with `snapshot` (from :meth:`ViewState.snapshot`) built in."""
    page = static_file("index.html").decode()
    css = static_file("view.css").decode()
    js = static_file("view.js").decode().replace("</script", "<\\/script")
    stamp = time.strftime("%Y-%m-%d %H:%M", time.localtime(saved or time.time()))
    data = (f'<script id="snapshot" type="application/json" data-saved="{stamp}">'
            f"{_inline_json(snapshot)}</script>")
    page = page.replace('<link rel="stylesheet" href="view.css">', f"<style>\n{css}</style>")
    return page.replace('<script src="view.js"></script>', f"{data}\n<script>\n{js}</script>")


_SNAPSHOT = re.compile(r'<script id="snapshot" type="application/json"[^>]*>(.*?)</script>', re.S)


def read(path: str | Path) -> dict[str, Any]:
    """The snapshot built into a page written by :func:`write` (for tests and tools)."""
    found = _SNAPSHOT.search(Path(path).read_text(encoding="utf-8"))
    if found is None:
        raise ValueError(f"{path} is not a page saved by the live view")
    return json.loads(found.group(1))


def write(snapshot: dict[str, Any], path: str | Path) -> Path:
    """Write the page to `path` (parent folders made); return the path."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render(snapshot), encoding="utf-8")
    return out
