"""The flights model's test ROC-AUC on the YAML's standard windows, from a saved feature frame.

Builds the training set of ``pipelines/flights.yaml`` (train Jan-Aug, validate Sep, test Oct-Dec
2013) from a feature frame written by ``bench/bench_features.py --save``, fits the model as the
training job does (``ml_assets.training.fitting.fit_model``: LightGBM early-stopped on validate;
tuning with the YAML's trials and timeout unless ``--trials 0``) and prints the test ROC-AUC:

    PYTHONPATH=$PWD python bench/bench_features.py --save /tmp/features.parquet
    PYTHONPATH=$PWD python bench/flights_auc.py /tmp/features.parquet --trials 0
"""

from __future__ import annotations

import argparse


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("features", help="Parquet feature frame of the year (bench/bench_features.py --save)")
    parser.add_argument("--trials", type=int, default=None, help="tuning trials (default: the YAML's)")
    args = parser.parse_args()

    import pandas as pd
    from sklearn.metrics import roc_auc_score

    from ml_assets.config import load_pipeline
    from ml_assets.config.paths import REPO_ROOT
    from ml_assets.training.boosting import predict_proba
    from ml_assets.training.fitting import fit_model
    from ml_assets.training.windows import build_training_set, split_rows

    spec = load_pipeline(REPO_ROOT / "pipelines" / "flights.yaml")
    if args.trials is not None:
        model = spec.model.model_copy(update={"tuning": spec.model.tuning.model_copy(update={"n_trials": args.trials})})
        spec = spec.model_copy(update={"model": model})
    frame = pd.read_parquet(args.features)
    training_set, windows = build_training_set(frame, spec)
    fitted = fit_model(training_set, spec)
    test = split_rows(training_set, "test")
    auc = roc_auc_score(test[spec.target.name], predict_proba(fitted.bundle, test))
    print(f"windows {windows}; tuning trials {spec.model.tuning.n_trials}; features"
          f" {len(spec.features.numeric) + len(spec.features.categorical)}; test rows {len(test)};"
          f" test ROC-AUC {auc:.4f} (fit {fitted.fit_seconds:.0f} s)")


if __name__ == "__main__":
    main()
