"""Open an HTML file in headless Chromium and report what a user's browser would see (for tests).

Chromium is driven through its DevTools protocol over a websocket (tornado's client, which dask's distributed
already brings): console messages, uncaught exceptions, failed resource loads, the rendered size of every
image, and a full-page screenshot.  :func:`chromium` finds the browser, installing Debian's ``chromium`` package
when it is missing and the tests run as root (as CI does); otherwise the browser tests are skipped.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import signal
import subprocess
import tempfile
import urllib.request
from pathlib import Path

from _debian import require_program


def chromium() -> str:
    """The Chromium executable (Debian's package, installed when missing and running as root; else skipped)."""
    return require_program(("chromium", "chromium-browser", "google-chrome"), "chromium")


_IMAGES_JS = """JSON.stringify([...document.images].map(i => ({alt: i.alt, complete: i.complete,
  natural: [i.naturalWidth, i.naturalHeight], shown: [i.getBoundingClientRect().width,
  i.getBoundingClientRect().height]})))"""


async def _inspect(ws_url: str, url: str, screenshot: Path | None, timeout: float) -> dict:
    from tornado.websocket import websocket_connect

    conn = await websocket_connect(ws_url, max_message_size=256 * 1024 * 1024)
    counter = 0
    events: list[dict] = []

    async def call(method: str, **params):
        nonlocal counter
        counter += 1
        my_id = counter
        conn.write_message(json.dumps({"id": my_id, "method": method, "params": params}))
        while True:
            message = await asyncio.wait_for(conn.read_message(), timeout)
            if message is None:
                raise RuntimeError("Chromium closed the DevTools connection")
            data = json.loads(message)
            if data.get("id") == my_id:
                if "error" in data:
                    raise RuntimeError(f"{method}: {data['error']}")
                return data.get("result", {})
            events.append(data)

    for domain in ("Page", "Runtime", "Log", "Network"):
        await call(f"{domain}.enable")
    await call("Page.navigate", url=url)
    loaded = any(e.get("method") == "Page.loadEventFired" for e in events)
    while not loaded:
        message = await asyncio.wait_for(conn.read_message(), timeout)
        data = json.loads(message)
        events.append(data)
        loaded = data.get("method") == "Page.loadEventFired"
    images = json.loads((await call("Runtime.evaluate", expression=_IMAGES_JS, returnByValue=True))["result"]["value"])
    title = (await call("Runtime.evaluate", expression="document.title", returnByValue=True))["result"]["value"]
    if screenshot is not None:
        shot = await call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        screenshot.write_bytes(base64.b64decode(shot["data"]))
    conn.close()
    console = [e["params"] for e in events if e.get("method") == "Runtime.consoleAPICalled"]
    return {
        "title": title,
        "images": images,
        "console_errors": [c for c in console if c.get("type") in ("error", "assert")],
        "exceptions": [e["params"] for e in events if e.get("method") == "Runtime.exceptionThrown"],
        "log_errors": [e["params"]["entry"] for e in events
                       if e.get("method") == "Log.entryAdded" and e["params"]["entry"].get("level") == "error"],
        "failed_loads": [e["params"] for e in events if e.get("method") == "Network.loadingFailed"],
        "requests": [e["params"]["request"]["url"][:80] for e in events
                     if e.get("method") == "Network.requestWillBeSent"],
    }


def _stop_group(proc: subprocess.Popen) -> None:
    """Stop the browser and its helpers (its own process group): SIGTERM, then SIGKILL after 20 s."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:  # the whole group is gone
            break
        try:
            proc.wait(timeout=20)
            break
        except subprocess.TimeoutExpired:
            continue
    proc.wait()


def inspect_page(path: Path, screenshot: Path | None = None, *, timeout: float = 120.0) -> dict:
    """Load ``path`` (a local HTML file) in headless Chromium with the network off; what the page did."""
    exe = chromium()
    # Chromium's helper processes can still write to the profile after the browser exits: its removal is tidying,
    # and a file they leave must not fail the test
    with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as profile:
        proc = subprocess.Popen([exe, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
                                 "--disable-extensions", "--remote-debugging-port=0", f"--user-data-dir={profile}",
                                 "--window-size=1280,900", "about:blank"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
        try:
            port = None
            for line in proc.stderr:
                match = re.search(r"DevTools listening on ws://127\.0\.0\.1:(\d+)/", line)
                if match:
                    port = int(match.group(1))
                    break
            assert port, "Chromium did not start its DevTools server"
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=30) as resp:
                targets = json.loads(resp.read())
            page = next(t for t in targets if t.get("type") == "page")
            return asyncio.run(_inspect(page["webSocketDebuggerUrl"], Path(path).resolve().as_uri(), screenshot,
                                        timeout))
        finally:
            _stop_group(proc)
