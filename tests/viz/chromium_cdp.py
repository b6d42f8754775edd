"""A small Chrome DevTools Protocol client over ``--remote-debugging-pipe`` (no websocket needed).

Chromium reads NUL-terminated JSON messages on file descriptor 3 and writes them on 4. One page
per :class:`Chromium`; console messages, exceptions, dialogs and network requests are recorded so
tests can assert that a report loads cleanly, offline, and runs no injected script.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import pathlib
import queue
import shutil
import subprocess
import tempfile
import threading
import time
from typing import Any

CHROMIUM = os.environ.get("INTROSCOPE_CHROMIUM", "/usr/bin/chromium")

FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-dev-shm-usage",
    # no --disable-gpu: it turns WebGL off; Plotly's scattergl then runs on SwiftShader
    "--use-angle=swiftshader",
    "--enable-unsafe-swiftshader",
    "--remote-debugging-pipe",
)


def chromium_available() -> bool:
    """Whether the Chromium executable exists and is runnable."""
    return os.access(CHROMIUM, os.X_OK) or shutil.which(CHROMIUM) is not None


class CDPError(RuntimeError):
    """A protocol call failed or timed out."""


class Chromium:
    """Headless Chromium with one page attached; use as a context manager."""

    def __init__(self, width: int = 1280, height: int = 900, timeout: float = 60.0) -> None:
        self.timeout = timeout
        self._profile = tempfile.mkdtemp(prefix="introscope-chromium-")
        to_child_r, self._to_child = os.pipe()
        self._from_child, from_child_w = os.pipe()

        def wire() -> None:  # in the child: put the pipe ends on fds 3 and 4, inheritable
            a = fcntl.fcntl(to_child_r, fcntl.F_DUPFD, 64)
            b = fcntl.fcntl(from_child_w, fcntl.F_DUPFD, 64)
            os.dup2(a, 3)
            os.dup2(b, 4)

        self.proc = subprocess.Popen(
            [CHROMIUM, *FLAGS, f"--user-data-dir={self._profile}", "about:blank"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            close_fds=False,
            preexec_fn=wire,
        )
        os.close(to_child_r)
        os.close(from_child_w)
        self._next_id = 0
        self._lock = threading.Lock()
        self._replies: dict[int, queue.Queue] = {}
        self.events: list[dict[str, Any]] = []
        self._event_cv = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target, flatten=True)[
            "sessionId"
        ]
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.page(f"{domain}.enable")
        self.page(
            "Emulation.setDeviceMetricsOverride",
            width=width,
            height=height,
            deviceScaleFactor=1,
            mobile=False,
        )

    # ------------------------------------------------------------------ plumbing
    def _read(self) -> None:
        buf = b""
        while True:
            try:
                chunk = os.read(self._from_child, 1 << 16)
            except OSError:
                chunk = b""
            if not chunk:
                for q in list(self._replies.values()):
                    q.put({"error": {"message": "chromium exited"}})
                return
            buf += chunk
            *messages, buf = buf.split(b"\0")
            for raw in messages:
                msg = json.loads(raw)
                if "id" in msg:
                    q = self._replies.get(msg["id"])
                    if q is not None:
                        q.put(msg)
                else:
                    with self._event_cv:
                        self.events.append(msg)
                        self._event_cv.notify_all()

    def call(self, method: str, session: str | None = None, **params: Any) -> dict[str, Any]:
        """Send one command and wait for its result."""
        with self._lock:
            self._next_id += 1
            ident = self._next_id
            q: queue.Queue = queue.Queue()
            self._replies[ident] = q
        msg: dict[str, Any] = {"id": ident, "method": method, "params": params}
        if session:
            msg["sessionId"] = session
        os.write(self._to_child, json.dumps(msg).encode() + b"\0")
        try:
            reply = q.get(timeout=self.timeout)
        except queue.Empty:
            raise CDPError(f"{method}: no reply within {self.timeout} s") from None
        finally:
            self._replies.pop(ident, None)
        if "error" in reply:
            raise CDPError(f"{method}: {reply['error']}")
        return reply.get("result", {})

    def page(self, method: str, **params: Any) -> dict[str, Any]:
        """A command on the attached page."""
        return self.call(method, self.session, **params)

    def wait_event(self, method: str, since: int = 0, timeout: float | None = None) -> dict:
        """The first event ``method`` at index >= ``since`` of :attr:`events`."""
        deadline = time.monotonic() + (timeout or self.timeout)
        with self._event_cv:
            while True:
                for ev in self.events[since:]:
                    if ev.get("method") == method:
                        return ev
                left = deadline - time.monotonic()
                if left <= 0:
                    raise CDPError(f"no {method} event within {timeout or self.timeout} s")
                self._event_cv.wait(left)

    # ------------------------------------------------------------------ helpers
    def open(self, path: str | os.PathLike) -> float:
        """Load a file and wait for its load event; return seconds from navigation to load."""
        since = len(self.events)
        start = time.perf_counter()
        self.page("Page.navigate", url=pathlib.Path(path).resolve().as_uri())
        self.wait_event("Page.loadEventFired", since)
        return time.perf_counter() - start

    def evaluate(self, expression: str, await_promise: bool = False) -> Any:
        """Evaluate JavaScript in the page and return its value (JSON-able)."""
        res = self.page(
            "Runtime.evaluate",
            expression=expression,
            returnByValue=True,
            awaitPromise=await_promise,
        )
        if "exceptionDetails" in res:
            raise CDPError(f"{expression[:60]!r} threw: {res['exceptionDetails']}")
        return res["result"].get("value")

    def screenshot(self, path: str | os.PathLike, full_page: bool = False) -> None:
        """Save a PNG of the viewport (or the whole page)."""
        params: dict[str, Any] = {"format": "png"}
        if full_page:
            params["captureBeyondViewport"] = True
            size = self.page("Page.getLayoutMetrics")["cssContentSize"]
            params["clip"] = {
                "x": 0,
                "y": 0,
                "width": size["width"],
                "height": size["height"],
                "scale": 1,
            }
        data = self.page("Page.captureScreenshot", **params)["data"]
        pathlib.Path(path).write_bytes(base64.b64decode(data))

    def mouse_move(self, x: float, y: float) -> None:
        """Move the mouse to page coordinates (fires real hover events)."""
        self.page("Input.dispatchMouseEvent", type="mouseMoved", x=x, y=y)

    def problems(self) -> list[str]:
        """Console errors, uncaught exceptions, error log entries and dialogs seen so far."""
        out = []
        for ev in self.events:
            m, p = ev.get("method"), ev.get("params", {})
            if m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                out.append("console: " + " ".join(str(a.get("value")) for a in p.get("args", [])))
            elif m == "Runtime.exceptionThrown":
                out.append("exception: " + json.dumps(p.get("exceptionDetails"))[:500])
            elif m == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
                out.append("log: " + p["entry"].get("text", ""))
            elif m == "Page.javascriptDialogOpening":
                out.append("dialog: " + p.get("message", ""))
        return out

    def requests(self) -> list[str]:
        """URLs the page requested (data: URLs excluded)."""
        return [
            ev["params"]["request"]["url"]
            for ev in self.events
            if ev.get("method") == "Network.requestWillBeSent"
            and not ev["params"]["request"]["url"].startswith("data:")
        ]

    def close(self) -> None:
        try:
            self.call("Browser.close")
        except CDPError:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._to_child)
        shutil.rmtree(self._profile, ignore_errors=True)

    def __enter__(self) -> Chromium:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# Screenshots for a person to look at, only where INTROSCOPE_SCREENSHOTS names a folder
# (pathlib.Path("") is ".", which is truthy: test the string, not the path).
_SHOTS_DIR = os.environ.get("INTROSCOPE_SCREENSHOTS", "")
SHOTS = pathlib.Path(_SHOTS_DIR) if _SHOTS_DIR else None


def load_report(c: Chromium, path: Any) -> Chromium:
    """Open a report page in ``c`` and wait (60 s at most) until its script has run."""
    c.events.clear()
    c.open(path)
    deadline = time.monotonic() + 60
    while not c.evaluate("window.introscopeReady === true"):
        assert time.monotonic() < deadline, "the report script never finished"
        time.sleep(0.1)
    return c


def shot(c: Chromium, name: str) -> None:
    """Save a screenshot as ``name`` under INTROSCOPE_SCREENSHOTS, when it is set."""
    if SHOTS is not None:
        SHOTS.mkdir(parents=True, exist_ok=True)
        c.screenshot(SHOTS / name)


def hover_point(c: Chromium, trace: int = 0, point: int = 0) -> tuple[float, float]:
    """Move the mouse onto point ``point`` of the report map's trace ``trace`` and wait (10 s at
    most) for its hover event; return the mouse position."""
    c.evaluate("document.getElementById('scatter').scrollIntoView()")
    time.sleep(0.2)
    x, y = c.evaluate(
        f"""(function () {{
          var gd = document.getElementById('scatter'), r = gd.getBoundingClientRect();
          var fl = gd._fullLayout, t = gd.data[{trace}];
          return [r.left + fl._size.l + fl.xaxis.l2p(t.x[{point}]),
                  r.top + fl._size.t + fl.yaxis.l2p(t.y[{point}])];
        }})()"""
    )
    c.mouse_move(x - 4, y - 4)
    time.sleep(0.1)
    c.mouse_move(x, y)
    deadline = time.monotonic() + 10
    while c.evaluate("window.introscopeHovered === undefined"):
        assert time.monotonic() < deadline, "no plotly_hover event"
        time.sleep(0.1)
    return x, y
