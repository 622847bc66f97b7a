"""kill -9 during real work, then the documented recovery (``python -m scripts.recover``, what
``./run.sh recover`` runs) and the same command again.

- Training: the training job of a real example pipeline (``pipelines/examples/minneapolis_stops.yaml``
  on 21 days, 2 tuning trials: a real LightGBM fit, real MLflow logging and registration into an
  embedded store) killed while its model step logs to MLflow.
- Embedding: ``fewshot/example_embeddings`` of the real code location (``definitions.py``:
  all-MiniLM-L6-v2 from its package, offline, into Qdrant local mode) killed while it embeds, holding
  the ``qdrant_local`` pool slot.

The kill comes when the instance's event log (and, for training, the MLflow store) says the step is
at work, never after a fixed sleep; it kills the whole process tree (CLI and step processes).
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest

pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parents[2]
DAGSTER = str(Path(sys.executable).parent / "dagster")
TRAINING_DEFS = "tests/scripts/training_crash_defs.py"
MODEL_STEP = "mpls_stops__model"
EVALUATION_STEP = "mpls_stops__model_evaluation"
REGISTERED = "mpls_vehicle_search"


def project_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The environment of the CLI commands and of the recovery: a fresh instance (pool limit 1, as
    the project's dagster.yaml), and every store in ``tmp_path``."""
    home = tmp_path / "dagster_home"
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text("concurrency:\n  pools:\n    default_limit: 1\ntelemetry:\n  enabled: false\n")
    (tmp_path / "mlflow").mkdir(exist_ok=True)
    return {
        **os.environ, "PYTHONPATH": str(REPO_ROOT), "DAGSTER_HOME": str(home),
        "ML_DATA_DIR": str(tmp_path / "data"), "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow' / 'mlflow.db'}",
        "QDRANT_PATH": str(tmp_path / "qdrant"), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", **extra,
    }


STARTED: list[subprocess.Popen] = []


@pytest.fixture(autouse=True)
def stop_what_the_test_started():
    """A failing test leaves no command running: each process group it started is killed."""
    yield
    while STARTED:
        process = STARTED.pop()
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait(timeout=60)


def run_cli(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    """A ``dagster`` CLI command in its own process group (so kill -9 reaches every process of it)."""
    handle = log.open("ab")
    process = subprocess.Popen([DAGSTER, *args], cwd=REPO_ROOT, env=env, stdout=handle, stderr=subprocess.STDOUT,
                               start_new_session=True)
    STARTED.append(process)
    return process


def finish(process: subprocess.Popen, log: Path, timeout: float = 300) -> None:
    assert process.wait(timeout=timeout) == 0, log.read_text()[-4000:]


def kill_tree(process: subprocess.Popen) -> None:
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=60)


def recover_cli(env: dict[str, str], *args: str) -> str:
    """The documented recovery command (``./run.sh recover`` runs it); its console output."""
    done = subprocess.run([sys.executable, "-m", "scripts.recover", *args], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def hashes(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*.parquet"))}


def wait_for(condition, process: subprocess.Popen, log: Path, what: str, timeout: float = 240, poll: float = 0.2):
    """Poll ``condition()`` until it returns something truthy; fail if the process ends first."""
    deadline = time.monotonic() + timeout
    while True:
        found = condition()
        if found:
            return found
        assert process.poll() is None, f"the command ended before {what}:\n{log.read_text()[-4000:]}"
        assert time.monotonic() < deadline, f"{what} did not happen in {timeout:.0f} s"
        time.sleep(poll)


def in_progress_run(instance: dg.DagsterInstance):
    records = instance.get_run_records(filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED]), limit=1)
    return records[0].dagster_run if records else None


def step_events(instance: dg.DagsterInstance, run_id: str, step: str) -> set[str]:
    """The DagsterEventType values recorded for ``step`` of run ``run_id``."""
    wanted = {dg.DagsterEventType.STEP_START, dg.DagsterEventType.STEP_SUCCESS, dg.DagsterEventType.STEP_FAILURE}
    return {r.event_log_entry.dagster_event.event_type_value
            for r in instance.get_records_for_run(run_id, of_type=wanted, limit=1000).records
            if r.event_log_entry.step_key == step}


def failure_message(instance: dg.DagsterInstance, run_id: str) -> str:
    [record] = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.RUN_FAILURE).records
    return record.event_log_entry.dagster_event.message


def test_kill_during_real_training_then_recover_and_rerun(tmp_path, monkeypatch):
    from mlflow.entities import LoggedModelStatus

    from ml_assets.training.registry import CHAMPION, EVALUATION_TAG
    from resources.tracking import MlflowTracking

    env = project_env(tmp_path, MPLS_END="2017-01-21", MPLS_TUNING_TRIALS="2")
    log = tmp_path / "cli.log"
    ingest = ["asset", "materialize", "-f", TRAINING_DEFS, "--select", "mpls_stops/raw_stops,mpls_stops/features",
              "--partition-range", "2017-01-01...2017-01-21"]
    training = ["job", "execute", "-f", TRAINING_DEFS, "-j", "mpls_stops_training_job"]
    finish(run_cli(ingest, env, log), log)
    finish(run_cli(training, env, log), log)  # the earlier champion
    stored = tmp_path / "data" / "assets" / "mpls_stops"
    before = hashes(stored)
    assert len([p for p in before if p.startswith(("raw_stops/", "features/"))]) == 42
    tracking = MlflowTracking(tracking_uri=env["MLFLOW_TRACKING_URI"], local_dir=str(tmp_path / "mlflow"))
    client = tracking.client()
    assert str(tracking.alias_version(REGISTERED, CHAMPION).version) == "1"

    # kill -9 of the whole tree while the model step is logging to its MLflow run
    monkeypatch.setenv("DAGSTER_HOME", env["DAGSTER_HOME"])
    killed = run_cli(training, env, log)
    with dg.DagsterInstance.get() as instance:
        run = wait_for(lambda: (r := in_progress_run(instance)) and r.job_name == "mpls_stops_training_job" and r,
                       killed, log, "the training run started")
        run_id = run.run_id

        def logging_model():
            if "STEP_START" not in step_events(instance, run_id, MODEL_STEP):
                return None
            return client.search_runs([tracking.experiment_id("mpls_stops")],
                                      filter_string=f"tags.dagster_run_id = '{run_id}' and attributes.status = 'RUNNING'")

        [orphan] = wait_for(logging_model, killed, log, "the model step's MLflow run", poll=0.1)
        kill_tree(killed)
        assert instance.get_run_by_id(run_id).status == dg.DagsterRunStatus.STARTED  # stuck until recovery
        assert step_events(instance, run_id, MODEL_STEP) == {"STEP_START"}  # killed inside the model step
    assert client.get_run(orphan.info.run_id).info.status == "RUNNING"

    printed = recover_cli(env)

    with dg.DagsterInstance.get() as instance:
        assert instance.get_run_by_id(run_id).status == dg.DagsterRunStatus.FAILURE
        assert f"its process {killed.pid} is gone" in failure_message(instance, run_id)
    assert f"run {run_id} marked FAILURE: its process {killed.pid} is gone" in printed
    assert client.get_run(orphan.info.run_id).info.status == "FAILED"
    assert f"MLflow run {orphan.info.run_id} ended as FAILED" in printed
    experiment = tracking.experiment_id("mpls_stops")
    left = [m for m in client.search_logged_models([experiment]) if m.source_run_id == orphan.info.run_id]
    assert all(m.status != LoggedModelStatus.PENDING for m in left)
    crashed_versions = [v for v in client.search_model_versions(f"name = '{REGISTERED}'")
                        if v.tags.get("dagster_run_id") == run_id]
    for version in crashed_versions:  # a candidate the crash left: visibly abandoned, never aliased
        assert version.tags[EVALUATION_TAG].startswith(f"abandoned: Dagster run {run_id} ended before the evaluation gate")
        assert version.aliases == []
    assert str(tracking.alias_version(REGISTERED, CHAMPION).version) == "1"

    # resume: the same command trains, registers and lets the gate decide
    log.write_text("")
    finish(run_cli(training, env, log), log)
    with dg.DagsterInstance.get() as instance:
        [rerun] = [r for r in instance.get_runs(filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.SUCCESS]),
                                                limit=1)]
        assert rerun.run_id != run_id and rerun.job_name == "mpls_stops_training_job"
        [decision] = [r.event_log_entry.dagster_event.materialization.metadata for r in instance.get_records_for_run(
            rerun.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION).records
            if r.event_log_entry.dagster_event.asset_key == dg.AssetKey(["mpls_stops", "model_evaluation"])]
    new_version = decision["model_version"].value
    assert int(new_version) == 2 + len(crashed_versions)
    assert decision["alias"].value in ("champion", "challenger")
    gated = client.get_model_version(REGISTERED, new_version)
    assert gated.tags[EVALUATION_TAG] != "pending" and gated.aliases == [decision["alias"].value]
    # nothing stored was lost: the earlier champion's version is still registered (with the champion
    # alias unless the gate moved it to the new one), every stored partition is the same file
    first = client.get_model_version(REGISTERED, "1")
    assert first.status == "READY"
    assert (CHAMPION in first.aliases) != (decision["alias"].value == CHAMPION)
    after = hashes(stored)
    assert {p: h for p, h in after.items() if p in before} == before


def user_messages(instance: dg.DagsterInstance, run_id: str) -> list[str]:
    """Every message of run ``run_id``'s event log (the assets' log lines and Dagster's events)."""
    return [r.event_log_entry.message or r.event_log_entry.user_message
            for r in instance.get_records_for_run(run_id, limit=100_000).records]


def test_kill_during_real_embedding_frees_the_pool_slot_and_rerun_stores_each_example_once(tmp_path, monkeypatch):
    from ml_assets.config import DEFAULT_FEWSHOT_YAML, load_fewshot_spec
    from ml_assets.fewshot.examples import read_examples
    from ml_assets.fewshot.store import embedder_for, embedder_settings, prepare_points, vector_store_for
    from resources.vector_store import QDRANT_POOL

    # 400 reviews, a progress line (and an upsert) every 128 texts: the kill lands between chunks
    examples, chunk = 400, 128
    env = project_env(tmp_path, FEWSHOT_TRAIN_LIMIT=str(examples))
    monkeypatch.setenv("DAGSTER_HOME", env["DAGSTER_HOME"])
    monkeypatch.setenv("QDRANT_PATH", env["QDRANT_PATH"])
    spec = load_fewshot_spec(DEFAULT_FEWSHOT_YAML)
    config = tmp_path / "run_config.yaml"
    config.write_text(json.dumps({"resources": {"embedder": {"config": {**embedder_settings(spec), "progress_every": chunk}}}}))
    log = tmp_path / "cli.log"
    command = ["asset", "materialize", "-f", "definitions.py", "--select", "fewshot/examples,fewshot/example_embeddings",
               "-c", str(config)]
    # The instance's storage exists before the run starts, as for any instance in use: the CLI and
    # this test creating a new instance's tables at once race on them.
    with dg.DagsterInstance.get() as instance:
        assert list(instance.get_runs()) == []
    killed = run_cli(command, env, log)
    with dg.DagsterInstance.get() as instance:
        run = wait_for(lambda: in_progress_run(instance), killed, log, "the few-shot run started")
        run_id = run.run_id
        first_chunk = wait_for(
            lambda: [m for m in user_messages(instance, run_id) if m and m.startswith(f"embedded {chunk}/")],
            killed, log, "the first chunk of embeddings", timeout=300,
        )
        kill_tree(killed)
        assert first_chunk and instance.get_run_by_id(run_id).status == dg.DagsterRunStatus.STARTED
        assert step_events(instance, run_id, "fewshot__example_embeddings") == {"STEP_START"}
        held = instance.event_log_storage.get_concurrency_info(QDRANT_POOL).claimed_slots
        assert [slot.run_id for slot in held] == [run_id]  # the dead run keeps the only slot

    embedder = embedder_for(spec)
    collection = spec.collection_name(embedder.name)
    store = vector_store_for(spec, path=env["QDRANT_PATH"])
    with store.open() as client:
        partial = client.count(collection, exact=True).count
    assert partial < examples  # cut short: what the killed run stored stays, the rest is missing

    # the embedding logs nothing to MLflow: recovery leaves the (empty) MLflow store alone
    printed = recover_cli(env, "--no-mlflow")

    with dg.DagsterInstance.get() as instance:
        assert instance.get_run_by_id(run_id).status == dg.DagsterRunStatus.FAILURE
        assert f"its process {killed.pid} is gone" in failure_message(instance, run_id)
        assert instance.event_log_storage.get_concurrency_info(QDRANT_POOL).claimed_slots == []
    assert f"freed the concurrency slots of run {run_id}" in printed

    # the next few-shot run (the same command) is not blocked and completes
    started = time.monotonic()
    finish(run_cli(command, env, log), log, timeout=300)
    with dg.DagsterInstance.get() as instance:
        [rerun] = instance.get_runs(filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.SUCCESS]), limit=1)
        messages = [m for m in user_messages(instance, rerun.run_id) if m]
        assert not [m for m in messages if "blocked" in m.lower()], "the rerun waited for the pool slot"
        [stats] = [r.event_log_entry.dagster_event.materialization.metadata for r in instance.get_records_for_run(
            rerun.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION).records
            if r.event_log_entry.dagster_event.asset_key == dg.AssetKey(["fewshot", "example_embeddings"])]
    # the rerun embedded only what the killed run had not stored
    assert stats["skipped"].value == partial and stats["embedded"].value == stats["points"].value - partial
    expected = set(prepare_points(read_examples(spec, "train", examples), spec, embedder.name)["point_id"])
    with store.open() as client:
        assert client.count(collection, exact=True).count == len(expected) == stats["points"].value
        assert store.point_ids(client, collection) == expected  # the asset's ids: none missing, none twice
    assert time.monotonic() - started < 300
