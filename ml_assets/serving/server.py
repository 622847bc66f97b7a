"""``./run.sh serve``: the scoring service of a pipeline with a model, on uvicorn, on 127.0.0.1.

    python -m ml_assets.serving.server [--pipeline flights] [--port 8000] [--host 127.0.0.1]

``PORT`` sets the default port (8000). MLflow is the project's registry (``MLFLOW_TRACKING_URI`` or the
embedded ``.mlflow``); the online store is ``<data>/online/features.sqlite`` or Redis when
``ONLINE_STORE_REDIS_URL`` is set; served traffic goes to ``<data>/serving/<pipeline>/traffic.sqlite``.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ml_assets.config import load_pipeline, tabular_pipeline_files
from ml_assets.config.paths import data_dir, mlflow_dir


def online_store_path() -> Path:
    return data_dir() / "online" / "features.sqlite"


def traffic_path(pipeline: str) -> Path:
    return data_dir() / "serving" / pipeline / "traffic.sqlite"


def settings_for(pipeline: str | None, poll_seconds: float = 10.0):
    """Service settings of ``pipeline`` (default: the first pipeline YAML with a model section)."""
    from ml_assets.serving.app import ServiceSettings
    from resources.online_store import open_store
    from resources.tracking import MlflowTracking

    specs = [load_pipeline(f) for f in tabular_pipeline_files()]
    with_model = [s for s in specs if s.model is not None]
    if pipeline is None:
        if not with_model:
            raise SystemExit("no pipeline YAML in pipelines/ has a model section: nothing to serve")
        spec = with_model[0]
    else:
        spec = next((s for s in with_model if s.name == pipeline), None)
        if spec is None:
            raise SystemExit(f"no pipeline named '{pipeline}' with a model; known: {[s.name for s in with_model]}")
    tracking = MlflowTracking(tracking_uri=os.environ.get("MLFLOW_TRACKING_URI") or None, local_dir=str(mlflow_dir()))
    store = open_store(str(online_store_path()), os.environ.get("ONLINE_STORE_REDIS_URL") or None)
    return ServiceSettings(spec=spec, tracking=tracking, store=store, traffic_path=traffic_path(spec.name),
                           poll_seconds=poll_seconds)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pipeline", default=None, help="pipeline name (default: the first with a model)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
    parser.add_argument("--poll-seconds", type=float, default=10.0,
                        help="how often the service asks the registry where the aliases point")
    args = parser.parse_args(argv)
    # Requests are small: one OpenMP thread per prediction is faster than waking a pool per request
    # (and does not spin on a busy machine). Set before LightGBM loads; a user's setting wins.
    os.environ.setdefault("OMP_NUM_THREADS", "1")

    import uvicorn

    from ml_assets.serving.app import create_app

    app = create_app(settings_for(args.pipeline, args.poll_seconds))
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
