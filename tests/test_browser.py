"""The notebooks as a person uses them: JupyterLab in a real (headless) Chromium.

A JupyterLab server on loopback serves a temporary copy of ``notebooks/`` (smoke mode).
Playwright opens the width-transfer notebook in a 1600x1000 window, runs every cell from
the Run menu, waits for the explorer's figure, checks that it is sharp (twice the pixels
of its size on the page), that the figure with its controls fits the window and that no
label is cut short, drags the *step* slider and checks that the figure was redrawn and
that no error appeared anywhere. Screenshots before and after the drag are saved in
``test-artifacts/``.

Then every notebook is run the same way, and each of its explorers is driven: a toggle
of its controls is switched, the figure must change, and Export (as PDF) must write the
view on screen: every title and axis label of the picture on screen (which the export's
status line names) is in the exported file's text.

Needs Chromium at ``/usr/bin/chromium`` (Debian's ``chromium`` package, installed by
``make browser-deps``) and the Python ``playwright`` package (the ``dev`` extra). Without
them the test is skipped, except under CI (``CI`` set), where it fails instead.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = "01_width_transfer.ipynb"
ARTIFACTS = ROOT / "test-artifacts"
FAILURE_SHOT = "browser-width-transfer-failure.png"
VIEWPORT = {"width": 1600, "height": 1000}
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]

# Bounded waits (seconds); generous because CI machines are small and may be busy. Each
# wait in the browser is also capped by what is left of BROWSER_TOTAL.
SERVER_START = 60
BROWSER_TOTAL = 180
PAGE_LOAD = 60
KERNEL_READY = 60
RUN_ALL = 120
REDRAW = 60

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def _unavailable(reason: str) -> None:
    """Skip on a machine without the browser setup, but never silently in CI."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI must run the browser test; `make browser-deps` installs it)")
    pytest.skip(reason)


def _chromium() -> str:
    for candidate in ("/usr/bin/chromium", shutil.which("chromium")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    _unavailable("Chromium not found at /usr/bin/chromium: run `make browser-deps` (Debian)")
    raise AssertionError("unreachable")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _tail(path: Path, chars: int = 4000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return ""


def _stop(process: subprocess.Popen, log) -> None:
    """Stop the server and the kernels it started (its own process group)."""
    try:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
        # kernels left behind by an unclean exit share the group
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    finally:
        log.close()


@pytest.fixture(scope="module")
def lab(request, tmp_path_factory):
    """A JupyterLab server on 127.0.0.1 serving a temporary copy of notebooks/."""
    chromium = _chromium()
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        _unavailable("the `playwright` package is not installed (pip install -e '.[dev]')")

    base = tmp_path_factory.mktemp("lab")
    root = base / "notebooks"
    shutil.copytree(
        ROOT / "notebooks", root, ignore=shutil.ignore_patterns(".ipynb_checkpoints", "figures")
    )
    # A private Jupyter config so no user settings or saved workspace apply, and no
    # "get notified about news" prompt covers the notebook.
    config = base / "config"
    settings = config / "lab" / "user-settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    (settings / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False})
    )
    # Every cell stays in the page (JupyterLab otherwise detaches cells scrolled out of
    # view), so an explorer above the last cell run can be found and driven.
    tracker = config / "lab" / "user-settings" / "@jupyterlab" / "notebook-extension"
    tracker.mkdir(parents=True)
    (tracker / "tracker.jupyterlab-settings").write_text(json.dumps({"windowingMode": "none"}))
    env = dict(os.environ)
    env.update(
        TOOLKIT_SMOKE="1",
        JUPYTER_CONFIG_DIR=str(config),
        JUPYTER_DATA_DIR=str(base / "data"),
        JUPYTER_RUNTIME_DIR=str(base / "runtime"),
        IPYTHONDIR=str(base / "ipython"),
    )
    env.pop("MPLBACKEND", None)  # the kernel uses the notebook's inline backend
    port, token = _free_port(), secrets.token_hex(24)
    log_path = base / "server.log"
    log = log_path.open("w")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "jupyterlab",
            "--no-browser",
            "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.port={port}",
            "--ServerApp.port_retries=0",
            f"--IdentityProvider.token={token}",
            f"--ServerApp.root_dir={root}",
            "--LabApp.news_url=None",
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
            "--LabApp.extension_manager=readonly",
            "--ServerApp.terminals_enabled=False",
            *(["--allow-root"] if os.geteuid() == 0 else []),  # CI runs as root
        ],
        cwd=base,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    request.addfinalizer(lambda: _stop(process, log))

    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + SERVER_START
    while True:
        if process.poll() is not None:
            pytest.fail(f"JupyterLab exited ({process.returncode}):\n{_tail(log_path)}")
        try:
            with urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=5) as reply:
                if reply.status == 200:
                    break
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"JupyterLab did not answer in {SERVER_START}s:\n{_tail(log_path)}")
        time.sleep(0.5)
    return {"url": url, "token": token, "log": log_path, "chromium": chromium, "root": root}


# JavaScript run in the page --------------------------------------------------------------

# Texts of outputs that show an error: a traceback anywhere (also in the explorer's own
# output area), or "Error" on stderr (JupyterLab renders error outputs as stderr).
ERRORS = """() => [...document.querySelectorAll('.jp-NotebookPanel .jp-OutputArea-output')]
    .map(out => [out.getAttribute('data-mime-type'), out.textContent || ''])
    .filter(([mime, text]) => /Traceback/.test(text)
        || (mime === 'application/vnd.jupyter.stderr' && /Error/.test(text)))
    .map(([mime, text]) => text.slice(0, 2000))"""

# Run All has finished: every code cell has an execution count, or a cell failed (Run All
# then stops and the cells after it keep an empty prompt) and nothing is still running.
CELLS_DONE = f"""() => {{
    const prompts = [...document.querySelectorAll(
        '.jp-NotebookPanel .jp-CodeCell .jp-InputPrompt')].map(p => p.textContent);
    if (prompts.length === 0) return false;
    if (prompts.every(p => /\\[\\d+\\]/.test(p))) return true;
    return !prompts.some(p => p.includes('*')) && ({ERRORS})().length > 0;
}}"""

# The status bar reads "Python 3 (ipykernel) | Idle" once the notebook's kernel is connected
# and idle ("No Kernel | Initializing", "... | Connecting", "... | Busy" before that).
KERNEL_IDLE = """() => [...document.querySelectorAll('.jp-StatusBar-TextItem')].some(
    item => /^(?!No Kernel).+ \\| Idle$/.test(item.textContent.trim()))"""

IMAGE_BYTES = """async img => {
    const blob = await (await fetch(img.src)).blob();
    return await new Promise(resolve => {
        const reader = new FileReader();
        reader.onload = () => resolve(reader.result);
        reader.readAsDataURL(blob);
    });
}"""


def _image_png(image) -> bytes:
    data_url = image.evaluate(IMAGE_BYTES)
    header, _, payload = data_url.partition(",")
    assert header.startswith("data:") and header.endswith(";base64"), header
    return base64.b64decode(payload)


# The explorer's figure and its box (controls, figure, export row): the picture's pixels
# per pixel on the page, and the box's size.
LAYOUT = """img => {
    const box = img.closest('.jp-OutputArea-output').getBoundingClientRect();
    return {scale: img.naturalWidth / img.clientWidth, width: box.width, height: box.height};
}"""

# Labels and buttons whose text does not fit in them (shown cut short, with an ellipsis).
CUT_LABELS = """() => [...document.querySelectorAll(
    '.jp-NotebookPanel .widget-label, .jp-NotebookPanel .widget-button')]
    .filter(el => el.offsetParent !== null && el.scrollWidth > el.clientWidth + 1)
    .map(el => el.textContent.trim())"""


def _assert_sharp_and_fitting(page, image) -> None:
    layout = image.evaluate(LAYOUT)
    assert layout["scale"] == pytest.approx(2, abs=0.02), layout
    assert layout["width"] <= VIEWPORT["width"] and layout["height"] <= VIEWPORT["height"] - 150
    assert not page.evaluate(CUT_LABELS), page.evaluate(CUT_LABELS)


def _assert_no_errors(page) -> None:
    errors = page.evaluate(ERRORS)
    assert not errors, "the notebook shows errors:\n\n" + "\n\n".join(errors)


class _Budget:
    """Milliseconds for one wait: its own limit, capped by what is left of the total."""

    def __init__(self, seconds: float) -> None:
        self.end = time.monotonic() + seconds

    def __call__(self, limit: float) -> float:
        return max(1.0, min(limit, self.end - time.monotonic()) * 1000)


def _screenshot(page, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    page.screenshot(path=str(path))
    return path


def test_run_all_then_drag_the_step_slider_redraws_the_figure(lab):
    from playwright.sync_api import sync_playwright

    started = time.monotonic()
    (ARTIFACTS / FAILURE_SHOT).unlink(missing_ok=True)  # from an earlier failed run
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=lab["chromium"], args=CHROMIUM_ARGS, timeout=60_000
        )
        page = browser.new_page(viewport=VIEWPORT)
        page.set_default_timeout(30_000)
        try:
            _exercise(page, lab, _Budget(BROWSER_TOTAL))
        except BaseException:
            try:
                _screenshot(page, FAILURE_SHOT)
            finally:
                print(f"\nJupyterLab log (tail):\n{_tail(lab['log'])}")
            raise
        finally:
            browser.close()
    print(f"\nbrowser test: {time.monotonic() - started:.0f}s in the browser")


def _exercise(page, lab, ms: _Budget) -> None:
    _run_all(page, lab, NOTEBOOK, ms, limit=RUN_ALL)

    image = page.locator(".jp-NotebookPanel img.widget-image").first
    image.wait_for(state="attached", timeout=ms(REDRAW))

    page.wait_for_function(
        "img => /^(blob|data):/.test(img.src)", arg=image.element_handle(), timeout=ms(REDRAW)
    )
    before_src = image.get_attribute("src")
    before = _image_png(image)
    assert before.startswith(b"\x89PNG"), "the explorer shows a PNG figure"
    _assert_sharp_and_fitting(page, image)

    slider = page.locator(".jp-NotebookPanel .widget-slider").filter(
        has=page.locator(".widget-label", has_text=re.compile(r"^step$"))
    )
    readout = slider.locator(".widget-readout")
    handle = slider.locator(".noUi-handle")
    track = slider.locator(".noUi-target")
    image.scroll_into_view_if_needed()
    handle.scroll_into_view_if_needed()  # the figure and the slider above it both in view
    _screenshot(page, "browser-width-transfer-before.png")
    step_before = readout.inner_text().strip()

    # Drag the handle (it starts at the last step) to the left third of the track and
    # release: with continuous_update=False the figure redraws on release.
    box, rail = handle.bounding_box(), track.bounding_box()
    assert box and rail
    y = box["y"] + box["height"] / 2
    page.mouse.move(box["x"] + box["width"] / 2, y)
    page.mouse.down()
    page.mouse.move(rail["x"] + rail["width"] * 0.3, y, steps=12)
    page.mouse.up()

    page.wait_for_function(
        "([el, old]) => el.textContent.trim() !== old",
        arg=[readout.element_handle(), step_before],
        timeout=ms(REDRAW),
    )
    page.wait_for_function(
        "([img, old]) => img.src !== old && /^(blob|data):/.test(img.src)",
        arg=[image.element_handle(), before_src],
        timeout=ms(REDRAW),
    )
    page.wait_for_function(KERNEL_IDLE, timeout=ms(REDRAW))
    step_after = readout.inner_text().strip()
    after = _image_png(image)
    image.scroll_into_view_if_needed()
    _screenshot(page, "browser-width-transfer-after.png")

    assert step_after != step_before
    assert after.startswith(b"\x89PNG")
    assert after != before, "the figure was redrawn for the new step"
    _assert_no_errors(page)


NOTEBOOKS = sorted(path.name for path in (ROOT / "notebooks").glob("*.ipynb"))
NOTEBOOK_TOTAL = 420
"""Seconds in the browser for one notebook: running it in smoke mode and driving it."""

# The explorers' boxes (each output holding a figure) and their toggles not yet chosen.
EXPLORER_OUTPUTS = ".jp-NotebookPanel .jp-OutputArea-output:has(img.widget-image)"


@pytest.mark.parametrize("notebook", NOTEBOOKS)
def test_every_explorer_of_every_notebook_redraws_and_exports_the_view_on_screen(lab, notebook):
    from playwright.sync_api import sync_playwright

    shot = f"browser-{notebook.removesuffix('.ipynb')}-failure.png"
    (ARTIFACTS / shot).unlink(missing_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=lab["chromium"], args=CHROMIUM_ARGS, timeout=60_000
        )
        page = browser.new_page(viewport=VIEWPORT)
        page.set_default_timeout(30_000)
        console: list[str] = []
        page.on("console", lambda message: console.append(f"{message.type}: {message.text}"))
        try:
            _drive_notebook(page, lab, notebook, _Budget(NOTEBOOK_TOTAL))
        except BaseException:
            try:
                _screenshot(page, shot)
            finally:
                print(f"\nJupyterLab log (tail):\n{_tail(lab['log'])}")
                print(
                    "browser console (errors and warnings):\n"
                    + "\n".join(line for line in console if line.startswith(("error", "warning")))
                )
            raise
        finally:
            browser.close()
            _end_sessions(lab)


def _end_sessions(lab) -> None:
    """Shut down every notebook's kernel, so the next notebook has the machine to itself."""
    api = f"{lab['url']}/api/sessions"
    headers = {"Authorization": f"token {lab['token']}"}
    with urllib.request.urlopen(urllib.request.Request(api, headers=headers), timeout=10) as reply:
        sessions = json.load(reply)
    for session in sessions:
        request = urllib.request.Request(f"{api}/{session['id']}", method="DELETE",
                                         headers=headers)  # fmt: skip
        urllib.request.urlopen(request, timeout=30).close()


def _run_all(page, lab, notebook: str, ms: _Budget, *, limit: float = NOTEBOOK_TOTAL) -> None:
    """Open ``notebook`` and run all its cells from the Run menu, as a person would; no
    output may show an error. A fresh workspace (``reset``): only it open, in front."""
    url = f"{lab['url']}/lab/tree/{notebook}?reset&token={lab['token']}"
    page.goto(url, timeout=ms(PAGE_LOAD))
    page.locator(".jp-NotebookPanel .jp-CodeCell").first.wait_for(timeout=ms(PAGE_LOAD))
    page.wait_for_function(KERNEL_IDLE, timeout=ms(KERNEL_READY))
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
    page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$")).click()
    page.wait_for_function(CELLS_DONE, timeout=ms(limit))
    page.wait_for_function(KERNEL_IDLE, timeout=ms(limit))
    _assert_no_errors(page)


def _drive_notebook(page, lab, notebook: str, ms: _Budget) -> None:
    _run_all(page, lab, notebook, ms)
    page.locator(".jp-NotebookPanel img.widget-image").first.wait_for(
        state="attached", timeout=ms(REDRAW)
    )
    explorers = page.locator(EXPLORER_OUTPUTS)
    count = explorers.count()
    assert count >= 1, f"{notebook} shows no explorer"
    for index in range(count):
        _drive_explorer(page, lab, explorers.nth(index), ms)
    _assert_no_errors(page)


def _drive_explorer(page, lab, box, ms: _Budget) -> None:
    image = box.locator("img.widget-image").first
    image.scroll_into_view_if_needed()
    page.wait_for_function("img => /^(blob|data):/.test(img.src)", arg=image.element_handle(),
                           timeout=ms(REDRAW))  # fmt: skip
    before_src = image.get_attribute("src")
    before = _image_png(image)

    toggle = box.locator(".widget-toggle-buttons button:not(.mod-active):not([disabled])").first
    toggle.click()
    page.wait_for_function(
        "([img, old]) => img.src !== old && /^(blob|data):/.test(img.src)",
        arg=[image.element_handle(), before_src], timeout=ms(REDRAW),
    )  # fmt: skip
    page.wait_for_function(KERNEL_IDLE, timeout=ms(REDRAW))
    assert _image_png(image) != before, f"switching {toggle.inner_text()!r} redrew nothing"
    _assert_no_errors(page)

    format_select = (
        box.locator(".widget-dropdown")
        .filter(has=page.locator(".widget-label", has_text=re.compile(r"^format$")))
        .locator("select")
    )
    format_select.select_option("pdf")
    status = box.locator(".widget-html-content").filter(has_text=re.compile(r"^exported "))
    box.locator("button", has_text=re.compile(r"^Export$")).click()
    status.wait_for(timeout=ms(REDRAW))
    written, shown = status.inner_text().strip().removeprefix("exported ").split(": ", 1)
    _assert_export_shows(lab["root"] / written, shown)


def _pdf_text(path: Path) -> str:
    """The PDF's strings, each read along its own direction (a rotated axis label is
    written last glyph first, so page order would read it backwards)."""
    from pdfminer.high_level import extract_pages
    from pdfminer.layout import LTChar, LTContainer

    def chars(item):
        if isinstance(item, LTChar):
            yield item
        elif isinstance(item, LTContainer):
            for child in item:
                yield from chars(child)

    def along(glyph) -> float:  # position along the string's direction (a, b)
        a, b, _c, _d, e, f = glyph.matrix
        return a * e + b * f

    def across(glyph) -> float:  # its baseline: the same for every glyph of one string
        a, b, _c, _d, e, f = glyph.matrix
        return -b * e + a * f

    runs: list[list] = []
    for glyph in (g for page in extract_pages(path, laparams=None) for g in chars(page)):
        last = runs[-1][-1] if runs else None
        if (last is not None and last.matrix[:4] == glyph.matrix[:4]
                and abs(across(last) - across(glyph)) < 0.5):  # fmt: skip
            runs[-1].append(glyph)
        else:
            runs.append([glyph])

    return "".join(g.get_text() for run in runs for g in sorted(run, key=along))


def _assert_export_shows(path: Path, shown: str) -> None:
    """Every title and axis label of the picture on screen (as the explorer's export line
    names them) is in the exported PDF."""
    assert path.suffix == ".pdf" and path.exists(), path
    words = shown.split(" | ")
    assert all(words), f"the export names no words of the view on screen: {shown!r}"
    text = re.sub(r"\s+", "", _pdf_text(path))
    missing = [word for word in words if re.sub(r"\s+", "", word) not in text]
    assert not missing, f"{path.name} lacks {missing} shown on screen ({shown!r})"
