"""A real headless Chromium (Debian's `chromium`) driven over the DevTools protocol, for the web
status page's tests (docs/web.md, docs/testing.md).

Chromium runs inside a test namespace (`ip netns exec`), so it reaches `provision serve` there
the way an operator's browser would. The DevTools connection is `--remote-debugging-pipe`
(JSON messages ended by NUL on file descriptors 3 and 4), not the DevTools port: that port would
listen on the namespace's own loopback, which the test process in the host namespace cannot
reach. Same protocol, same commands (Target.*, Page.*, Runtime.*, Emulation.*).

    with launch(ns, tmp_path / "chrome") as browser:
        page = browser.new_page()
        page.navigate("http://198.18.39.1:8080/")
        page.evaluate("document.title")
        page.screenshot(path)

Stopped by PID on exit (SIGTERM, then SIGKILL); the namespace's cleanup ends any child left.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import marks
from tests.support.netns import stop_process

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")


def chromium_path() -> str:
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    pytest.skip("chromium not installed (scripts/setup.sh installs Debian's chromium)")


class CdpError(RuntimeError):
    pass


class Browser:
    """One Chromium process and its DevTools pipe; commands by id, events kept per session."""

    def __init__(self, proc: subprocess.Popen, to_browser: int, from_browser: int) -> None:
        self.proc = proc
        self._out = os.fdopen(to_browser, "wb", buffering=0)
        self._in = os.fdopen(from_browser, "rb", buffering=0)
        self._next = 0
        self._lock = threading.Lock()
        self._cond = threading.Condition()
        self._replies: dict[int, dict[str, Any]] = {}
        self.events: list[dict[str, Any]] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        buf = b""
        while True:
            try:
                chunk = self._in.read(65536)
            except OSError:
                chunk = b""
            if not chunk:
                with self._cond:
                    self._replies[-1] = {"error": {"message": "chromium closed the DevTools pipe"}}
                    self._cond.notify_all()
                return
            buf += chunk
            while b"\0" in buf:
                raw, buf = buf.split(b"\0", 1)
                msg = json.loads(raw)
                with self._cond:
                    if "id" in msg:
                        self._replies[msg["id"]] = msg
                    else:
                        self.events.append(msg)
                    self._cond.notify_all()

    def send(self, method: str, session: str | None = None, timeout: float = 30, **params: Any) -> Any:
        with self._lock:
            self._next += 1
            msg_id = self._next
            msg: dict[str, Any] = {"id": msg_id, "method": method, "params": params}
            if session:
                msg["sessionId"] = session
            self._out.write(json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout
        with self._cond:
            while msg_id not in self._replies:
                if -1 in self._replies:
                    raise CdpError(f"{method}: {self._replies[-1]['error']['message']}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise CdpError(f"{method}: no answer in {timeout} s")
                self._cond.wait(left)
            reply = self._replies.pop(msg_id)
        if "error" in reply:
            raise CdpError(f"{method}: {reply['error']}")
        return reply.get("result", {})

    def wait_event(self, method: str, session: str | None, since: int, timeout: float = 30) -> dict[str, Any]:
        """The first `method` event of `session` at or after index `since` of `events`."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for e in self.events[since:]:
                    if e.get("method") == method and e.get("sessionId") == session:
                        return e
                left = deadline - time.monotonic()
                if left <= 0:
                    raise CdpError(f"no {method} in {timeout} s")
                self._cond.wait(left)

    def js_errors(self) -> list[str]:
        """Uncaught exceptions and console.error calls in any page so far."""
        out = []
        for e in self.events:
            p = e.get("params", {})
            if e.get("method") == "Runtime.exceptionThrown":
                d = p.get("exceptionDetails", {})
                out.append(str(d.get("exception", {}).get("description") or d.get("text")))
            elif e.get("method") == "Runtime.consoleAPICalled" and p.get("type") == "error":
                out.append(" ".join(str(a.get("value", a.get("description"))) for a in p.get("args", [])))
        return out

    def new_page(self, width: int = 1280, height: int = 900) -> Page:
        target = self.send("Target.createTarget", url="about:blank")["targetId"]
        session = self.send("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        page = Page(self, session)
        page.send("Page.enable")
        page.send("Runtime.enable")
        page.viewport(width, height)
        return page

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.send("Browser.close", timeout=5)
        stop_process(self.proc)
        for f in (self._out, self._in):
            with contextlib.suppress(OSError):
                f.close()


class Page:
    def __init__(self, browser: Browser, session: str) -> None:
        self.browser = browser
        self.session = session

    def send(self, method: str, timeout: float = 30, **params: Any) -> Any:
        return self.browser.send(method, self.session, timeout, **params)

    def viewport(self, width: int, height: int, mobile: bool = False, scale: float = 1) -> None:
        self.send(
            "Emulation.setDeviceMetricsOverride",
            width=width,
            height=height,
            deviceScaleFactor=scale,
            mobile=mobile,
        )

    def navigate(self, url: str, timeout: float = 30) -> None:
        """Load `url` and wait for its load event."""
        since = len(self.browser.events)
        result = self.send("Page.navigate", url=url)
        if result.get("errorText"):
            raise CdpError(f"navigate {url}: {result['errorText']}")
        self.browser.wait_event("Page.loadEventFired", self.session, since, timeout)

    def wait_load(self, since: int, timeout: float = 30) -> None:
        self.browser.wait_event("Page.loadEventFired", self.session, since, timeout)

    def evaluate(self, expression: str, timeout: float = 30) -> Any:
        """The value of a JavaScript expression in the page (DevTools' own evaluation: it runs
        also when the page's scripts are disabled). Promises are awaited."""
        result = self.send(
            "Runtime.evaluate", timeout, expression=expression, returnByValue=True, awaitPromise=True
        )
        if "exceptionDetails" in result:
            raise CdpError(f"{expression!r}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 30, interval: float = 0.2) -> Any:
        """Poll until `expression` is truthy; its value."""
        deadline = time.monotonic() + timeout
        while True:
            value = self.evaluate(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"still false after {timeout} s: {expression}")
            time.sleep(interval)

    def node(self, selector: str) -> int:
        root = self.send("DOM.getDocument", depth=0)["root"]["nodeId"]
        node_id: int = self.send("DOM.querySelector", nodeId=root, selector=selector)["nodeId"]
        if not node_id:
            raise AssertionError(f"no element {selector!r}")
        return node_id

    def type_into(self, selector: str, text: str) -> None:
        """Focus an input and type, as a user would (works with scripts disabled)."""
        self.send("DOM.focus", nodeId=self.node(selector))
        self.send("Input.insertText", text=text)

    def click(self, selector: str) -> None:
        """A real mouse click at the centre of the element."""
        node = self.node(selector)
        self.send("DOM.scrollIntoViewIfNeeded", nodeId=node)
        quad = self.send("DOM.getBoxModel", nodeId=node)["model"]["content"]
        x, y = sum(quad[0::2]) / 4, sum(quad[1::2]) / 4
        for kind in ("mousePressed", "mouseReleased"):
            self.send("Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left", clickCount=1)

    def screenshot(self, path: Path, full_page: bool = True) -> Path:
        params: dict[str, Any] = {"format": "png"}
        if full_page:
            params["captureBeyondViewport"] = True
        data = self.send("Page.captureScreenshot", **params)["data"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))
        return path


@contextlib.contextmanager
def launch(ns: Any, profile: Path) -> Iterator[Browser]:
    """Headless Chromium in namespace `ns` (a tests.support.netns.NetNS), profile in `profile`.
    As root Chromium needs --no-sandbox (its sandbox refuses to run as root)."""
    marks.require("a browser in a namespace", "browser")
    exe = chromium_path()
    profile.mkdir(parents=True, exist_ok=True)
    to_r, to_w = os.pipe()  # we write commands -> chromium reads fd 3
    from_r, from_w = os.pipe()  # chromium writes fd 4 -> we read
    argv = [
        exe,
        "--headless=new",
        "--no-sandbox",
        "--remote-debugging-pipe",
        f"--user-data-dir={profile}",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-extensions",
        "--disable-background-networking",  # nothing but the page's own requests
        "--disable-component-update",
        "--disable-sync",
        "--metrics-recording-only",
        "--mute-audio",
        "--hide-scrollbars",
        "--force-color-profile=srgb",
        "--lang=en-US",
        "about:blank",
    ]
    # fd 3 and 4 in chromium: a tiny exec wrapper moves our pipe ends there (dash cannot name an
    # fd above 9 in a redirection, and ours can be higher).
    move = (
        "import fcntl, os, sys; ends = [int(sys.argv[1]), int(sys.argv[2])];"
        " high = [fcntl.fcntl(f, fcntl.F_DUPFD, 10) for f in ends];"  # clear of 3 and 4 first
        " [os.close(f) for f in ends]; os.dup2(high[0], 3); os.dup2(high[1], 4);"
        " [os.close(f) for f in high]; os.execv(sys.argv[3], sys.argv[3:])"
    )
    shell = [sys.executable, "-c", move, str(to_r), str(from_w), *argv]
    log = open(profile / "chromium.log", "wb")  # noqa: SIM115 (closed below)
    proc = ns.popen(shell, stdout=log, stderr=subprocess.STDOUT, pass_fds=(to_r, from_w))
    os.close(to_r)
    os.close(from_w)
    browser = Browser(proc, to_w, from_r)
    try:
        browser.send("Browser.getVersion", timeout=30)
        yield browser
    except CdpError as exc:
        raise AssertionError(
            f"{exc}\nchromium log:\n{(profile / 'chromium.log').read_text()[-3000:]}"
        ) from None
    finally:
        browser.close()
        log.close()


def artefacts_dir(tmp_path: Path) -> Path:
    """Where screenshots go: $PROVISION_TEST_ARTEFACTS, or a folder under the test's tmp path."""
    base = os.environ.get("PROVISION_TEST_ARTEFACTS")
    path = Path(base) if base else tmp_path / "artefacts"
    path.mkdir(parents=True, exist_ok=True)
    return path
