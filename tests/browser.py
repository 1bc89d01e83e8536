"""Debian's headless Chromium, driven over the DevTools protocol, to look at the Visdom page as a
person's browser shows it: what each window holds once the page's own scripts have drawn it,
where the windows sit, and a screenshot.

Visdom's client depends on websocket-client, which is all the protocol needs."""

from __future__ import annotations

import base64
import itertools
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import websocket

BROWSERS = ("chromium", "chromium-browser", "google-chrome")

# Every window on the page: its title, box, the plot's traces (as plotly holds them after drawing)
# or the text pane's figures, and whether each figure's image decoded.
PROBE = r"""
(() => {
  const panes = [...document.querySelectorAll('.react-grid-item')].map(el => {
    const r = el.getBoundingClientRect();
    const plot = el.querySelector('.js-plotly-plot');
    const figures = [...el.querySelectorAll('figure')];
    return {
      title: (el.querySelector('.bar div.pull-right') || {}).textContent || '',
      x: r.left + window.scrollX, y: r.top + window.scrollY, w: r.width, h: r.height,
      traces: plot && plot.data ? plot.data.filter(t => t.name).map(t => ({
        name: t.name, points: (t.x || []).length, type: t.type,
        colour: (t.line && t.line.color) || null})) : null,
      legend: plot ? [...plot.querySelectorAll('.legendtext')].map(t => t.textContent) : [],
      notes: plot && plot.layout ? (plot.layout.annotations || []).map(a => a.text) : [],
      area: plot && plot._fullLayout ? plot._fullLayout._size.h : null,  // the plot area's height, px
      boxes: plot ? Object.fromEntries(['legend', 'g-xtitle'].map(c => [c, plot.querySelector('.' + c)])
        .filter(([, e]) => e).map(([c, e]) => { const b = e.getBoundingClientRect();
                                                  return [c, {x: b.left, y: b.top, w: b.width, h: b.height}]; })) : {},
      axes: plot && plot.layout ? [((plot.layout.xaxis || {}).title || {}).text || '',
                                   ((plot.layout.yaxis || {}).title || {}).text || ''] : [],
      heatmap: plot && plot.data && plot.data[0] && plot.data[0].type === 'heatmap'
        ? {x: plot.data[0].x, rows: plot.data[0].z.length} : null,
      figures: figures.length,
      images: figures.filter(f => { const i = f.querySelector('img');
                                    return i && i.complete && i.naturalWidth > 0; }).length,
      captions: figures.map(f => (f.querySelector('figcaption') || {}).textContent || ''),
      text: plot ? '' : (el.querySelector('.content') || {}).textContent || '',
      injected: el.querySelectorAll('.content [data-injected]').length,
    };
  });
  return {panes, scrollWidth: (document.documentElement || {}).scrollWidth || 0, innerWidth: window.innerWidth,
          connected: !!document.querySelector('.btn-success')};
})()
"""


# Every plot's named traces with their values, by window title, as plotly holds them after drawing
TRACES = r"""
(() => Object.fromEntries([...document.querySelectorAll('.react-grid-item')].map(el => {
  const plot = el.querySelector('.js-plotly-plot');
  const title = (el.querySelector('.bar div.pull-right') || {}).textContent || '';
  return [title, plot && plot.data ? Object.fromEntries(plot.data.filter(t => t.name).map(
    t => [t.name, [Array.from(t.x || []), Array.from(t.y || [])]])) : null];
})))()
"""


class BrowserError(Exception):
    pass


def find_chromium() -> str | None:
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    return None


# the mark of a test that opens the page in Chromium: skipped where there is none, unless CI
# (LIVETRAIN_REQUIRE_BROWSER) requires it, where the test then fails saying so
needs_chromium = pytest.mark.skipif(find_chromium() is None and not os.environ.get("LIVETRAIN_REQUIRE_BROWSER"),
                                    reason="no Chromium here: `make browser` installs Debian's chromium")
# where the browser tests leave their screenshots
ARTIFACTS = Path(os.environ.get("LIVETRAIN_ARTIFACTS", Path(__file__).parent.parent / "artifacts")) / "browser"


class Browser:
    """One headless Chromium with one page."""

    def __init__(self, width: int = 1600, height: int = 1200) -> None:
        binary = find_chromium()
        if binary is None:
            raise BrowserError("no Chromium: `make browser` installs Debian's chromium")
        self.profile = Path(tempfile.mkdtemp(prefix="lt-chromium-"))
        self.process = subprocess.Popen(
            [binary, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--disable-default-apps", "--mute-audio", "--remote-debugging-port=0",
             f"--user-data-dir={self.profile}", f"--window-size={width},{height}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self._ids = itertools.count(1)
        try:
            port = self._devtools_port()
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as resp:
                pages = [t for t in json.load(resp) if t.get("type") == "page"]
            self.socket = websocket.create_connection(pages[0]["webSocketDebuggerUrl"], timeout=30,
                                                      suppress_origin=True)
            self.call("Page.enable")
            self.call("Emulation.setDeviceMetricsOverride",
                      width=width, height=height, deviceScaleFactor=1, mobile=False)
        except Exception:
            self.close()
            raise

    def _devtools_port(self) -> int:
        deadline = time.monotonic() + 30
        assert self.process.stderr is not None
        while time.monotonic() < deadline:
            line = self.process.stderr.readline()
            if not line and self.process.poll() is not None:
                raise BrowserError(f"chromium exited at start ({self.process.returncode})")
            found = re.search(r"DevTools listening on ws://[^:]+:(\d+)/", line)
            if found:
                return int(found.group(1))
        raise BrowserError("chromium did not open its DevTools port within 30 s")

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        """Send one DevTools command and wait for its answer (events on the way are dropped)."""
        ident = next(self._ids)
        self.socket.send(json.dumps({"id": ident, "method": method, "params": params}))
        while True:
            message = json.loads(self.socket.recv())
            if message.get("id") == ident:
                if "error" in message:
                    raise BrowserError(f"{method}: {message['error']}")
                return message.get("result", {})

    def open(self, url: str) -> None:
        self.call("Page.navigate", url=url)

    def evaluate(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise BrowserError(f"script failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    def probe(self) -> dict[str, Any]:
        return self.evaluate(PROBE)

    def traces(self) -> dict[str, dict[str, list[list[float]]]]:
        """Each plot window's traces by name, (x, y), by the window's title."""
        return self.evaluate(TRACES)

    def settled(self, ready: Any, timeout: float = 60.0, quiet: float = 1.0) -> dict[str, Any]:
        """Probe until `ready(state)` holds and the windows have stopped moving for `quiet` s."""
        deadline = time.monotonic() + timeout
        last, since = None, time.monotonic()
        state: dict[str, Any] = {}
        while time.monotonic() < deadline:
            state = self.probe() or {}
            boxes = [(p["title"], p["x"], p["y"], p["w"], p["h"]) for p in state.get("panes", [])]
            if boxes != last:
                last, since = boxes, time.monotonic()
            elif ready(state) and time.monotonic() - since >= quiet:
                return state
            time.sleep(0.25)
        raise BrowserError(f"the page did not settle within {timeout:.0f} s; last seen: "
                           f"{[p['title'] for p in state.get('panes', [])]}")

    def centre(self, element: str) -> tuple[float, float]:
        """The middle of the element the JavaScript expression `element` finds, scrolled into view."""
        box = self.evaluate(f"(() => {{ const el = {element}; el.scrollIntoView({{block: 'center'}}); "
                            "const r = el.getBoundingClientRect(); return [r.left + r.width / 2, r.top + r.height / 2]; })()")
        if not box:
            raise BrowserError(f"nothing to click: {element}")
        return float(box[0]), float(box[1])

    def click(self, element: str) -> None:
        """Click the element as a person does: the mouse moved there, pressed and released."""
        x, y = self.centre(element)
        self.call("Input.dispatchMouseEvent", type="mouseMoved", x=x, y=y)
        for kind in ("mousePressed", "mouseReleased"):
            self.call("Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left", clickCount=1)

    def type(self, text: str, enter: bool = True) -> None:
        """Type into the focused field (replacing what it holds), then press Enter."""
        # Ctrl+A (select all), so that the text replaces what the field holds
        self.call("Input.dispatchKeyEvent", type="keyDown", key="a", code="KeyA", modifiers=2, commands=["selectAll"])
        self.call("Input.dispatchKeyEvent", type="keyUp", key="a", code="KeyA", modifiers=2)
        self.call("Input.insertText", text=text)
        if enter:
            self.call("Input.dispatchKeyEvent", type="keyDown", key="Enter", code="Enter", text="\r",
                      windowsVirtualKeyCode=13)
            self.call("Input.dispatchKeyEvent", type="keyUp", key="Enter", code="Enter", windowsVirtualKeyCode=13)

    def press(self, key: str, code: str, keycode: int) -> None:
        """Press and release one key in the focused element."""
        self.call("Input.dispatchKeyEvent", type="keyDown", key=key, code=code, windowsVirtualKeyCode=keycode)
        self.call("Input.dispatchKeyEvent", type="keyUp", key=key, code=code, windowsVirtualKeyCode=keycode)

    def choose(self, select: str, index: int, timeout: float = 120.0) -> None:
        """Choose option `index` of a <select> from the keyboard, an arrow key at a time. A select
        whose value its page controls (Visdom's properties pane: the server sends it back) shows
        each step only once the page drew it again: the next key waits for that. (The server sends
        a slow page no further ahead than it has drawn, dashboard/page_flow.py, so that the pane
        comes back after at most one message per window.)"""
        deadline = time.monotonic() + timeout
        while (now := int(self.evaluate(f"{select}.value"))) != index:
            self.evaluate(f"{select}.focus()")
            if now < index:
                self.press("ArrowDown", "ArrowDown", 40)
            else:
                self.press("ArrowUp", "ArrowUp", 38)
            while int(self.evaluate(f"{select}.value")) == now:
                if time.monotonic() > deadline:
                    focused = self.evaluate(f"document.activeElement === {select}")
                    raise BrowserError(f"the select did not move from option {now} towards {index} "
                                       f"(the select {'had' if focused else 'had not'} the focus)")
                time.sleep(0.05)

    def screenshot(self, path: Path) -> None:
        """The whole page, not only the window's height."""
        metrics = self.call("Page.getLayoutMetrics")
        size = metrics.get("cssContentSize") or metrics["contentSize"]
        shot = self.call("Page.captureScreenshot", format="png", captureBeyondViewport=True,
                         clip={"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1})
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(shot["data"]))

    def close(self) -> None:
        sock = getattr(self, "socket", None)
        if sock is not None:
            sock.close()
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self) -> "Browser":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def message_hook(setup: str, each: str) -> str:
    """A script for Page.addScriptToEvaluateOnNewDocument, so that it runs before the page's own:
    `setup` once, then `each` for every message of the page's sockets as it comes, before the
    page's handler, with `evt` the message and `head` its first 100 characters."""
    return setup + """
(function () {
  var desc = Object.getOwnPropertyDescriptor(WebSocket.prototype, 'onmessage');
  Object.defineProperty(WebSocket.prototype, 'onmessage', {
    configurable: true, get: desc.get,
    set: function (f) {
      desc.set.call(this, typeof f !== 'function' ? f : function (evt) {
        var head = typeof evt.data === 'string' ? evt.data.slice(0, 100) : '';
        try { """ + each + """ } catch (e) { /* not a message of the kind looked for */ }
        return f.call(this, evt);
      });
    }
  });
})();"""


def overlaps(panes: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """Pairs of windows whose boxes overlap (by more than a pixel's rounding)."""
    found = []
    for a, b in itertools.combinations(panes, 2):
        dx = min(a["x"] + a["w"], b["x"] + b["w"]) - max(a["x"], b["x"])
        dy = min(a["y"] + a["h"], b["y"] + b["h"]) - max(a["y"], b["y"])
        if dx > 1 and dy > 1:
            found.append((a["title"], b["title"]))
    return found
