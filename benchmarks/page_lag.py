"""How far a slow page falls behind the runs: livetrain's server (which paces the page's socket by
the page's acknowledgements, dashboard/page_flow.py) against a stock Visdom server, in the same run.

A page in headless Chromium, its CPU throttled (a busy laptop's page), while a writer redraws three
plot windows whole (two traces of 5,000 points, about 200 KB each, as a compare window is) three
times a second each, and a small text window every half second holding the time it was sent. The
page records, for each of those it handles, how long ago it was sent: the page's lag behind the
server. Reported: the median and the worst lag over the last half of the run, and how many of the
big windows' copies the page drew, on each server.

    .venv/bin/python -m benchmarks.page_lag [--seconds 40] [--throttle 6]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.stock_visdom import start_stock
from dashboard.server import ServerConfig, start_background
from tests.browser import Browser, message_hook
from tests.conftest import free_port

# each marker the page handles: when it was sent, when the page took it; and the big copies taken
RECORD = message_hook("window.__lag = []; window.__big = 0;", """if (head.indexOf('"id": "marker"') !== -1) {
  window.__lag.push([Number(String(JSON.parse(evt.data).content).split('=')[1]), Date.now()]);
} else if (head.indexOf('"id": "big') !== -1) {
  window.__big += 1;
}""")


def write(url: str, seconds: float) -> tuple[int, str]:
    """Redraw the big windows and the marker until `seconds` have passed: the big copies sent, and
    the last marker's time."""
    import numpy as np
    import visdom

    host, port = url.rsplit(":", 1)
    vis = visdom.Visdom(server=host, port=int(port), env="lag", raise_exceptions=True, use_incoming_socket=False)
    x = np.arange(5000, dtype=float)
    sent, start, step, marker = 0, time.monotonic(), 0, ""
    while not step or time.monotonic() - start < seconds:
        for i in range(3):
            y = np.stack([np.sin(x / 300 + step), np.cos(x / 300 + step)], axis=1)
            vis.line(Y=y, X=np.stack([x, x], axis=1), win=f"big{i}", opts={"title": f"big{i}", "width": 460,
                                                                             "height": 440})
            sent += 1
        if step % 2 == 0:
            marker = f"{time.time() * 1000:.0f}"
            vis.text(f"sent={marker}", win="marker", opts={"title": "marker"})
        step += 1
        time.sleep(max(0.0, start + step / 3 - time.monotonic()))
    return sent, marker


def measure(url: str, seconds: float, throttle: float) -> dict[str, Any]:
    with Browser(1600, 1200) as browser:
        browser.call("Page.addScriptToEvaluateOnNewDocument", source=RECORD)
        browser.call("Emulation.setCPUThrottlingRate", rate=throttle)
        write(url, 0)  # the env, with its marker, before the page opens it
        browser.open(f"{url}/env/lag")
        deadline = time.monotonic() + 60
        while not browser.evaluate("window.__lag.length") and time.monotonic() < deadline:
            time.sleep(0.2)  # the page has drawn the env: the runs start writing
        sent, last = write(url, seconds)
        deadline = time.monotonic() + 300  # the page draws what it was sent: the last marker's lag too
        while browser.evaluate("window.__lag.length ? window.__lag[window.__lag.length - 1][0] : 0") != int(last):
            if time.monotonic() > deadline:
                break
            time.sleep(0.5)
        lag = browser.evaluate("window.__lag")
        big = browser.evaluate("window.__big")
    tail = [(seen - sent_at) / 1000 for sent_at, seen in lag if sent_at >= int(last) - seconds * 500]
    return {"median": statistics.median(tail) if tail else float("nan"), "worst": max(tail, default=float("nan")),
            "markers": len(lag), "big_drawn": big, "big_sent": sent}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=40.0)
    parser.add_argument("--throttle", type=float, default=6.0, help="the page's CPU slowdown (Chromium's emulation)")
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("livetrain", "stock visdom"):
            env_dir = Path(tmp) / name.replace(" ", "-")
            if name == "livetrain":
                server = start_background(ServerConfig(port=free_port(), env_dir=env_dir))
            else:
                server = start_stock(free_port(), env_dir)
            try:
                results[name] = measure(server.config.url, args.seconds, args.throttle)
            finally:
                server.stop()
    print(f"page lag behind the server, {args.seconds:.0f} s of writing, the page's CPU throttled {args.throttle:g}x "
          "(median and worst over the second half):")
    for name, r in results.items():
        print(f"  {name:13s} median {r['median']:6.2f} s  worst {r['worst']:6.2f} s  markers {r['markers']:3d}  "
              f"big windows drawn {r['big_drawn']} of {r['big_sent']} sent")
    ours, stock = results["livetrain"], results["stock visdom"]
    if ours["median"] > 0:
        print(f"stock's median lag / livetrain's: {stock['median'] / ours['median']:.1f}x")


if __name__ == "__main__":
    main()
