"""Every panel, clicked in a real JupyterLab in headless Chromium.

Opens ``notebooks/panels.ipynb`` (copied into the server's folder, so the
source is never touched), runs it, clicks through each panel and checks what
appears: two versions → a diff; runs → a chart; a lineage node → its details;
a feature group → statistics and histograms; a drifting feature → overlaid
histograms.  Each panel is saved as a PNG: into ``$NBOPS_SCREENSHOT_DIR`` when
set (``NBOPS_SCREENSHOT_DIR=docs/img`` refreshes the docs' pictures), else
into the test's temporary folder.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers import REPO
from helpers.labharness import (
    JupyterLabServer,
    assert_no_error_outputs,
    chromium_browser,
    lab_page,
    open_notebook,
    require_chromium,
    run_all,
    wait_for_all_cells_executed,
)

require_chromium()

from playwright.sync_api import Locator, Page, expect

pytestmark = pytest.mark.browser

NOTEBOOK = REPO / "notebooks" / "panels.ipynb"
CHART = ".vega-embed svg, .vega-embed canvas"


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = os.environ.get("NBOPS_SCREENSHOT_DIR")
    folder = Path(target) if target else tmp_path_factory.mktemp("screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Page]:
    """JupyterLab with panels.ipynb run top to bottom, on a store of its own."""
    root = tmp_path_factory.mktemp("lab")
    notebooks = root / "notebooks"
    notebooks.mkdir()
    shutil.copy(NOTEBOOK, notebooks / NOTEBOOK.name)
    env = {"NBOPS_HOME": str(root / ".nbops"), "NBOPS_UI_URL": "http://127.0.0.1:5055"}
    with (
        JupyterLabServer(root / "server", notebooks, env=env) as server,
        chromium_browser() as browser,
        lab_page(browser, timeout_ms=30_000) as lab,
    ):
        requested: list[str] = []
        lab.on("request", lambda request: requested.append(request.url))
        lab.requested = requested  # type: ignore[attr-defined]
        started = time.perf_counter()
        open_notebook(lab, server, NOTEBOOK.name)
        run_all(lab)
        wait_for_all_cells_executed(lab, timeout_ms=240_000)
        print(f"panels.ipynb opened and ran in JupyterLab in {time.perf_counter() - started:.1f} s")
        yield lab


def panel(page: Page, kind: str) -> Locator:
    """The panel of a kind (``snapshots``, ``features``, ...) as drawn in the notebook."""
    found = page.locator(f".nbops-panel-{kind}panel:not(.nbops-nested)")
    found.scroll_into_view_if_needed()
    expect(found).to_be_visible(timeout=30_000)
    return found


def shoot(target: Locator, folder: Path, name: str) -> None:
    # A tall window, so that the whole panel is drawn inside JupyterLab's notebook area.
    target.page.set_viewport_size({"width": 1280, "height": 2400})
    target.scroll_into_view_if_needed()
    target.screenshot(path=str(folder / f"panels-{name}.png"))
    target.page.set_viewport_size({"width": 1400, "height": 1000})
    assert (folder / f"panels-{name}.png").stat().st_size > 5_000


def test_the_notebook_runs_without_errors(page: Page) -> None:
    assert_no_error_outputs(page)
    for kind in ("snapshots", "features", "runs", "lineage", "drift"):
        expect(page.locator(f".nbops-panel-{kind}panel")).to_have_count(1)


def test_snapshots_pick_two_versions_to_see_their_diff(page: Page, shots: Path) -> None:
    box = panel(page, "snapshots")
    rows = box.locator('[data-nbops="snapshot-versions"] tbody tr')
    expect(rows).to_have_count(2)
    expect(rows.first).to_contain_text("capped amounts, dropped card 13")
    box.locator('tr[data-row-id="1"]').click()
    expect(box.locator('[data-nbops="snapshot-preview"]')).to_contain_text("raw_tx@1: first 10 of 2,000 rows")
    box.locator('tr[data-row-id="2"]').click()
    diff = box.locator('[data-nbops="snapshot-diff"]')
    expect(diff).to_contain_text("raw_tx v1 → v2")
    expect(diff).to_contain_text("added (double)")  # the new amount_log column
    keys = box.locator(".widget-text input")
    keys.fill("tx_id")
    keys.press("Enter")
    expect(diff).to_contain_text("changed rows (sample, by tx_id)")
    expect(diff).to_contain_text("amount (v1)")
    expect(box.locator('tr[data-row-id="2"]')).to_have_attribute("aria-selected", "true")
    shoot(box, shots, "snapshots")
    box.locator(".nbops-refresh").click()  # refresh keeps the picks and the diff
    expect(diff).to_contain_text("raw_tx v1 → v2")
    expect(box.locator(".nbops-error")).to_have_count(0)


def test_features_show_statistics_histograms_search_and_lineage(page: Page, shots: Path) -> None:
    box = panel(page, "features")
    groups = box.locator('[data-nbops="feature-groups"] tbody tr')
    expect(groups).to_have_count(1)
    groups.first.click()
    detail = box.locator('[data-nbops="feature-detail"]')
    expect(detail).to_contain_text("tx_features:1@2")
    expect(box.locator('[data-nbops="feature-statistics"]')).to_contain_text("amount_mean")
    expect(box.locator(".nbops-chart-histograms").locator(CHART).first).to_be_visible(timeout=30_000)
    expect(box.locator(".nbops-chart-histograms")).to_contain_text("amount_mean")
    shoot(box, shots, "features")
    box.locator('[data-nbops="feature-commits"] tr[data-row-id="1"]').click()
    expect(detail).to_contain_text("tx_features:1@1")
    expect(detail).to_contain_text("snapshot:raw_tx@2")  # made from
    search = box.locator(".nbops-search input")
    search.fill("no such feature")
    expect(box.locator('[data-nbops="feature-groups"]')).to_contain_text("no feature groups match")
    search.fill("amount")
    expect(groups).to_have_count(1)
    groups.first.click()
    box.get_by_role("button", name="Lineage of this commit").click()
    expect(box.locator('[data-nbops="lineage"] g[data-node-id^="feature_commit:"]').first).to_be_visible()


def test_runs_pick_runs_to_see_a_chart(page: Page, shots: Path) -> None:
    box = panel(page, "runs")
    rows = box.locator('[data-nbops="runs"] tbody tr')
    expect(rows).to_have_count(4)
    rows.nth(1).click()
    rows.nth(2).click()
    rows.nth(3).click()
    chart = box.locator(".nbops-chart-runs")
    expect(chart.locator(CHART).first).to_be_visible(timeout=30_000)
    expect(box.locator('[data-nbops="runs-comparison"]')).to_contain_text("param C")
    box.locator(".widget-dropdown select").nth(2).select_option("C")  # against the param C
    expect(chart).to_contain_text("against C", timeout=30_000)
    link = box.locator('[data-nbops="mlflow-ui"]')
    expect(link).to_have_attribute("href", "http://127.0.0.1:5055/#/experiments/1")
    shoot(box, shots, "runs")


def test_lineage_select_a_node_to_see_its_details(page: Page, shots: Path) -> None:
    box = panel(page, "lineage")
    graph = box.locator('[data-nbops="lineage"]')
    for kind in ("snapshot", "feature_commit", "run", "model", "cell"):
        expect(graph.locator(f'g[data-kind="{kind}"]').first).to_be_visible()
    expect(graph).to_contain_text("logreg C=0.01")  # runs are labelled by name
    expect(graph).to_contain_text("panels.ipynb #features2")  # the cell that wrote the commit
    detail = box.locator('[data-nbops="lineage-detail"]')
    expect(detail).to_contain_text("snapshot:fraud_train@1")
    graph.locator('g[data-kind="model"]').first.click()
    expect(detail).to_contain_text("model:fraud_model@1")
    expect(detail).to_contain_text("source run")
    graph.locator('g[data-kind="run"]').first.click()
    expect(detail).to_contain_text("metric roc_auc")
    expect(graph.locator("g.nbops-selected")).to_have_count(1)
    shoot(box, shots, "lineage")


def test_drift_shows_drifting_features_first_with_overlaid_histograms(page: Page, shots: Path) -> None:
    box = panel(page, "drift")
    rows = box.locator('[data-nbops="drift-features"] tbody tr')
    expect(rows.first).to_have_attribute("data-row-id", "amount_mean")
    expect(rows.first).to_have_attribute("aria-selected", "true")
    chart = box.locator(".nbops-chart-drift")
    expect(chart.locator(CHART).first).to_be_visible(timeout=30_000)
    expect(chart).to_contain_text("amount_mean: tx_features:1@1 (its rows) vs tx_features:1@2 (its rows)")
    shoot(box, shots, "drift")
    box.locator('tr[data-row-id="category"]').click()
    expect(chart).to_contain_text("category: tx_features:1@1", timeout=30_000)


def test_nothing_is_fetched_from_the_internet(page: Page) -> None:
    """Every request the page made (widgets, anywidget views, Vega) went to the local server."""
    from urllib.parse import urlparse

    requested: list[str] = page.requested  # type: ignore[attr-defined]
    hosts = {urlparse(url).hostname for url in requested if not url.startswith(("data:", "blob:"))}
    assert len(requested) > 50 and hosts == {"127.0.0.1"}
