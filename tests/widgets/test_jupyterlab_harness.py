"""The browser harness itself: a real JupyterLab in headless Chromium runs a notebook.

One server and one browser serve the whole module.  The checks are what the
widget panels rely on: Run All finishes and is detected, the kernel is this
environment's Python with nbops loaded and ``NBOPS_HOME`` inherited, a button
click reaches its Python handler and the new value reaches the page, and a
Vega-Lite chart shown in an ``Output`` widget renders without the network.
"""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from urllib.parse import urlparse

import pytest

import nbops
from helpers.labharness import (
    JupyterLabServer,
    assert_no_error_outputs,
    chromium_browser,
    error_outputs,
    is_error_text,
    lab_page,
    open_notebook,
    require_chromium,
    run_all,
    wait_for_all_cells_executed,
    write_notebook,
)

# Before importing playwright: skips the module without a browser, fails it under CI.
require_chromium()

from playwright.sync_api import Browser, Page, expect

# Kernel round trips on a busy two-core machine: more than expect's 5 s default.
KERNEL_MS = 30_000

GREETING_CELL = 'print("hello from the kernel")'
IDENTITY_CELL = textwrap.dedent(
    """\
    import sys, nbops
    print("executable:", sys.executable)
    print("nbops from:", nbops.__file__)
    """
)
NBOPS_MAGIC_CELL = "%nbops"
BUTTON_CELL = textwrap.dedent(
    """\
    import ipywidgets as widgets

    label = widgets.Label("not clicked")
    label.add_class("harness-label")
    button = widgets.Button(description="Click me")
    button.add_class("harness-button")
    clicks = []

    def on_click(_):
        clicks.append(1)
        label.value = f"clicked {len(clicks)} time(s)"

    button.on_click(on_click)
    widgets.VBox([button, label])
    """
)
CHART_CELL = textwrap.dedent(
    """\
    from IPython.display import display

    spec = {
        "$schema": "https://vega.github.io/schema/vega-lite/v5.json",
        "data": {"values": [{"day": d, "rows": n} for d, n in [("mon", 3), ("tue", 7), ("wed", 5)]]},
        "mark": "bar",
        "encoding": {
            "x": {"field": "day", "type": "nominal"},
            "y": {"field": "rows", "type": "quantitative"},
        },
    }
    chart = widgets.Output()
    chart.add_class("harness-chart")
    with chart:
        display({"application/vnd.vegalite.v5+json": spec}, raw=True)
    chart
    """
)

# Non-transparent pixels of a canvas (an svg counts its drawn elements instead).
DRAWN_PIXELS_JS = """(marks) => {
    if (marks.tagName.toLowerCase() === "svg") return marks.querySelectorAll("path, rect, text").length;
    const { data } = marks.getContext("2d").getImageData(0, 0, marks.width, marks.height);
    let drawn = 0;
    for (let i = 3; i < data.length; i += 4) if (data[i] !== 0) drawn++;
    return drawn;
}"""


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[JupyterLabServer]:
    root = tmp_path_factory.mktemp("jupyterlab")
    env = {"NBOPS_HOME": str(root / "store" / ".nbops")}
    with JupyterLabServer(root / "server", root / "notebooks", env=env) as server:
        yield server


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium_browser() as b:
        yield b


@pytest.fixture(scope="module")
def requested_urls() -> list[str]:
    return []


@pytest.fixture(scope="module")
def harness_page(lab: JupyterLabServer, browser: Browser, requested_urls: list[str]) -> Iterator[Page]:
    """The harness notebook, opened and run once; the tests read and click it."""
    cells = [GREETING_CELL, IDENTITY_CELL, NBOPS_MAGIC_CELL, "", BUTTON_CELL, CHART_CELL]
    write_notebook(lab.notebook_dir / "harness.ipynb", cells)
    with lab_page(browser) as page:
        page.on("request", lambda request: requested_urls.append(request.url))
        open_notebook(page, lab, "harness.ipynb")
        run_all(page)
        wait_for_all_cells_executed(page)
        yield page


@pytest.mark.browser
def test_run_all_executes_every_cell(harness_page: Page) -> None:
    prompts = harness_page.locator(".jp-CodeCell .jp-InputArea-prompt").all_text_contents()
    # The empty cell is not sent to the kernel and keeps its blank prompt.
    assert [p.strip() for p in prompts] == ["[1]:", "[2]:", "[3]:", "[ ]:", "[4]:", "[5]:"]
    expect(harness_page.locator(".jp-OutputArea-output", has_text="hello from the kernel")).to_be_visible()
    assert_no_error_outputs(harness_page)


@pytest.mark.browser
def test_kernel_runs_this_python_with_nbops_loaded(harness_page: Page, lab: JupyterLabServer) -> None:
    outputs = harness_page.locator(".jp-OutputArea-output")
    expect(outputs.filter(has_text=f"executable: {sys.executable}")).to_have_count(1)
    expect(outputs.filter(has_text=f"nbops from: {nbops.__file__}")).to_have_count(1)
    # %nbops exists only if the startup file loaded the extension, and it shows
    # the store named by the NBOPS_HOME the server passed to its kernel.
    store = f"nbops store: {lab.extra_env['NBOPS_HOME']}"
    expect(outputs.filter(has_text=store)).to_have_count(1)


@pytest.mark.browser
def test_button_click_reaches_python_and_back(harness_page: Page) -> None:
    label = harness_page.locator(".harness-label")
    expect(label).to_have_text("not clicked", timeout=KERNEL_MS)
    harness_page.locator("button.harness-button").click()
    expect(label).to_have_text("clicked 1 time(s)", timeout=KERNEL_MS)
    harness_page.locator("button.harness-button").click()
    expect(label).to_have_text("clicked 2 time(s)", timeout=KERNEL_MS)


@pytest.mark.browser
def test_vegalite_chart_in_output_widget_renders_offline(
    harness_page: Page, lab: JupyterLabServer, requested_urls: list[str]
) -> None:
    # Vega draws into "canvas.marks" (JupyterLab's default) or "svg.marks"; the
    # embed's "..." actions menu is an svg too, so a bare "svg" proves nothing.
    marks = harness_page.locator(".harness-chart .vega-embed .marks")
    expect(marks).to_be_visible(timeout=KERNEL_MS)
    assert marks.evaluate(DRAWN_PIXELS_JS) > 0, "the chart area is blank"
    elsewhere = [u for u in requested_urls if urlparse(u).hostname not in ("127.0.0.1", None)]
    assert elsewhere == [], "the page fetched from outside the server"


@pytest.mark.browser
def test_errors_end_the_wait_and_warnings_do_not(lab: JupyterLabServer, browser: Browser) -> None:
    cells = [
        'import warnings\nwarnings.warn("only a warning, not an Error")',
        'raise ValueError("boom")',
        'print("never runs")',
    ]
    write_notebook(lab.notebook_dir / "failing.ipynb", cells)
    with lab_page(browser) as page:
        open_notebook(page, lab, "failing.ipynb")
        run_all(page)
        with pytest.raises(AssertionError, match="ValueError: boom"):
            wait_for_all_cells_executed(page)
        warning = page.locator(".jp-OutputArea-output", has_text="UserWarning: only a warning")
        expect(warning).to_be_visible()
        errors = error_outputs(page)
        assert len(errors) == 1 and "ValueError: boom" in errors[0]


def test_error_text_tells_errors_from_warnings() -> None:
    assert is_error_text("ValueError    Traceback (most recent call last)\nCell In[2], line 1\n")
    assert is_error_text("  Cell In[3], line 1\n    x = (\n        ^\nSyntaxError: incomplete input")
    assert is_error_text("UsageError: no snapshot named 'raw_tx'; known: raw")
    assert is_error_text("Javascript Error: Unrecognized signal")
    assert not is_error_text("/tmp/ipykernel_7/1.py:2: UserWarning: an Error in a warning is not an error\n  warn()")
    assert not is_error_text("DeprecationWarning: UsageError: is quoted mid-line here")
