"""A real headless browser for tests: Debian's chromium, driven over the DevTools protocol.

`--remote-debugging-pipe` speaks the protocol on file descriptors 3 (to chromium) and 4
(from it), one JSON message per NUL-terminated chunk, so no WebSocket client is needed.
An open Server-Sent Events stream keeps `--dump-dom` with a virtual-time budget waiting
forever, hence the protocol.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import select
import shutil
import subprocess
import tempfile
from typing import Any

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run",
         "--disable-extensions", "--mute-audio", "--remote-debugging-pipe"]


def chromium_path() -> str | None:
    return shutil.which("chromium")


class BrowserError(RuntimeError):
    pass


class Chromium:
    """One headless chromium with one page; :meth:`call` sends a DevTools command."""

    def __init__(self, timeout_s: float = 60.0) -> None:
        exe = chromium_path()
        if exe is None:
            raise BrowserError("chromium is not installed (apt-get install chromium)")
        self.timeout_s = timeout_s
        self.profile = tempfile.mkdtemp(prefix="view-chromium-")
        to_r, self._to_w = os.pipe()
        self._from_r, from_w = os.pipe()
        # chromium reads commands on fd 3 and writes replies on fd 4: the child's ends are
        # moved above 10 first so that putting them on 3 and 4 cannot overwrite each other
        child_r = fcntl.fcntl(to_r, fcntl.F_DUPFD, 10)
        child_w = fcntl.fcntl(from_w, fcntl.F_DUPFD, 10)
        for fd in (to_r, from_w):
            os.close(fd)

        def wire() -> None:
            os.dup2(child_r, 3)
            os.dup2(child_w, 4)

        self.proc = subprocess.Popen(
            [exe, *FLAGS, f"--user-data-dir={self.profile}", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            pass_fds=(3, 4, child_r, child_w), preexec_fn=wire,
        )
        os.close(child_r)
        os.close(child_w)
        self._buf = b""
        self._events: list[str] = []  # methods of the events seen since the last navigation
        self._next_id = 0
        self.session = ""
        targets = self.call("Target.getTargets")["targetInfos"]
        page = next(t for t in targets if t["type"] == "page")
        self.session = self.call("Target.attachToTarget", targetId=page["targetId"],
                                 flatten=True)["sessionId"]

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        self._next_id += 1
        msg: dict[str, Any] = {"id": self._next_id, "method": method, "params": params}
        if self.session:
            msg["sessionId"] = self.session
        os.write(self._to_w, json.dumps(msg).encode() + b"\0")
        while True:
            reply = self._read()
            if "method" in reply:
                self._events.append(reply["method"])
            elif reply.get("id") == self._next_id:
                if "error" in reply:
                    raise BrowserError(f"{method}: {reply['error']}")
                return reply.get("result", {})

    def _read(self) -> dict[str, Any]:
        while b"\0" not in self._buf:
            ready, _, _ = select.select([self._from_r], [], [], self.timeout_s)
            if not ready:
                raise BrowserError(f"chromium sent nothing for {self.timeout_s:g} s")
            chunk = os.read(self._from_r, 65536)
            if not chunk:
                raise BrowserError("chromium closed the DevTools pipe")
            self._buf += chunk
        raw, self._buf = self._buf.split(b"\0", 1)
        return json.loads(raw)

    def _wait_event(self, method: str) -> None:
        while method not in self._events:
            reply = self._read()
            if "method" in reply:
                self._events.append(reply["method"])

    def open(self, url: str) -> None:
        """Load `url` and return once its load event fired."""
        self.call("Page.enable")
        self._events.clear()
        self.call("Page.navigate", url=url)
        self._wait_event("Page.loadEventFired")

    def reload(self) -> None:
        self._events.clear()
        self.call("Page.reload", ignoreCache=True)
        self._wait_event("Page.loadEventFired")

    def wait_for(self, condition_js: str, timeout_ms: int = 20000) -> Any:
        """Wait (in the page, on DOM changes) until `condition_js` is truthy; return its value.

        `condition_js` is an expression; the page's text is in the error when it never holds.
        """
        script = f"""new Promise((resolve, reject) => {{
          const check = () => {{ try {{ return ({condition_js}); }} catch (e) {{ return null; }} }};
          const done = (v) => {{ obs.disconnect(); clearTimeout(timer); resolve(JSON.stringify(v)); }};
          const obs = new MutationObserver(() => {{ const v = check(); if (v) done(v); }});
          const timer = setTimeout(() => {{ obs.disconnect();
            reject(new Error('condition never held; page: ' +
                             (document.body ? document.body.innerText : '(no body)'))); }},
            {timeout_ms});
          obs.observe(document, {{subtree: true, childList: true, characterData: true,
                                  attributes: true}});
          const v = check(); if (v) done(v);
        }})"""
        res = self.call("Runtime.evaluate", expression=script, awaitPromise=True,
                        returnByValue=True)
        if "exceptionDetails" in res:
            raise BrowserError(res["exceptionDetails"].get("exception", {}).get(
                "description", str(res["exceptionDetails"])))
        return json.loads(res["result"]["value"])

    def close(self) -> None:
        self.session = ""  # Browser.close is a browser-level command
        with contextlib.suppress(BrowserError):  # it may close the pipe before replying
            self.call("Browser.close")
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._to_w)
        os.close(self._from_r)
        shutil.rmtree(self.profile, ignore_errors=True)
