"""Registered models are standard MLflow models: the champion loads and scores in an interpreter that
cannot import this project, and ``mlflow models serve`` serves it, with the same scores as the
project's own scoring on a real day's stored features, passed as they are."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT, free_port, wait_for_http

DAY = "2013-03-12"
NAME = "flights_delay"

ISOLATED_SCORING = """
import json, sys
try:
    import ml_assets  # noqa: F401
except ImportError:
    project = False
else:
    project = True
import mlflow, pandas as pd
features = pd.read_parquet(sys.argv[1])
model = mlflow.pyfunc.load_model("models:/%s@champion")
scores = model.predict(features)
json.dump({"project_importable": project, "score": scores["score"].tolist(),
           "label": scores["label"].tolist()}, open(sys.argv[2], "w"))
""" % NAME


def isolated_python(tmp: Path) -> Path:
    """A Python with this virtualenv's packages on PYTHONPATH but not its .pth files, so the
    editable install of the project (a .pth finder) is not active: ``import ml_assets`` fails."""
    venv = tmp / "isolated"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    return venv / "bin" / "python"


def site_packages() -> str:
    return next(p for p in sys.path if p.endswith("site-packages") and ".venv" in p)


@pytest.fixture(scope="module")
def champion(trained):
    """``(tracking URI, stored features file of DAY, in-project scores of it)``."""
    import pandas as pd

    from ml_assets.training.registry import champion_model

    project = trained["project"]
    features_file = project.store / "flights" / "features" / f"{DAY}.parquet"
    _, model = champion_model(project.tracking, project.spec)
    expected = model.score(pd.read_parquet(features_file))
    return project.tracking.resolved_tracking_uri(), features_file, expected


@pytest.mark.slow
def test_the_champion_loads_and_scores_without_this_project(champion, tmp_path):
    uri, features_file, expected = champion
    python = isolated_python(tmp_path)
    script = tmp_path / "score.py"
    script.write_text(ISOLATED_SCORING)
    out = tmp_path / "scores.json"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env |= {"PYTHONPATH": site_packages(), "MLFLOW_TRACKING_URI": uri,
            "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}
    done = subprocess.run([str(python), "-P", str(script), str(features_file), str(out)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["project_importable"] is False
    assert result["score"] == expected["score"].tolist()  # exactly the same floats
    assert result["label"] == expected["label"].tolist()
    assert len(result["score"]) > 500


@pytest.mark.slow
def test_mlflow_models_serve_serves_the_champion(champion, tmp_path):
    import pandas as pd
    import requests

    uri, features_file, expected = champion
    features = pd.read_parquet(features_file).head(50)
    port = free_port()
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
           # mlflow models serve starts `uvicorn` from PATH: this virtualenv's
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    mlflow = Path(sys.executable).parent / "mlflow"  # the environment running the tests
    server = subprocess.Popen(
        [str(mlflow), "models", "serve", "-m", f"models:/{NAME}@champion", "--env-manager", "local",
         "-h", "127.0.0.1", "-p", str(port)],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )
    try:
        wait_for_http(f"http://127.0.0.1:{port}/ping", server, "mlflow models serve")
        # Python floats in JSON are exact (pandas' to_json rounds to 10 digits by default)
        records = features.astype(object).where(features.notna(), None).to_dict(orient="records")
        response = requests.post(f"http://127.0.0.1:{port}/invocations", json={"dataframe_records": records},
                                 timeout=60)
        assert response.ok, response.text[:2000]
        served = pd.DataFrame(response.json()["predictions"])
        assert served["label"].tolist() == expected["label"].head(50).tolist()
        assert served["score"].tolist() == expected["score"].head(50).tolist()
    finally:
        os.killpg(server.pid, 15)
        server.wait(timeout=30)
