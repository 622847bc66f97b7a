"""Layer 6: the code location (``definitions.py``) loads and validates, with every asset, check, job,
sensor, schedule and resource; the main job's plan; and the embedded SQLite instance under the
project's multiprocess executor (no "database is locked")."""

import dagster as dg
import pytest

from ml_assets.keys import pipeline_keys
from tests import sqlite_stress_defs
from tests.conftest import REPO_ROOT, run_subprocess_python


def test_definitions_load_and_validate():
    from definitions import defs

    flights = pipeline_keys("flights")
    dg.Definitions.validate_loadable(defs)
    graph = defs.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    assert {"flights/raw_flights", "flights/raw_weather", "flights/features"} <= keys
    for job_name in [flights.ingest_job]:
        assert defs.resolve_job_def(job_name).name == "flights_ingest_job"
    check_names = {k.name for k in graph.asset_check_keys if k.asset_key == flights.raw("flights")}
    assert check_names == {"schema", "not_null", "ranges", "allowed_values", "unique", "min_rows"}
    features = graph.get(flights.features)
    assert features.parent_keys == {flights.raw("flights"), flights.raw("weather")}
    assert features.backfill_policy == dg.BackfillPolicy.single_run()
    assert features.partitions_def.get_num_partitions() == 365


def test_code_location_resources_come_from_plain_settings(monkeypatch):
    """Every resource of the code location is built by ``resources.build_resources`` from the YAML's
    plain settings; a Qdrant server URL in the environment is read at run time (``dg.EnvVar``)."""
    from ml_assets import load_tabular_pipelines, resource_settings
    from resources import build_resources

    monkeypatch.setenv("QDRANT_URL", "http://qdrant.example:6333")
    resources = build_resources(**resource_settings(load_tabular_pipelines()))
    assert set(resources) >= {"data_source", "parquet_io_manager", "embedder", "vector_store", "tracking", "notifier"}
    assert isinstance(resources["vector_store"].url, dg.EnvVar)
    monkeypatch.delenv("QDRANT_URL")
    assert build_resources(**resource_settings(load_tabular_pipelines()))["vector_store"].url is None


@pytest.mark.slow
def test_code_location_does_not_import_heavy_libraries():
    code = (
        "import sys, definitions; heavy = ['pandas', 'great_expectations', 'mlflow', 'torch',"
        " 'sentence_transformers', 'evidently', 'lightgbm', 'sklearn', 'qdrant_client', 'pyarrow'];"
        " print(sorted(m for m in heavy if m in sys.modules))"
    )
    out = run_subprocess_python(code, check=True)
    assert out.stdout.strip() == "[]", out.stdout


@pytest.mark.slow
@pytest.mark.parametrize("job_fn", [sqlite_stress_defs.project_executor_job, sqlite_stress_defs.stress_job])
def test_concurrent_steps_on_sqlite_do_not_lock(tmp_path, job_fn):
    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        assert type(instance.event_log_storage).__name__ == "SqliteEventLogStorage"
        result = dg.execute_job(dg.reconstructable(job_fn), instance=instance)
        assert result.success
        messages = [e.message or "" for e in instance.all_logs(result.run_id)]
        assert not [m for m in messages if "database is locked" in m]
        materialized = {e.dagster_event.asset_key.path[0] for e in instance.all_logs(result.run_id)
                        if e.is_dagster_event and e.dagster_event.event_type_value == "ASSET_MATERIALIZATION"}
        assert materialized == {f"writer_{i}" for i in range(8)}
        assert sum("writer 3 event" in m for m in messages) == 40


def test_project_instance_defaults():
    import yaml

    config = yaml.safe_load((REPO_ROOT / "dagster_home" / "dagster.yaml").read_text())
    assert "storage" not in config  # SQLite under DAGSTER_HOME, the embedded default
    assert config["concurrency"]["runs"]["max_concurrent_runs"] == 1
    assert config["concurrency"]["pools"]["default_limit"] == 1  # qdrant_local: one local-mode client
    postgres = yaml.safe_load((REPO_ROOT / "dagster_home" / "postgres" / "dagster.yaml").read_text())
    db = postgres["storage"]["postgres"]["postgres_db"]
    assert db.pop("scheme") == "postgresql+psycopg2"
    assert {v["env"] for v in db.values()} == {
        "DAGSTER_PG_HOST", "DAGSTER_PG_PORT", "DAGSTER_PG_USER", "DAGSTER_PG_PASSWORD", "DAGSTER_PG_DB"
    }


def test_project_instance_turns_dagsters_run_monitoring_on(tmp_path, monkeypatch):
    """Dagster's own run monitoring, as the project's instance loads it: the daemon of ./run.sh dev
    fails runs stuck starting or canceling and frees the slots of finished runs."""
    import shutil

    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(REPO_ROOT / "dagster_home" / "dagster.yaml", home / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    with dg.DagsterInstance.get() as instance:
        assert instance.run_monitoring_enabled
        assert instance.run_monitoring_start_timeout_seconds == 180
        assert instance.run_monitoring_cancel_timeout_seconds == 180
        assert instance.run_monitoring_settings["free_slots_after_run_end_seconds"] == 60


def test_definitions_have_the_training_and_scoring_jobs_in_the_main_job_plan():
    from definitions import defs
    from scripts.run_main import plan_stages

    assert {"flights_training_job", "flights_scoring_job"} <= {j.name for j in defs.resolve_all_job_defs()}
    groups = [stage.group for stage in plan_stages()]
    assert groups.index("flights") < groups.index("flights_training") < groups.index("flights_scoring")
    scoring = next(s for s in plan_stages() if s.group == "flights_scoring")
    assert scoring.partition_range == ("2013-01-01", "2013-12-31")
    # what the CLI cannot run as one range run is left out, with the reason
    left_out: list[str] = []
    planned = {name for stage in plan_stages(left_out) for name in stage.keys}
    assert "flights/online_features" in planned and "flights/served_predictions" not in planned
    assert any(line.startswith("flights/served_predictions (one partition per run") for line in left_out)


def test_every_asset_has_a_code_version_that_follows_its_yaml_section(tmp_path):
    """The UI marks assets stale after a code or YAML change: every asset has a code_version, and a
    change to one YAML section changes the versions of the assets that read it, and only those."""
    import yaml

    from definitions import defs
    from ml_assets import build_tabular_pipeline
    from ml_assets.config import PIPELINES_DIR, load_pipeline

    versions = {k.to_user_string(): v for a in defs.assets for k, v in a.code_versions_by_key.items()}
    assert versions and not [k for k, v in versions.items() if not v]

    raw = yaml.safe_load((PIPELINES_DIR / "flights.yaml").read_text())
    raw["monitoring"]["drift"]["html"] = "always"  # a drift setting: only monitoring reads it
    changed = tmp_path / "flights.yaml"
    changed.write_text(yaml.safe_dump(raw, sort_keys=False))
    before = {k.to_user_string(): v for a in build_tabular_pipeline(load_pipeline(PIPELINES_DIR / "flights.yaml"),
                                                                   PIPELINES_DIR / "flights.yaml").definitions.assets
              for k, v in a.code_versions_by_key.items()}
    after = {k.to_user_string(): v for a in build_tabular_pipeline(load_pipeline(changed), changed).definitions.assets
             for k, v in a.code_versions_by_key.items()}
    moved = sorted(k for k in before if before[k] != after[k])
    assert moved and all(k.startswith("flights/") for k in moved)
    assert "flights/features" not in moved and "flights/raw_flights" not in moved and "flights/model" not in moved
    assert any("drift" in k for k in moved)
