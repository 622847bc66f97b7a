"""PostgreSQL instance storage: the server terminating the instance's connections mid-run. The run
finishes and its status and materialization are recorded (dagster-postgres opens a connection per
write and retries opening it); a log line being written on a killed connection is dropped."""

import uuid

import dagster as dg
import pytest

from tests.conftest import require_service

POSTGRES_YAML = """
storage:
  postgres:
    postgres_db:
      hostname: 127.0.0.1
      port: 5432
      username: postgres
      password: unused-with-trust-auth
      db_name: {db}
      scheme: postgresql+psycopg2
telemetry:
  enabled: false
"""


@pytest.fixture()
def pg_instance(tmp_path):
    require_service("PostgreSQL", "127.0.0.1", 5432)
    import psycopg2

    name = f"ml_platform_fault_{uuid.uuid4().hex[:8]}"
    admin = psycopg2.connect(host="127.0.0.1", port=5432, user="postgres", dbname="postgres")
    admin.autocommit = True
    admin.cursor().execute(f"CREATE DATABASE {name}")
    (tmp_path / "dagster.yaml").write_text(POSTGRES_YAML.format(db=name))
    instance = dg.DagsterInstance.from_config(str(tmp_path))
    try:
        yield instance, name
    finally:
        instance.dispose()
        admin.cursor().execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.close()


@pytest.mark.postgres
def test_terminated_instance_connections_mid_run_keep_the_run_and_its_materialization(pg_instance):
    """The server terminates the instance's connection in the middle of writing an event: a trigger
    on the event table ends its own backend for every tenth log line of the step (the same as
    ``pg_terminate_backend`` from outside, at a moment the test chooses rather than by chance)."""
    import psycopg2

    instance, db = pg_instance
    with psycopg2.connect(host="127.0.0.1", port=5432, user="postgres", dbname=db) as admin:
        admin.autocommit = True
        admin.cursor().execute("""
            CREATE FUNCTION cut_connection() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                PERFORM pg_terminate_backend(pg_backend_pid());
                RETURN NEW;
            END $$;
            CREATE TRIGGER cut_connection BEFORE INSERT ON event_logs FOR EACH ROW
                WHEN ((NEW.event::json ->> 'user_message') ~ '^event [0-9]+ \\(connection cut here\\)$')
                EXECUTE FUNCTION cut_connection();
        """)
    cut = [i for i in range(60) if i % 10 == 5]

    @dg.asset
    def cut_off(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        for i in range(60):
            context.log.info(f"event {i}" + (" (connection cut here)" if i in cut else ""))
        return dg.MaterializeResult(metadata={"rows": 3})

    result = dg.materialize([cut_off], instance=instance, raise_on_error=False)

    assert result.success
    messages = {e.user_message for e in instance.all_logs(result.run_id)}
    lost = [i for i in range(60) if not any(m.startswith(f"event {i}") and m[len(f"event {i}"):][:1] in ("", " ")
                                            for m in messages)]
    # Dagster writes each event on its own connection; a write whose connection the server kills
    # is dropped with "Exception while writing logger call to event log" (not retried): exactly the
    # lines written on the cut connections are missing. Run status and materialization are whole.
    assert lost == cut
    assert instance.get_run_by_id(result.run_id).status == dg.DagsterRunStatus.SUCCESS
    assert instance.get_latest_materialization_event(dg.AssetKey("cut_off")).run_id == result.run_id
