"""The Dagster UI in headless Chromium: the asset graph of this code location shows every asset,
and the latest materialization of `churn_model_evaluation` shows its plots.

Drives Debian's `chromium` over the DevTools protocol (python `websockets`); no browser download.
One `dagster dev` and one browser serve both tests. Screenshots are saved as
test-artifacts/asset-graph.png and test-artifacts/evaluation-<plot>.png (gitignored).

    pytest -m browser
"""

import base64
import contextlib
import itertools
import json
import shutil
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from lakehouse_assets_tests.support.dagster_dev import (
    LOCATION,
    REPOSITORY,
    dagster_dev,
    wait_until_sensor_idle,
)
from lakehouse_assets_tests.support.helpers import ASSET_NAMES, PLOTS
from lakehouse_assets_tests.support.processes import REPO_ROOT, server_process

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
RUN_TIMEOUT = 300.0
VIEWPORT = {"width": 3600, "height": 1200}
PAGE_VIEWPORT = {"width": 1600, "height": 1200}


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
    port_file = profile / "DevToolsActivePort"
    cmd = [chromium_path(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "about:blank"]
    ready = lambda: port_file.exists() and port_file.read_text().strip() != ""  # noqa: E731
    log = profile.parent / "chromium.log"
    with server_process("chromium", cmd, log, ready, timeout=60, grace=5):
        port = int(port_file.read_text().split()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as answer:
            targets = json.load(answer)
        page = next(t for t in targets if t["type"] == "page")
        with connect(page["webSocketDebuggerUrl"], max_size=None, open_timeout=30) as websocket:
            yield DevTools(websocket)


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


@pytest.fixture(scope="module")
def ui(tmp_path_factory):
    """`dagster dev` and a headless Chromium page, shared by this module's tests."""
    ARTIFACTS.mkdir(exist_ok=True)
    tmp = tmp_path_factory.mktemp("browser")
    with dagster_dev(tmp / "dev") as dev, chromium_page(tmp / "profile") as page:
        yield dev, page


def wait_for(page: DevTools, expression: str, what: str, timeout: float = RENDER_TIMEOUT):
    """Evaluate `expression` until it is truthy; its value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        skip_welcome_dialog(page)
        value = page.evaluate(expression)
        if value:
            return value
        time.sleep(1)
    text = page.evaluate("document.body ? document.body.innerText : ''") or ""
    (ARTIFACTS / "last-page.txt").write_text(text)
    raise AssertionError(f"{what} within {timeout:.0f}s; page text in {ARTIFACTS}/last-page.txt")


def test_asset_graph_shows_every_asset(ui):
    dev, page = ui
    # The lineage of this code location's assets. Wide enough that, fitted to the screen,
    # the nodes are drawn in full (name, checks, kinds) rather than as shortened labels.
    url = f"{dev.url}/asset-groups?asset-selection=code_location%3A{LOCATION}"
    page.send("Emulation.setDeviceMetricsOverride", **VIEWPORT, deviceScaleFactor=1, mobile=False)
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


# The metadata row of a plot, and its "[Show Markdown]" link (the UI folds long markdown).
SHOW_PLOT = """(() => {
  const key = Array.from(document.querySelectorAll('td, div, span'))
    .find(e => e.children.length === 0 && e.textContent.trim() === 'plot_%s');
  const row = key && key.closest('tr');
  const link = row && Array.from(row.querySelectorAll('a'))
    .find(a => a.textContent.includes('Show Markdown'));
  if (link) { link.click(); return true; }
  return false;
})()"""
DIALOG_IMAGE = """(() => {
  const img = Array.from(document.querySelectorAll('.bp5-dialog img')).find(i => i.alt === '%s');
  return img && img.complete && img.naturalWidth > 0 ? [img.naturalWidth, img.naturalHeight] : null;
})()"""
CLOSE_DIALOG = """Array.from(document.querySelectorAll('.bp5-dialog button'))
  .filter(b => b.innerText.trim() === 'Close').forEach(b => b.click())"""


def test_evaluation_page_renders_its_plots(ui):
    """Materialize everything as "Materialize all" would, open the latest materialization of
    `churn_model_evaluation` (its Events tab) and open each plot: the image must decode."""
    dev, page = ui
    run = dev.client().submit_job_execution(
        "refresh_lakehouse", repository_location_name=LOCATION, repository_name=REPOSITORY
    )
    assert dev.wait_for_run(run, RUN_TIMEOUT) == "SUCCESS", dev.step_failures(run)
    # raw wrote the sample into the landing folder; the sensor's run for it must end first,
    # or the page would switch to its materialization while we look.
    wait_until_sensor_idle(dev, RUN_TIMEOUT)
    page.send(
        "Emulation.setDeviceMetricsOverride", **PAGE_VIEWPORT, deviceScaleFactor=1, mobile=False
    )
    page.send("Page.navigate", url=f"{dev.url}/assets/churn_model_evaluation?view=events")
    wait_for(
        page,
        "document.body.innerText.includes('plot_roc') && document.body.innerText.includes('comparison')",
        "the evaluation's metadata did not render",
    )
    sizes = {}
    for name in PLOTS:
        wait_for(page, SHOW_PLOT % name, f"no [Show Markdown] link for plot_{name}")
        sizes[name] = wait_for(page, DIALOG_IMAGE % name, f"plot {name} did not render")
        time.sleep(1)  # the dialog fades in; let it finish before the screenshot
        shot = page.send("Page.captureScreenshot", format="png")
        (ARTIFACTS / f"evaluation-{name}.png").write_bytes(base64.b64decode(shot["data"]))
        page.evaluate(CLOSE_DIALOG)
        wait_for(page, "!document.querySelector('.bp5-dialog')", "the plot dialog did not close")
    assert all(width > 0 and height > 0 for width, height in sizes.values()), sizes
