"""Shared by the benchmarks: run a command and measure its process tree, run a helper snippet."""

import os
import subprocess
import sys
import time
from pathlib import Path

import psutil

REPO_ROOT = Path(__file__).resolve().parent.parent


def measure(cmd: list[str], env: dict[str, str], log_path: Path, max_rss_mib: float | None = None) -> dict[str, float]:
    """Wall seconds, peak summed RSS (MiB) of a command's process tree, and its start (epoch).
    With ``max_rss_mib``, a tree that grows past it is killed (a shared machine) and the run fails."""
    started_epoch = time.time()
    started = time.monotonic()
    log = log_path.open("w")
    process = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    root = psutil.Process(process.pid)
    peak = 0
    while process.poll() is None:
        try:
            rss = 0
            for proc in [root, *root.children(recursive=True)]:
                try:
                    rss += proc.memory_info().rss
                except psutil.Error:
                    pass
            peak = max(peak, rss)
        except psutil.Error:
            pass
        if max_rss_mib is not None and peak > max_rss_mib * 2**20:
            for proc in [*root.children(recursive=True), root]:
                try:
                    proc.kill()
                except psutil.Error:
                    pass
            process.wait()
            log.close()
            raise SystemExit(f"{' '.join(cmd)} stopped: its process tree passed {max_rss_mib:.0f} MiB")
        time.sleep(0.05)
    elapsed = time.monotonic() - started
    log.close()
    if process.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{log_path.read_text()[-6000:]}")
    return {"wall_s": elapsed, "peak_rss_mib": peak / 2**20, "start_epoch": started_epoch,
            "end_epoch": started_epoch + elapsed}


def helper(code: str, env: dict[str, str], *args: str) -> str:
    out = subprocess.run([sys.executable, "-c", code, *args], cwd=REPO_ROOT, env=env, capture_output=True,
                         text=True)
    if out.returncode != 0:
        raise SystemExit(f"helper failed:\n{out.stderr[-4000:]}")
    lines = out.stdout.strip().splitlines()
    return lines[-1] if lines else ""


def base_env() -> dict[str, str]:
    return dict(os.environ, HF_HUB_OFFLINE="1", GX_ANALYTICS_ENABLED="false", PYTHONUNBUFFERED="1")


def fewshot_latency_variants() -> dict:
    """The selections whose retrieval latency the few-shot benchmarks time."""
    from ml_assets.fewshot.selection import SelectionParams

    return {
        "top4": SelectionParams(k=4),
        "top4_label_filter": SelectionParams(k=4, label="other"),
        "top4_balanced": SelectionParams(k=4, balance_labels=True),
        "top4_mmr": SelectionParams(k=4, mmr_lambda=0.7),
    }


def pipeline_project(folder: Path, work: Path):
    """The one tabular pipeline YAML in ``folder``, built as the code location builds it, with
    resources on ``work`` (data, MLflow store, online store): ``(spec, keys, defs, resources)``."""
    from ml_assets import build_asset_defs, load_tabular_pipelines
    from ml_assets.keys import pipeline_keys
    from resources.data_sources import DataSourceResource
    from resources.online_store import OnlineFeatureStore
    from resources.parquet_io import PartitionedParquetIOManager
    from resources.tracking import MlflowTracking

    (pipeline,) = load_tabular_pipelines(folder)
    resources = {
        "data_source": DataSourceResource(base_dir=str(REPO_ROOT)),
        "parquet_io_manager": PartitionedParquetIOManager(base_dir=str(work / "data")),
        "tracking": MlflowTracking(local_dir=str(work / "mlflow")),
        "online_store": OnlineFeatureStore(sqlite_path=str(work / "online.sqlite")),
    }
    return pipeline.spec, pipeline_keys(pipeline.spec), build_asset_defs([pipeline], fewshot_file=None), resources
