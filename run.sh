#!/usr/bin/env bash
# One entry point for the project. Both commands create .venv (Python 3.11) on first use, install
# exactly the locked dependencies (torch 2.13.0 CPU first), and reuse it afterwards.
#
#   ./run.sh main    materialize the whole asset graph on the embedded defaults, then say where to look
#   ./run.sh test    install the test extras, check the import contracts, run the test suite (args go to pytest)
#   ./run.sh dev     start the Dagster UI (dagster dev) on 127.0.0.1:3000
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
  .venv/bin/python -m pip install --quiet -c requirements.lock -e ".[dev]"
  echo "$stamp" > .venv/.install-stamp
}

export DAGSTER_HOME="${DAGSTER_HOME:-$ROOT/dagster_home}"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 GX_ANALYTICS_ENABLED=false
export TOKENIZERS_PARALLELISM=false DO_NOT_TRACK=1

command="${1:-}"
shift || true
case "$command" in
  main)
    install
    exec .venv/bin/python -m scripts.run_main "$@"
    ;;
  test)
    install
    # Imports go one way (contracts in pyproject.toml), then the suite.
    .venv/bin/lint-imports --no-cache
    exec .venv/bin/python -m pytest "$@"
    ;;
  dev)
    install
    exec .venv/bin/dagster dev -w workspace.yaml -h 127.0.0.1 -p "${PORT:-3000}" "$@"
    ;;
  serve)
    install
    exec .venv/bin/python -m ml_assets.serving.server "$@"
    ;;
  *)
    sed -n '2,10p' "$0" >&2
    exit 2
    ;;
esac
