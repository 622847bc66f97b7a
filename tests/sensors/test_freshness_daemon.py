"""Freshness alerts from Dagster's own freshness daemon, run for real (``dagster-daemon run``) against a
temporary instance: an asset with a one-minute freshness window is fresh after its materialization,
overdue a minute later (the alerts sensor sends one failure), and fresh again after the next
materialization (one recovery). Public APIs only: the daemon is a subprocess, the states are read
with ``instance.get_freshness_state_records``."""

import datetime as dt
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import dagster as dg
import pytest

from resources.notifier import Notifier
from sensors.alerts import evaluate_alerts

BIN = Path(sys.executable).parent
KEY = dg.AssetKey("fresh_asset")

DEFS = textwrap.dedent('''
    import datetime as dt
    import dagster as dg

    @dg.asset(freshness_policy=dg.FreshnessPolicy.time_window(fail_window=dt.timedelta(minutes=1)))
    def fresh_asset():
        return 1

    defs = dg.Definitions(assets=[fresh_asset])
''')


def wait_for_state(instance, wanted: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        record = instance.get_freshness_state_records([KEY]).get(KEY)
        if record is not None and str(record.freshness_state.value) == wanted:
            return
        time.sleep(1)
    raise AssertionError(f"freshness state of {KEY.to_user_string()} did not become {wanted} in {timeout:g} s")


@pytest.mark.slow
def test_the_freshness_daemon_drives_overdue_and_recovered_alerts(tmp_path, monkeypatch, receiver):
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    (tmp_path / "defs.py").write_text(DEFS)
    (tmp_path / "workspace.yaml").write_text("load_from:\n  - python_file: defs.py\n")
    # the daemon checks freshness every 30 s by default; 5 s keeps the test short
    env = {**os.environ, "DAGSTER_HOME": str(home), "FRESHNESS_DAEMON_INTERVAL_SECONDS": "5"}
    monkeypatch.setenv("DAGSTER_HOME", str(home))

    def materialize() -> None:
        subprocess.run([str(BIN / "dagster"), "asset", "materialize", "-f", "defs.py", "--select", "fresh_asset"],
                       cwd=tmp_path, env=env, check=True, capture_output=True, timeout=120)

    notifier = Notifier(urls=receiver.url())
    materialize()
    daemon = subprocess.Popen([str(BIN / "dagster-daemon"), "run", "-w", "workspace.yaml"], cwd=tmp_path, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        with dg.DagsterInstance.get() as instance:
            now = dt.datetime.now(dt.timezone.utc)
            wait_for_state(instance, "PASS", 60)
            cursor, alerts, _ = evaluate_alerts(instance, [], notifier, None, now, freshness_keys=[KEY])
            assert alerts == []  # fresh from the start: nothing to say
            wait_for_state(instance, "FAIL", 120)  # a minute without a materialization
            cursor, alerts, deliveries = evaluate_alerts(instance, [], notifier, cursor, now, freshness_keys=[KEY])
            assert [a.kind for a in alerts] == ["failure"] and alerts[0].title == "fresh_asset is overdue"
            assert deliveries[0]["delivered"] and receiver.requests[-1]["json"]["type"] == "failure"
            cursor, alerts, _ = evaluate_alerts(instance, [], notifier, cursor, now, freshness_keys=[KEY])
            assert alerts == []  # the same state read again is not a new alert
            materialize()
            wait_for_state(instance, "PASS", 60)
            cursor, alerts, _ = evaluate_alerts(instance, [], notifier, cursor, now, freshness_keys=[KEY])
            assert [a.kind for a in alerts] == ["resolved"] and "fresh again" in receiver.requests[-1]["json"]["title"]
    finally:
        os.killpg(daemon.pid, 15)
        daemon.wait(timeout=60)
