"""The embedded SQLite instance under the multiprocess executor: no "database is locked"."""

import dagster as dg
import pytest

from tests import sqlite_stress_defs


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

    from tests.conftest import REPO_ROOT

    config = yaml.safe_load((REPO_ROOT / "dagster_home" / "dagster.yaml").read_text())
    assert "storage" not in config  # SQLite under DAGSTER_HOME, the embedded default
    assert config["concurrency"]["runs"]["max_concurrent_runs"] == 1
    postgres = yaml.safe_load((REPO_ROOT / "dagster_home" / "postgres" / "dagster.yaml").read_text())
    db = postgres["storage"]["postgres"]["postgres_db"]
    assert db.pop("scheme") == "postgresql+psycopg2"
    assert {v["env"] for v in db.values()} == {
        "DAGSTER_PG_HOST", "DAGSTER_PG_PORT", "DAGSTER_PG_USER", "DAGSTER_PG_PASSWORD", "DAGSTER_PG_DB"
    }
