"""The model registry: logging a trained model as a standard MLflow model, loading a version, and
the aliases the evaluation gate moves (``champion``, ``challenger``).

What is registered is an MLflow pyfunc defined by ``tabular_model.py`` ("models from code": the file
is logged with the model and loaded by path) with two artifacts, the LightGBM booster and its
preprocessing, so a registered model loads wherever mlflow, lightgbm, pandas and numpy are installed,
without this project. mlflow loads inside the functions.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from resources.tracking import MlflowTracking

CHAMPION = "champion"
CHALLENGER = "challenger"
#: The model's code, logged with every version.
MODEL_CODE = Path(__file__).with_name("tabular_model.py")
#: Version tag: a version is created as a candidate with it set to "pending" (in the same request
#: that creates it); the evaluation gate replaces it with its decision, and only the gate sets
#: aliases. A candidate whose training run ended before the gate is tagged "abandoned: ...".
EVALUATION_TAG = "evaluation"
PENDING = "pending"
ABANDONED = "abandoned"
#: Version tag naming the Dagster run that trained it.
DAGSTER_RUN_TAG = "dagster_run_id"


class ModelLoadError(RuntimeError):
    """A registered version cannot be loaded (deleted files, a model of an older format)."""


def model_input(frame: Any, numeric: list[str], categorical: list[str]) -> Any:
    """The feature columns in model order as the signature describes them: numeric as float64,
    categoricals as ``str`` objects (``None`` when missing)."""
    result = frame[[*numeric, *categorical]].copy()
    for column in numeric:
        result[column] = result[column].astype("float64")
    for column in categorical:
        result[column] = result[column].astype(object).where(result[column].notna(), None)
    return result


def log_model(bundle: Any, sample: Any, registered_name: str, workdir: Path,
              version_tags: dict[str, str] | None = None) -> Any:
    """Log ``bundle`` (a ``ModelBundle``) to the active MLflow run as a new version of
    ``registered_name``, with its signature and an input example from ``sample`` (``model_input``:
    the signature is inferred from all of it, so columns with missing values become optional).
    The version is created with ``version_tags`` and tagged as a candidate awaiting evaluation, in
    the registration request itself, so no crash leaves a version that looks evaluated."""
    import lightgbm
    import mlflow
    import numpy
    import pandas
    from mlflow.models import infer_signature

    import warnings

    scoring = bundle.scoring_model()
    artifacts = scoring.save(workdir / "model_artifacts")
    with warnings.catch_warnings():
        # the integer column is the output label (0/1), which is never missing
        warnings.filterwarnings("ignore", message="Hint: Inferred schema contains integer column", category=UserWarning)
        signature = infer_signature(sample, scoring.score(sample))
    return mlflow.pyfunc.log_model(
        name="model",
        python_model=str(MODEL_CODE),
        artifacts=artifacts,
        signature=signature,
        input_example=sample.head(5),
        registered_model_name=registered_name,
        tags={**(version_tags or {}), EVALUATION_TAG: PENDING},
        pip_requirements=[
            f"mlflow=={mlflow.__version__}", f"lightgbm=={lightgbm.__version__}",
            f"pandas=={pandas.__version__}", f"numpy=={numpy.__version__}",
        ],
    )


def load_model(tracking: MlflowTracking, model_uri: str) -> Any:
    """The ``ScoringModel`` of a registered version (``models:/name/version`` or ``models:/name@alias``)."""
    mlflow = tracking.configured_mlflow()
    try:
        with tracking.request_settings():
            loaded = mlflow.pyfunc.load_model(model_uri)
        return loaded.unwrap_python_model().model
    except Exception as exc:  # noqa: BLE001 - any load problem is reported the same way
        raise ModelLoadError(f"{model_uri} cannot be loaded from {tracking.display_uri()} ({type(exc).__name__}: {exc})") from None


def registered_versions(tracking: MlflowTracking, name: str) -> list[str]:
    """Version numbers of registered model ``name``, oldest first (empty when it does not exist)."""
    versions = tracking.client().search_model_versions(f"name = '{name}'")
    return sorted((str(v.version) for v in versions), key=int)


class NoChampionError(LookupError):
    """No version holds the ``champion`` alias."""


def champion_model(tracking: MlflowTracking, spec: Any) -> tuple[str, Any]:
    """``(version, ScoringModel)`` of the version ``champion`` points to; ``NoChampionError`` or
    ``ModelLoadError`` with what the registry holds and what to run."""
    name = spec.registered_model_name
    version = tracking.alias_version(name, CHAMPION)
    if version is None:
        existing = registered_versions(tracking, name)
        if existing:
            state = (
                f"it has version(s) {', '.join(existing)} but none holds '{CHAMPION}' (deleting a version"
                " removes its aliases; a version that failed the quality gate never gets it)"
            )
        else:
            state = "it has no registered version"
        raise NoChampionError(
            f"no '{CHAMPION}' version of model '{name}' in the MLflow registry at {tracking.display_uri()}:"
            f" {state}. Nothing was scored. Run {spec.name}_training_job (its evaluation promotes a model"
            f" that passes the quality gate), or point the alias at a version with"
            f" MlflowClient().set_registered_model_alias('{name}', '{CHAMPION}', <version>)."
        )
    try:
        model = load_model(tracking, f"models:/{name}/{version.version}")
    except ModelLoadError as exc:
        raise ModelLoadError(
            f"alias '{CHAMPION}' of model '{name}' points to version {version.version}, which cannot be"
            f" loaded: {exc}. Was the version or its artifacts deleted, or was it registered by an older"
            " layout of this project? Re-point the alias to a valid version or retrain."
        ) from None
    return str(version.version), model


def abandon_stale_candidates(tracking: MlflowTracking, name: str | None, run_finished: Any,
                             current_run: str | None = None) -> list[str]:
    """Tag every candidate (``evaluation: pending``) of model ``name`` (every model when None) whose
    training run is finished, other than ``current_run``, as abandoned: it never reached the gate,
    so it never holds an alias. ``run_finished(run_id)`` asks the Dagster instance. Returns
    ``name/version`` of each version tagged."""
    query = f"tags.{EVALUATION_TAG} = '{PENDING}'" + (f" and name = '{name}'" if name else "")
    client = tracking.client()
    tagged = []
    for version in client.search_model_versions(query):
        run_id = version.tags.get(DAGSTER_RUN_TAG)
        if not run_id or run_id == current_run or not run_finished(run_id):
            continue
        client.set_model_version_tag(
            version.name, version.version, EVALUATION_TAG,
            f"{ABANDONED}: Dagster run {run_id} ended before the evaluation gate, so this version was"
            " never evaluated and never promoted. The next training run registers a new candidate;"
            " delete this one when you like.",
        )
        tagged.append(f"{version.name}/{version.version}")
    return tagged
