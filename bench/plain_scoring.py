"""Baseline for the scoring half of bench_training.py: the year of flights scored with the registered
``champion`` of ``flights_delay``, loaded through ``mlflow.pyfunc``, as a plain script.

    MLFLOW_TRACKING_URI=sqlite:///.../mlflow.db .venv/bin/python bench/plain_scoring.py FEATURES_DIR OUT_DIR

Same rows and same output as the Dagster ``flights/predictions`` asset over 2013-01-01..2013-12-31:
every row of the 365 daily feature files (cancelled flights too), ``delayed_score``,
``delayed_predicted`` and ``model_version`` next to the entity key and the day, one Parquet file per
day. The registered model is a self-contained MLflow pyfunc, so nothing of the project is imported
here. Not done here: the per-day Dagster metadata (mean score per day, unseen-category counts, rows with missing numerics).
"""

import json
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DATE = "partition_date"
NAME = "flights_delay"


def main(features_dir: Path, out_dir: Path) -> None:
    started = time.monotonic()
    import mlflow
    import pandas as pd
    import yaml

    spec = yaml.safe_load((REPO_ROOT / "pipelines" / "flights.yaml").read_text())
    key = list(spec["sources"][spec["features"]["primary_source"]]["entity_key"])
    numeric, categorical = list(spec["features"]["numeric"]), list(spec["features"]["categorical"])
    files = sorted(features_dir.glob("*.parquet"))
    frame = pd.concat([pd.read_parquet(p) for p in files], ignore_index=True)
    client = mlflow.MlflowClient()
    version = str(client.get_model_version_by_alias(NAME, "champion").version)
    model = mlflow.pyfunc.load_model(f"models:/{NAME}/{version}")
    loaded = time.monotonic()
    x = frame[[*numeric, *categorical]].copy()
    for c in numeric:
        x[c] = x[c].astype("float64")
    for c in categorical:
        x[c] = x[c].astype(object).where(x[c].notna(), None)
    scored = model.predict(x)
    predicted = time.monotonic()
    out = frame[[*key, DATE]].reset_index(drop=True)
    out["delayed_score"] = scored["score"].to_numpy()
    out["delayed_predicted"] = scored["label"].to_numpy()
    out["model_version"] = version
    target = out_dir / "flights" / "predictions"
    target.mkdir(parents=True, exist_ok=True)
    days = out[DATE].astype(str).str.slice(0, 10)
    for day, part in out.groupby(days, sort=True):
        part.reset_index(drop=True).to_parquet(target / f"{day}.parquet", index=False)
    finished = time.monotonic()
    print(json.dumps({"rows": len(out), "files": len(files), "version": version,
                      "seconds": {"load": loaded - started, "predict": predicted - loaded,
                                  "write": finished - predicted, "total": finished - started}}))


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
