#!/usr/bin/env bash
# One entry point for the project. Every command creates .venv (Python 3.11) on first use, installs
# exactly the locked dependencies (torch 2.13.0 CPU first), and reuses it afterwards.
#
#   ./run.sh main    materialize the whole asset graph on the embedded defaults, then say where to look
#   ./run.sh test    install the test and distributed extras, check the import contracts, run the test suite (args go to pytest)
#   ./run.sh dev     start the Dagster UI (dagster dev, 127.0.0.1:$DAGSTER_PORT, default 3000) and the
#                    MLflow UI (127.0.0.1:$MLFLOW_PORT, default 5000) together; Ctrl-C stops both
#   ./run.sh worker  start a dagster-celery worker (ML_EXECUTOR=celery; README "Beyond one machine")
#   ./run.sh recover close runs whose processes died, free their pool slots, end their MLflow runs
#   ./run.sh serve   start the scoring service (champion model, online features) on 127.0.0.1:${PORT:-8000}
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
ROOT="$PWD"

find_python() {
  for candidate in "${PYTHON:-}" python3.11 python3; do
    [ -n "$candidate" ] || continue
    if command -v "$candidate" >/dev/null 2>&1 &&
       "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null; then
      echo "$candidate"; return 0
    fi
  done
  echo "error: Python 3.11 is required (set PYTHON=/path/to/python3.11)" >&2
  return 1
}

install() {
  if [ ! -x .venv/bin/python ]; then
    echo "==> creating .venv"
    "$(find_python)" -m venv .venv
  fi
  local stamp
  stamp="$(cat pyproject.toml requirements.lock | sha256sum | cut -d' ' -f1)"
  if [ -f .venv/.install-stamp ] && [ "$(cat .venv/.install-stamp)" = "$stamp" ]; then
    return 0
  fi
  echo "==> installing dependencies into .venv (first run only)"
  .venv/bin/python -m pip install --quiet --upgrade pip setuptools wheel
  # The CPU build of torch first: an unpinned torch would pull several GB of CUDA packages.
  .venv/bin/python -m pip install --quiet "torch==2.13.0"
  .venv/bin/python -m pip install --quiet -c requirements.lock -e ".[dev,distributed]"
  echo "$stamp" > .venv/.install-stamp
}

# The browser test drives Debian's Chromium (never a downloaded browser): installed when missing.
ensure_chromium() {
  if command -v chromium >/dev/null 2>&1; then
    return 0
  fi
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "==> installing Debian's chromium for the browser test"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q chromium >/dev/null 2>&1 || { apt-get update -q && apt-get install -y -q chromium; }
  else
    echo "warning: chromium is missing and cannot be installed here (needs root and apt-get):" \
         "the browser test will fail when ML_PLATFORM_REQUIRE_SERVICES=1, skip otherwise" >&2
  fi
}

export DAGSTER_HOME="${DAGSTER_HOME:-$ROOT/dagster_home}"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 GX_ANALYTICS_ENABLED=false
export TOKENIZERS_PARALLELISM=false DO_NOT_TRACK=1

# Links in asset metadata (and MLflow's links back to Dagster) point at the UIs `./run.sh dev` starts,
# also for what `./run.sh main` materializes; a tracking server is its own UI.
ui_links() {
  export DAGSTER_UI_URL="${DAGSTER_UI_URL:-http://127.0.0.1:${DAGSTER_PORT:-${PORT:-3000}}}"
  if [ -z "${MLFLOW_TRACKING_URI:-}" ]; then
    export MLFLOW_UI_URL="${MLFLOW_UI_URL:-http://127.0.0.1:${MLFLOW_PORT:-5000}}"
  fi
}

command="${1:-}"
shift || true
case "$command" in
  main)
    install
    ui_links
    exec .venv/bin/python -m scripts.run_main "$@"
    ;;
  test)
    install
    ensure_chromium
    # Imports go one way (contracts in pyproject.toml), then the suite.
    .venv/bin/lint-imports --no-cache
    # Two test processes (pytest-xdist), a test module stays in one of them (its module fixtures are
    # built once); TEST_WORKERS=0 runs in this process (for a debugger), or pass -n yourself.
    exec .venv/bin/python -m pytest -n "${TEST_WORKERS:-2}" --dist loadfile "$@"
    ;;
  dev)
    install
    .venv/bin/python -m scripts.recover
    exec .venv/bin/python -m scripts.dev "$@"
    ;;
  worker)
    install
    # `dagster-celery worker start` runs `celery` from PATH; broker and backend: dagster_home/celery.yaml
    export PATH="$ROOT/.venv/bin:$PATH"
    exec .venv/bin/dagster-celery worker start -A dagster_celery.app -y dagster_home/celery.yaml \
      --name "${WORKER_NAME:-worker-$(hostname)}" -- --concurrency="${WORKER_CONCURRENCY:-2}" "$@"
    ;;
  recover)
    install
    exec .venv/bin/python -m scripts.recover "$@"
    ;;
  serve)
    install
    exec .venv/bin/python -m ml_assets.serving.server "$@"
    ;;
  *)
    sed -n '2,13p' "$0" >&2
    exit 2
    ;;
esac
