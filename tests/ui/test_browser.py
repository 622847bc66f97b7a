"""Layer 7: the Dagster UI in a real browser. Playwright drives Debian's Chromium headless against
``dagster dev`` and the MLflow UI, both started by ``scripts.dev`` (what ``./run.sh dev`` runs) on
free ports of 127.0.0.1, over a small instance: a model trained and evaluated on the small flights
windows (tests/conftest.py). Screenshots of every page land in ``test-screenshots/``.
"""

import os
import shutil
from pathlib import Path

import dagster as dg
import pytest

from ml_assets.keys import pipeline_keys
from resources.tracking import MlflowTracking
from scripts import dev
from tests.conftest import REPO_ROOT, Project, free_port, own_store, small_pipeline, training_keys

pytestmark = pytest.mark.slow

SCREENSHOTS = REPO_ROOT / "test-screenshots"
TIMEOUT_MS = 120_000


def chromium() -> str:
    """Debian's Chromium (``./run.sh test`` installs it); fail in CI, skip elsewhere when missing."""
    path = shutil.which("chromium")
    if path is None:
        message = "chromium is not installed (apt-get install chromium; ./run.sh test does it as root)"
        if os.environ.get("ML_PLATFORM_REQUIRE_SERVICES") or os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture(scope="module")
def ui(tmp_path_factory, feature_store):
    """A trained, evaluated model on a fresh instance, then ``dagster dev`` and the MLflow UI on it."""
    executable = chromium()
    tmp = tmp_path_factory.mktemp("ui")
    home = tmp / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    mlflow_port, dagster_port = free_port(), free_port()
    tracking = MlflowTracking(local_dir=str(tmp / "mlflow"), ui_url=f"http://127.0.0.1:{mlflow_port}",
                              dagster_ui_url=f"http://127.0.0.1:{dagster_port}")
    with dg.DagsterInstance.from_config(str(home)) as instance:
        project = Project(small_pipeline(tmp, model={"tuning": {"n_trials": 0}}), own_store(tmp, feature_store),
                          tracking, instance)
        trained = project.materialize(training_keys())
        assert trained.success
    env = {**os.environ, "DAGSTER_HOME": str(home), "ML_DATA_DIR": str(tmp / "data"),
           "MLFLOW_TRACKING_URI": tracking.resolved_tracking_uri()}
    servers = dev.start(dagster_port, mlflow_port, env=env, log_dir=tmp / "logs")
    try:
        servers.wait_until_up()
        from playwright.sync_api import sync_playwright

        SCREENSHOTS.mkdir(exist_ok=True)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=executable, headless=True,
                                                 args=["--no-sandbox", "--disable-dev-shm-usage"])
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            page.set_default_timeout(TIMEOUT_MS)
            yield {"page": page, "servers": servers, "keys": pipeline_keys("flights"), "tmp": tmp,
                   "model_run": project.client().search_model_versions("name='flights_delay'")[0].run_id}
            browser.close()
    finally:
        servers.stop()


def shot(page, name: str) -> Path:
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def asset_url(ui, key: dg.AssetKey) -> str:
    return f"{ui['servers'].dagster_url}/assets/{'/'.join(key.path)}"


def test_lineage_lists_every_asset(ui):
    import definitions

    page = ui["page"]
    page.goto(f"{ui['servers'].dagster_url}/asset-groups")
    names = sorted({key.path[-1] for key in definitions.defs.resolve_asset_graph().get_all_asset_keys()})
    for name in names:
        page.get_by_text(name, exact=True).first.wait_for(state="attached")
    shot(page, "lineage")


def test_model_page_shows_metadata_and_its_mlflow_link_opens_the_run(ui):
    page = ui["page"]
    page.goto(asset_url(ui, ui["keys"].model))
    page.get_by_text("validate_roc_auc").first.wait_for()
    page.get_by_text("mlflow_run_url").first.wait_for()
    shot(page, "model")
    link = page.locator(f"a[href*='/runs/{ui['model_run']}']").first
    href = link.get_attribute("href")
    assert href.startswith(ui["servers"].mlflow_url)
    page.goto(href)
    page.get_by_text(ui["model_run"]).first.wait_for()
    shot(page, "mlflow_run")


def test_evaluation_plots_render(ui):
    page = ui["page"]
    page.goto(asset_url(ui, ui["keys"].evaluation))
    page.get_by_text("decision").first.wait_for()
    images = page.locator("img[src^='data:image/png']")
    images.first.wait_for()
    widths = images.evaluate_all("(imgs) => imgs.map((img) => img.naturalWidth)")
    assert len(widths) >= 2 and min(widths) > 100, widths
    shot(page, "evaluation")


def test_materialize_one_partition_of_a_raw_asset_from_the_dialog(ui):
    page = ui["page"]
    key = ui["keys"].raw("weather")
    page.goto(asset_url(ui, key))
    page.get_by_role("button", name="Materialize", exact=True).first.click()
    dialog = page.get_by_role("dialog")
    dialog.wait_for()
    shot(page, "materialize_dialog")
    partitions = dialog.locator("input").first
    partitions.fill("2013-03-08")
    partitions.press("Enter")
    shot(page, "materialize_dialog_one_partition")
    dialog.get_by_role("button", name="Launch").last.click()
    stored = ui["tmp"] / "data" / "assets" / "flights" / "raw_weather" / "2013-03-08.parquet"
    instance = dg.DagsterInstance.from_config(str(ui["tmp"] / "dagster_home"))
    import time

    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        runs = instance.get_runs()
        if runs and runs[0].is_finished:
            break
        time.sleep(2)
    (run,) = [r for r in instance.get_runs() if r.tags.get("dagster/partition") == "2013-03-08"]
    assert run.status == dg.DagsterRunStatus.SUCCESS
    assert stored.exists()
    page.goto(f"{ui['servers'].dagster_url}/runs/{run.run_id}")
    page.get_by_text("Success").first.wait_for()
    shot(page, "materialize_run")
