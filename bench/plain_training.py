"""Baseline for bench_training.py: the flights training job (tuning off) as a plain script, with no
orchestration and none of our ``ml_assets`` helpers for the fit: pandas, LightGBM, scikit-learn,
matplotlib and MLflow used directly.

    .venv/bin/python bench/plain_training.py FEATURES_DIR WORKDIR [RESULT_JSON]

FEATURES_DIR holds the daily ``YYYY-MM-DD.parquet`` feature files (e.g. .data/assets/flights/features);
the MLflow store is ``sqlite:///WORKDIR/mlflow.db`` with artifacts under ``WORKDIR/artifacts``. The
model is registered as ``flights_delay``; best_iteration, the threshold and the test metrics are
printed as one JSON line (and written to RESULT_JSON when given).

What it does, as the Dagster ``flights/training_set`` -> ``flights/model`` -> ``flights/model_evaluation``
steps with ``FLIGHTS_TUNING_TRIALS=0`` do:

* reads the 365 daily files in day order (as the parquet IO manager concatenates the partitions),
  drops rows with an unknown ``delayed`` and splits train 2013-01-01..08-31, validate 09-01..09-30,
  test 10-01..12-31;
* the same preprocessing as ``ml_assets.training.tabular_model.Preprocessing``: numeric -> float64, categoricals ->
  pandas ``category`` with the sorted training levels (unseen and missing -> NaN);
* LightGBM with ``DEFAULT_LGBM_PARAMS`` + the reproducibility settings of ``lightgbm_params`` (seed 0
  for every seed, deterministic, force_row_wise, num_threads 2, verbosity -1), native categoricals,
  at most 2000 rounds, early stopping after 50 rounds without a better validation AUC;
* the F1-maximising threshold on validation (ties -> lowest threshold, rule ``p >= t``);
* the test metrics of ``classification_metrics`` + ECE, the naive (mean of the 28-day route and
  carrier delay rates, training rate as fallback) and logistic-regression baselines (same sklearn
  pipeline as ``logistic_baseline``), and the same 5 plots (ROC, PR, confusion, calibration, feature
  importance);
* logs params, metrics, plots and the model (a pyfunc holding the booster, the category levels and
  the threshold; signature + input example from 2000 training rows) to MLflow and registers a version; sets the ``champion`` alias.

Differences from the Dagster side:

* Dagster also writes the training set to Parquet and reads it back (IO manager) twice (model and
  evaluation), keeps Dagster run/event storage, and records asset metadata (tables, the plots inlined
  as base64 markdown, the asset check result).
* Dagster's model is a self-contained "models from code" pyfunc (``tabular_model.py``) with the booster
  in LightGBM's text format and the preprocessing as JSON; here the pyfunc object itself (cloudpickled
  by MLflow) holds the booster, the category levels and the threshold. The model is not re-loaded from MLflow before the test
  scoring here; Dagster's evaluation step loads it back from the registry.
* Dagster also logs the pipeline YAML, its hash, the git commit (runs ``git``), the days used,
  ``feature_importance.json``, ``evaluation.json`` / ``calibration.json``, model-version tags, and
  computes DeLong tests of the model against both baselines. None of that is done here.
* Dagster's evaluation compares with a ``champion`` when one exists (paired bootstrap); both sides
  here start from an empty store, so there is none and neither side does it.
"""

import json
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
TARGET = "delayed"
DATE = "partition_date"
WINDOWS = {"train": ("2013-01-01", "2013-08-31"), "validate": ("2013-09-01", "2013-09-30"),
           "test": ("2013-10-01", "2013-12-31")}
SEED = 0
PARAMS = {
    "objective": "binary", "metric": "auc", "learning_rate": 0.05, "num_leaves": 63, "min_child_samples": 100,
    "feature_fraction": 0.8, "bagging_fraction": 0.8, "bagging_freq": 1, "lambda_l2": 1.0, "cat_smooth": 10.0,
    "max_cat_to_onehot": 4, "max_bin": 255,
    "seed": SEED, "bagging_seed": SEED, "feature_fraction_seed": SEED, "data_random_seed": SEED,
    "deterministic": True, "force_row_wise": True, "num_threads": 2, "verbosity": -1,
}
REGISTERED_NAME = "flights_delay"


def main(features_dir: Path, workdir: Path, result_path: Path | None) -> None:
    started = time.monotonic()
    import lightgbm as lgb
    import mlflow
    import numpy as np
    import pandas as pd
    import yaml
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from mlflow.models import infer_signature
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import average_precision_score, roc_auc_score
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    spec = yaml.safe_load((REPO_ROOT / "pipelines" / "flights.yaml").read_text())
    numeric, categorical = list(spec["features"]["numeric"]), list(spec["features"]["categorical"])
    columns = [*numeric, *categorical]

    # ---- data
    frame = pd.concat([pd.read_parquet(p) for p in sorted(features_dir.glob("*.parquet"))], ignore_index=True)
    days = frame[DATE].astype(str).str.slice(0, 10)
    splits = {}
    for name, (lo, hi) in WINDOWS.items():
        mask = (days >= lo) & (days <= hi) & frame[TARGET].notna()
        splits[name] = frame.loc[mask.to_numpy()].reset_index(drop=True)
    train, validate, test = splits["train"], splits["validate"], splits["test"]
    loaded = time.monotonic()

    # ---- preprocessing (as tabular_model.Preprocessing)
    levels = {c: sorted(train[c].dropna().astype(str).unique().tolist()) for c in categorical}

    def matrix_with(part: pd.DataFrame, levels: dict) -> pd.DataFrame:
        out = {c: pd.to_numeric(part[c], errors="coerce").astype("float64").to_numpy() for c in numeric}
        for c in categorical:
            values = part[c].astype(object).where(part[c].notna(), None).map(lambda v: v if v is None else str(v))
            out[c] = pd.Categorical(values.to_numpy(), dtype=pd.CategoricalDtype(levels[c]))
        return pd.DataFrame(out, index=part.index, columns=columns)

    def matrix(part: pd.DataFrame) -> pd.DataFrame:
        return matrix_with(part, levels)

    y_train = train[TARGET].to_numpy("float64")
    y_valid = validate[TARGET].to_numpy("float64")
    y_test = test[TARGET].to_numpy("float64")

    # ---- LightGBM
    train_set = lgb.Dataset(matrix(train), label=y_train, categorical_feature=categorical, free_raw_data=True)
    valid_set = lgb.Dataset(matrix(validate), label=y_valid, reference=train_set)
    booster = lgb.train(PARAMS, train_set, num_boost_round=2000, valid_sets=[valid_set], valid_names=["validate"],
                        callbacks=[lgb.early_stopping(50, first_metric_only=True, verbose=False)])
    best_iteration = int(booster.best_iteration or booster.current_iteration())
    gains = booster.feature_importance(importance_type="gain", iteration=best_iteration)
    importance = dict(sorted(zip(columns, map(float, gains)), key=lambda kv: kv[1], reverse=True))
    p_valid = booster.predict(matrix(validate), num_iteration=best_iteration)
    fitted = time.monotonic()

    # ---- F1 threshold on validation (lowest of the tied maximisers)
    order = np.argsort(-p_valid, kind="mergesort")
    ps, ys = p_valid[order], y_valid[order]
    last = np.r_[np.flatnonzero(np.diff(ps)), len(ps) - 1]
    tp = np.cumsum(ys)[last]
    predicted = (last + 1).astype("float64")
    f1 = 2 * tp / (predicted + y_valid.sum())
    threshold = float(ps[last][len(f1) - 1 - int(np.argmax(f1[::-1]))])

    # ---- test metrics
    p_test = booster.predict(matrix(test), num_iteration=best_iteration)
    label = (p_test >= threshold).astype("int64")
    pos = y_test == 1
    tp_, fp_ = int((label.astype(bool) & pos).sum()), int((label.astype(bool) & ~pos).sum())
    fn_ = int((~label.astype(bool) & pos).sum())
    n = len(y_test)
    eps = np.finfo(np.float64).eps
    clipped = np.clip(p_test, eps, 1 - eps)
    bins = np.clip(np.floor(p_test * 10).astype(int), 0, 9)
    counts = np.bincount(bins, minlength=10)
    keep = counts > 0
    gap = np.abs(np.bincount(bins, y_test, 10)[keep] / counts[keep] - np.bincount(bins, p_test, 10)[keep] / counts[keep])
    metrics = {
        "roc_auc": float(roc_auc_score(y_test, p_test)),
        "pr_auc": float(average_precision_score(y_test, p_test)),
        "log_loss": float(-np.mean(y_test * np.log(clipped) + (1 - y_test) * np.log1p(-clipped))),
        "brier": float(np.mean((p_test - y_test) ** 2)),
        "precision": tp_ / (tp_ + fp_) if tp_ + fp_ else 0.0,
        "recall": tp_ / (tp_ + fn_) if tp_ + fn_ else 0.0,
        "f1": 2 * tp_ / (2 * tp_ + fp_ + fn_),
        "accuracy": float((label == y_test).mean()),
        "threshold": threshold,
        "ece": float((counts[keep] * gap).sum() / n),
    }

    # ---- baselines
    rates = test[["route_delay_rate_28d", "carrier_delay_rate_28d"]].to_numpy("float64")
    with np.errstate(all="ignore"):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            naive = np.nanmean(rates, axis=1)
    naive = np.where(np.isnan(naive), float(y_train.mean()), naive)
    logistic = Pipeline([
        ("prepare", ColumnTransformer([
            ("numeric", Pipeline([("impute", SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True)),
                                  ("scale", StandardScaler())]), numeric),
            ("categorical", Pipeline([("impute", SimpleImputer(strategy="constant", fill_value="__missing__")),
                                      ("onehot", OneHotEncoder(handle_unknown="ignore", min_frequency=20))]), categorical),
        ])),
        ("classify", LogisticRegression(C=1.0, max_iter=500, random_state=SEED)),
    ])

    def raw(part: pd.DataFrame) -> pd.DataFrame:
        x = part[columns].copy()
        for c in numeric:
            x[c] = x[c].astype("float64")
        for c in categorical:
            x[c] = x[c].astype(object).where(x[c].notna(), None)
        return x

    logistic.fit(raw(train), y_train.astype(int))
    p_logistic = logistic.predict_proba(raw(test))[:, 1]
    baselines = {"naive_roc_auc": float(roc_auc_score(y_test, naive)),
                 "logistic_roc_auc": float(roc_auc_score(y_test, p_logistic))}
    evaluated = time.monotonic()

    # ---- plots
    with tempfile.TemporaryDirectory() as tmp:
        plots = Path(tmp)

        def figure(w=5.0, h=4.0):
            fig = Figure(figsize=(w, h), dpi=100)
            FigureCanvasAgg(fig)
            return fig

        def save(fig, name):
            fig.tight_layout()
            fig.savefig(plots / name, format="png", dpi=100)

        from sklearn.metrics import precision_recall_curve, roc_curve

        fig = figure(); ax = fig.add_subplot()
        fpr, tpr, _ = roc_curve(y_test, p_test)
        ax.plot(fpr, tpr, label=f"model (AUC {metrics['roc_auc']:.3f})"); ax.plot([0, 1], [0, 1], "--", color="grey")
        ax.set(xlabel="False positive rate", ylabel="True positive rate", title="ROC curve"); ax.legend(loc="lower right")
        save(fig, "roc.png")
        fig = figure(); ax = fig.add_subplot()
        prec, rec, _ = precision_recall_curve(y_test, p_test)
        ax.step(rec, prec, where="post", label=f"model (AP {metrics['pr_auc']:.3f})")
        ax.axhline(y_test.mean(), linestyle="--", color="grey")
        ax.set(xlabel="Recall", ylabel="Precision", title="Precision-recall curve"); ax.legend(loc="upper right")
        save(fig, "pr.png")
        fig = figure(4.2, 3.8); ax = fig.add_subplot()
        cm = np.zeros((2, 2), dtype=int); np.add.at(cm, (y_test.astype(int), label), 1)
        ax.imshow(cm, cmap="Blues")
        for i in range(2):
            for j in range(2):
                ax.text(j, i, f"{cm[i, j]}\n{cm[i, j] / max(cm[i].sum(), 1):.1%}", ha="center", va="center")
        ax.set(xlabel="Predicted", ylabel="Actual", title="Confusion matrix")
        save(fig, "confusion.png")
        fig = figure(5.0, 5.5); top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
        top.plot([0, 1], [0, 1], "--", color="grey")
        top.plot(np.bincount(bins, p_test, 10)[keep] / counts[keep], np.bincount(bins, y_test, 10)[keep] / counts[keep],
                 marker="o", label=f"model (ECE {metrics['ece']:.3f})")
        top.set(ylabel="Observed positive rate", title="Calibration"); top.legend(loc="upper left")
        bottom.hist(p_test, bins=10, range=(0, 1)); bottom.set(xlabel="Predicted probability", ylabel="Rows")
        save(fig, "calibration.png")
        ranked = list(importance.items())[:20][::-1]
        fig = figure(6.0, max(2.0, 0.3 * len(ranked) + 1.0)); ax = fig.add_subplot()
        ax.barh([k for k, _ in ranked], [v for _, v in ranked]); ax.set(xlabel="Importance", title="Feature importance")
        save(fig, "feature_importance.png")

        # ---- MLflow
        mlflow.set_tracking_uri(f"sqlite:///{workdir / 'mlflow.db'}")
        client = mlflow.MlflowClient()
        experiment = client.get_experiment_by_name("flights") or None
        experiment_id = experiment.experiment_id if experiment else client.create_experiment(
            "flights", artifact_location=(workdir / "artifacts" / "flights").as_uri())
        with mlflow.start_run(experiment_id=experiment_id, run_name="flights-model-plain") as run:
            mlflow.log_params({k: v for k, v in PARAMS.items() if k != "num_threads"})
            mlflow.log_params({"best_iteration": best_iteration, "threshold": round(threshold, 6),
                               **{f"{k}_rows": len(v) for k, v in splits.items()}})
            mlflow.log_metrics({f"test_{k}": v for k, v in metrics.items()} | baselines)
            mlflow.log_artifacts(str(plots), "plots")
            sample = raw(train.sample(min(len(train), 2000), random_state=SEED))

            class PlainModel(mlflow.pyfunc.PythonModel):
                """The booster + the category levels + the threshold: raw feature columns in, score/label out."""

                def __init__(self, booster, levels, threshold):
                    self.booster, self.levels, self.threshold = booster, levels, threshold

                def predict(self, context, model_input, params=None):
                    score = self.booster.predict(matrix_with(model_input, self.levels), num_iteration=best_iteration)
                    return pd.DataFrame({"score": score, "label": (score >= self.threshold).astype("int64")},
                                        index=model_input.index)

            model = PlainModel(booster, levels, threshold)
            signature = infer_signature(sample, model.predict(None, sample))
            info = mlflow.pyfunc.log_model(name="model", python_model=model, signature=signature,
                                           input_example=sample.head(5), registered_model_name=REGISTERED_NAME,
                                           pip_requirements=[f"lightgbm=={lgb.__version__}", f"pandas=={pd.__version__}",
                                                             f"mlflow=={mlflow.__version__}"])
        version = str(info.registered_model_version)
        client.set_registered_model_alias(REGISTERED_NAME, "champion", version)
    finished = time.monotonic()
    result = {"best_iteration": best_iteration, "threshold": threshold, "test": metrics, **baselines,
              "rows": {k: len(v) for k, v in splits.items()}, "version": version, "run_id": run.info.run_id,
              "seconds": {"load_split": loaded - started, "fit": fitted - loaded, "evaluate": evaluated - fitted,
                          "plots_mlflow": finished - evaluated, "total": finished - started}}
    print(json.dumps(result))
    if result_path:
        result_path.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]) if len(sys.argv) > 3 else None)
