"""``./run.sh dev``: the Dagster UI and the MLflow UI together, on 127.0.0.1, stopped together.

* Dagster: ``dagster dev -w workspace.yaml`` on ``127.0.0.1:$DAGSTER_PORT`` (default 3000; ``PORT``
  is still read for compatibility).
* MLflow: for the embedded store (no ``MLFLOW_TRACKING_URI``, or a ``sqlite:///`` one), ``mlflow
  server`` over that database (default ``.mlflow/mlflow.db``) on ``127.0.0.1:$MLFLOW_PORT`` (default
  5000). With a tracking server configured, nothing is started: links point at that server (or at
  ``MLFLOW_UI_URL``).

Both processes get ``MLFLOW_UI_URL`` and ``DAGSTER_UI_URL``, so the assets' metadata links to the
MLflow run, model version and reports, and MLflow runs link back to the Dagster run. Ctrl-C (or
SIGTERM, or either process exiting) stops both, each with its whole process group.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def group_alive(pgid: int) -> bool:
    """Whether any process of group ``pgid`` still runs (zombies, which only wait for their parent
    to collect them, do not count; without /proc, any member counts)."""
    proc = Path("/proc")
    if not proc.is_dir():
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
        return True
    for stat in proc.glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # the process ended while we looked
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


@dataclass
class DevServers:
    """The running Dagster (and MLflow) UI processes and their URLs."""

    dagster_url: str
    mlflow_url: str | None
    processes: list[subprocess.Popen] = field(default_factory=list)

    def stop(self, timeout: float = 20) -> None:
        """Stop every process group, politely first (SIGTERM), then SIGKILL: the group leaders and
        what they started (``dagster dev``'s webserver, daemon and code servers), which may outlive
        their leader by a few seconds while they shut down."""
        for process in self.processes:
            try:
                os.killpg(process.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + timeout
        for process in self.processes:
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
            while group_alive(process.pid) and time.monotonic() < deadline:
                time.sleep(0.2)
            if group_alive(process.pid):
                try:
                    os.killpg(process.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                # killed processes take a moment to be gone: return only once none of the group runs
                killed_by = time.monotonic() + 10
                while group_alive(process.pid) and time.monotonic() < killed_by:
                    time.sleep(0.1)
            process.wait()

    def wait_until_up(self, timeout: float = 180) -> None:
        """Block until both UIs answer over HTTP (or raise, naming the one that did not)."""
        for name, url in (("MLflow UI", self.mlflow_url and f"{self.mlflow_url}/health"),
                          ("Dagster UI", f"{self.dagster_url}/server_info")):
            if url is None:
                continue
            deadline = time.monotonic() + timeout
            while True:
                if any(p.poll() is not None for p in self.processes):
                    raise RuntimeError(f"a dev server exited before the {name} at {url} answered")
                try:
                    with urllib.request.urlopen(url, timeout=5):
                        break
                except OSError:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"the {name} did not answer at {url} within {timeout:g} s") from None
                    time.sleep(1)


def start(dagster_port: int, mlflow_port: int, *, env: dict[str, str] | None = None,
          cwd: Path = REPO_ROOT, extra_args: list[str] | None = None, log_dir: Path | None = None) -> DevServers:
    """Start the MLflow UI (embedded store only) and ``dagster dev``; return their handle."""
    env = dict(os.environ if env is None else env)
    host = "127.0.0.1"
    dagster_url = f"http://{host}:{dagster_port}"
    processes = []
    outputs: dict[str, object] = {}
    if log_dir is not None:
        log_dir.mkdir(parents=True, exist_ok=True)
        outputs = {name: open(log_dir / f"{name}.log", "ab") for name in ("mlflow", "dagster")}  # noqa: SIM115
    mlflow_url = env.get("MLFLOW_UI_URL")
    tracking_uri = env.get("MLFLOW_TRACKING_URI") or ""
    if not tracking_uri.startswith(("http://", "https://")):
        # an embedded store: the project's .mlflow/ (ml_assets.config.paths.mlflow_dir) or a sqlite URI
        database = Path(tracking_uri[len("sqlite:///"):]) if tracking_uri.startswith("sqlite:///") \
            else cwd / ".mlflow" / "mlflow.db"
        database.parent.mkdir(parents=True, exist_ok=True)
        mlflow_url = f"http://{host}:{mlflow_port}"
        processes.append(subprocess.Popen(
            [str(BIN / "mlflow"), "server", "--host", host, "--port", str(mlflow_port), "--workers", "1",
             "--backend-store-uri", f"sqlite:///{database.resolve()}",
             "--default-artifact-root", (database.parent / "artifacts").resolve().as_uri()],
            cwd=cwd, env=env, start_new_session=True,
            stdout=outputs.get("mlflow"), stderr=subprocess.STDOUT if outputs else None,
        ))
    env["DAGSTER_UI_URL"] = dagster_url
    if mlflow_url:
        env["MLFLOW_UI_URL"] = mlflow_url
    processes.append(subprocess.Popen(
        [str(BIN / "dagster"), "dev", "-w", "workspace.yaml", "-h", host, "-p", str(dagster_port),
         *(extra_args or [])],
        cwd=cwd, env=env, start_new_session=True,
        stdout=outputs.get("dagster"), stderr=subprocess.STDOUT if outputs else None,
    ))
    return DevServers(dagster_url, mlflow_url, processes)


def main(argv: list[str]) -> int:
    dagster_port = int(os.environ.get("DAGSTER_PORT") or os.environ.get("PORT") or 3000)
    mlflow_port = int(os.environ.get("MLFLOW_PORT") or 5000)
    servers = start(dagster_port, mlflow_port, extra_args=argv)

    def stop(signum, frame):  # noqa: ARG001
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    try:
        print(f"Dagster UI: {servers.dagster_url}", flush=True)
        if servers.mlflow_url:
            print(f"MLflow UI:  {servers.mlflow_url}", flush=True)
        while all(p.poll() is None for p in servers.processes):
            time.sleep(1)
        print("a dev server exited: stopping the other", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        servers.stop()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
