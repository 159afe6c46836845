"""The Dagster UI in headless Chromium: the asset graph of this code location shows every asset.

Drives Debian's `chromium` over the DevTools protocol (python `websockets`); no browser download.
The screenshot is saved as test-artifacts/asset-graph.png (gitignored).

    pytest -m browser
"""

import base64
import contextlib
import itertools
import json
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from lakehouse_assets_tests.conftest import ASSET_NAMES
from lakehouse_assets_tests.dagster_dev import (
    LOCATION,
    REPO_ROOT,
    dagster_dev,
    stop_process_group,
)

pytestmark = pytest.mark.browser

ARTIFACTS = REPO_ROOT / "test-artifacts"
ASSETS = ASSET_NAMES
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--remote-debugging-address=127.0.0.1",
    "--remote-debugging-port=0",
    "--window-size=1600,1000",
)
RENDER_TIMEOUT = 120.0
VIEWPORT = {"width": 3600, "height": 1200}


def chromium_path() -> str:
    path = shutil.which("chromium")
    if path is None:
        pytest.fail("chromium is not installed: apt-get install -y chromium")
    return path


class DevTools:
    """A minimal DevTools-protocol session on one page."""

    def __init__(self, websocket):
        self.websocket = websocket
        self.ids = itertools.count(1)

    def send(self, method: str, **params) -> dict:
        message_id = next(self.ids)
        self.websocket.send(json.dumps({"id": message_id, "method": method, "params": params}))
        while True:  # events arrive in between; skip them
            reply = json.loads(self.websocket.recv(timeout=60))
            if reply.get("id") == message_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]

    def evaluate(self, expression: str):
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True)
        return result["result"].get("value")


@contextlib.contextmanager
def chromium_page(profile: Path) -> Iterator[DevTools]:
    """Headless Chromium with a fresh profile, in its own process group; a DevTools page session."""
    from websockets.sync.client import connect

    profile.mkdir(parents=True)
    log = profile.parent / "chromium.log"
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [chromium_path(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "about:blank"],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 60
        while not (port_file.exists() and port_file.read_text().strip()):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"chromium did not start:\n{log.read_text(errors='replace')}")
            time.sleep(0.2)
        port = int(port_file.read_text().split()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as answer:
            targets = json.load(answer)
        page = next(t for t in targets if t["type"] == "page")
        with connect(page["webSocketDebuggerUrl"], max_size=None, open_timeout=30) as websocket:
            yield DevTools(websocket)
    finally:
        stop_process_group(proc, grace=5)


def skip_welcome_dialog(page: DevTools) -> None:
    """Close the "Join the Dagster community" dialog a fresh browser profile gets."""
    page.evaluate(
        "Array.from(document.querySelectorAll('button'))"
        ".filter(b => b.innerText.trim() === 'Skip').forEach(b => b.click())"
    )


def expand_all_groups(page: DevTools) -> None:
    """The lineage view's own shortcut (Alt+E) to expand every asset group."""
    for kind in ("keyDown", "keyUp"):
        page.send(
            "Input.dispatchKeyEvent",
            type=kind, modifiers=1, key="e", code="KeyE", windowsVirtualKeyCode=69,
        )  # fmt: skip


def test_asset_graph_shows_every_asset(tmp_path):
    ARTIFACTS.mkdir(exist_ok=True)
    with dagster_dev(tmp_path / "dev") as dev, chromium_page(tmp_path / "profile") as page:
        # The lineage of this code location's assets. Wide enough that, fitted to the screen,
        # the nodes are drawn in full (name, checks, kinds) rather than as shortened labels.
        url = f"{dev.url}/asset-groups?asset-selection=code_location%3A{LOCATION}"
        page.send(
            "Emulation.setDeviceMetricsOverride", **VIEWPORT, deviceScaleFactor=1, mobile=False
        )
        page.send("Page.enable")
        page.send("Page.navigate", url=url)
        deadline = time.monotonic() + RENDER_TIMEOUT
        missing, text, pressed = list(ASSETS), "", 0.0
        while missing and time.monotonic() < deadline:
            time.sleep(2)
            skip_welcome_dialog(page)
            text = page.evaluate("document.body ? document.body.innerText : ''") or ""
            missing = [name for name in ASSETS if name not in text]
            # Groups start collapsed. Alt+E toggles; press again if a press did not expand them.
            if missing and "Materialize all" in text and time.monotonic() - pressed > 10:
                expand_all_groups(page)
                pressed = time.monotonic()
        time.sleep(2)  # let the graph finish its layout before the screenshot
        shot = page.send("Page.captureScreenshot", format="png")
        screenshot = ARTIFACTS / "asset-graph.png"
        screenshot.write_bytes(base64.b64decode(shot["data"]))
        (ARTIFACTS / "asset-graph.txt").write_text(text)
        assert not missing, f"not rendered at {url}: {missing}; page text in {ARTIFACTS}"
        assert screenshot.stat().st_size > 10_000
