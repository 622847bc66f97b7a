"""The executor chosen by configuration (``ML_EXECUTOR``): the default keeps small runs in process,
every choice loads, a wrong name is a clear error."""

import json
import os

import dagster as dg
import pytest

from ml_assets.execution import (
    BROKER_ENV,
    ExecutorConfigError,
    code_location_executor,
    executor_choice,
    small_run_executor,
)
from tests.conftest import run_subprocess_python


def test_default_is_multiprocess_with_small_runs_in_process():
    assert code_location_executor("").name == "multiprocess"
    assert small_run_executor("") is dg.in_process_executor


@pytest.mark.parametrize("value, name", [("in_process", "in_process"), ("multiprocess", "multiprocess"),
                                          ("Celery", "celery"), ("in-process", "in_process")])
def test_a_choice_applies_to_every_job(value, name):
    assert executor_choice(value) == name
    assert code_location_executor(value).name == name
    assert small_run_executor(value).name == name


def test_unknown_executor_names_the_variable_and_the_choices():
    with pytest.raises(ExecutorConfigError, match=r"ML_EXECUTOR='k8s': unknown executor; use one of in_process, multiprocess, celery"):
        executor_choice("k8s")


def test_celery_broker_comes_from_the_environment_not_the_config(monkeypatch):
    monkeypatch.setenv(BROKER_ENV, "pyamqp://user:secret@broker.example:5672/ml")
    executor = code_location_executor("celery")
    assert executor.name == "celery"
    # the variable is read when a run resolves its config, not when the code location loads
    monkeypatch.setenv(BROKER_ENV, "pyamqp://user:rotated@broker.example:5672/ml")
    resolved = executor.config_schema.resolve_config({})
    assert resolved.success
    assert resolved.value["config"]["broker"] == "pyamqp://user:rotated@broker.example:5672/ml"
    assert resolved.value["config"]["backend"] == "rpc://"
    monkeypatch.delenv(BROKER_ENV)
    assert code_location_executor("celery").name == "celery"


@pytest.mark.slow
def test_code_location_reads_ml_executor_when_it_loads():
    code = (
        "import json, definitions as d; print(json.dumps({j: d.defs.resolve_job_def(j).executor_def.name"
        " for j in ['flights_daily_job', 'flights_training_job', 'flights_ingest_job', 'flights_scoring_job']}))"
    )
    env = {k: v for k, v in os.environ.items() if k != "ML_EXECUTOR"}
    default = json.loads(run_subprocess_python(code, check=True, env=env).stdout.strip().splitlines()[-1])
    assert default == {"flights_daily_job": "in_process", "flights_training_job": "in_process",
                       "flights_ingest_job": "multiprocess", "flights_scoring_job": "multiprocess"}
    celery = json.loads(run_subprocess_python(code, check=True, env=dict(env, ML_EXECUTOR="celery"))
                        .stdout.strip().splitlines()[-1])
    assert set(celery.values()) == {"celery"}
    bad = run_subprocess_python(code, env=dict(env, ML_EXECUTOR="threads"))
    assert bad.returncode != 0 and "ML_EXECUTOR='threads': unknown executor" in bad.stderr


def pipeline_with(tmp_path, partitioning: dict):
    import yaml

    from ml_assets.config.base import read_yaml
    from tests.conftest import FLIGHTS_YAML

    raw = read_yaml(FLIGHTS_YAML)
    raw["partitioning"].update(partitioning)
    path = tmp_path / "flights.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def test_backfills_are_cut_into_runs_of_the_yaml_size(tmp_path):
    from ml_assets import build_tabular_pipeline
    from ml_assets.config import load_pipeline

    def policies(partitioning: dict) -> dict[str, dg.BackfillPolicy]:
        file = pipeline_with(tmp_path, partitioning)
        assets = build_tabular_pipeline(load_pipeline(file), file).definitions.assets
        return {key.to_user_string(): a.backfill_policy for a in assets if a.partitions_def is not None
                for key in a.keys}

    daily = {"flights/raw_flights", "flights/raw_weather", "flights/features", "flights/predictions",
             "flights/drift_report", "flights/online_features"}
    # what the scoring service logged is read one day per run (no range runs)
    one_day = {"flights/served_predictions": None, "flights/served_drift_report": None,
               "flights/live_comparison": None}
    chunked = policies({"max_partitions_per_run": 7})
    assert chunked == {**{key: dg.BackfillPolicy.multi_run(max_partitions_per_run=7) for key in daily}, **one_day}
    # 0 (the default): one run for the whole range
    assert policies({"max_partitions_per_run": 0}) == {**{key: dg.BackfillPolicy.single_run() for key in daily},
                                                       **one_day}


def test_a_negative_run_size_names_file_and_key(tmp_path):
    from ml_assets.config import PipelineConfigError, load_pipeline

    file = pipeline_with(tmp_path, {"max_partitions_per_run": -3})
    with pytest.raises(PipelineConfigError, match=r"flights.yaml: invalid pipeline file(.|\n)*partitioning.max_partitions_per_run: Input should be greater than or equal to 0 \(got -3\)"):
        load_pipeline(file)
