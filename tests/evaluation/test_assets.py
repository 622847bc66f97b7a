"""The evaluation stage on real data: the new model version on the test window against baselines and
the champion, the promotion gate that moves the ``champion`` / ``challenger`` aliases, and its
blocking quality check (shared ``trained`` project: tests/conftest.py)."""

import dagster as dg
import numpy as np
import pytest

from ml_assets.keys import MIN_ROC_AUC_CHECK
from ml_assets.training.registry import CHALLENGER, CHAMPION
from resources.tracking import MlflowTracking
from tests.conftest import (
    Project,
    check_passes,
    failure_message,
    metadata_of,
    own_store,
    small_pipeline,
    training_keys,
)

pytestmark = pytest.mark.slow  # real trainings


def test_first_model_becomes_champion_and_evaluation_reports_metrics_baselines_plots(trained):
    md = metadata_of(trained["first"], "flights__model_evaluation")
    assert md["alias"] == CHAMPION and md["promoted"] is True and md["champion_before"] == "none"
    assert "no champion yet" in md["decision"]
    for name in ("test_roc_auc", "test_pr_auc", "test_log_loss", "test_brier", "test_precision", "test_recall",
                 "test_f1", "test_ece", "test_threshold"):
        assert np.isfinite(md[name]), name
    assert 0.6 < md["test_roc_auc"] < 0.95
    assert md["test_roc_auc"] > md["naive_baseline_roc_auc"] > 0.5
    assert 0.5 < md["logistic_baseline_roc_auc"] < 0.95
    for name in ("naive", "logistic"):  # paired DeLong test against each baseline on the same rows
        # metadata is rounded to 4 significant digits
        assert md[f"vs_{name}_delta_auc"] == pytest.approx(md["test_roc_auc"] - md[f"{name}_baseline_roc_auc"], abs=2e-4)
        assert 0.0 <= md[f"vs_{name}_p_value"] <= 1.0
    assert md["vs_naive_p_value"] < 0.05
    for title in ("ROC curve", "Precision-recall curve", "Confusion matrix", "Calibration", "Feature importance"):
        assert f"**{title}" in md["plots"]
    assert md["plots"].count("data:image/png;base64,") == 5
    assert check_passes(trained["first"]) == {MIN_ROC_AUC_CHECK: True}
    client = trained["project"].client()
    assert str(client.get_model_version_by_alias("flights_delay", CHAMPION).version) == "1"
    run_id = metadata_of(trained["first"], "flights__model")["mlflow_run_id"]
    plots = {a.path for a in client.list_artifacts(run_id, "evaluation/plots")}
    assert {f"evaluation/plots/{n}.png" for n in ("roc", "pr", "confusion", "calibration")} <= plots
    assert client.get_run(run_id).data.metrics["test_roc_auc"] == pytest.approx(md["test_roc_auc"], abs=1e-4)


def test_same_data_and_seed_give_the_same_model_which_stays_challenger(trained):
    first = metadata_of(trained["first"], "flights__model_evaluation")
    second = metadata_of(trained["second"], "flights__model_evaluation")
    assert metadata_of(trained["second"], "flights__model")["model_version"] == "2"
    assert second["test_roc_auc"] == first["test_roc_auc"]  # deterministic training
    assert second["comparison_method"] == "paired_bootstrap"
    assert second["effect_size"] == 0.0 and second["p_value"] == 1.0
    assert second["alias"] == CHALLENGER and second["promoted"] is False and second["champion_before"] == "1"
    assert "Kept as challenger" in second["decision"]
    client = trained["project"].client()
    assert str(client.get_model_version_by_alias("flights_delay", CHAMPION).version) == "1"
    assert str(client.get_model_version_by_alias("flights_delay", CHALLENGER).version) == "2"


def test_a_model_below_the_floor_is_never_promoted_and_nothing_is_scored(tmp_path, feature_store, instance):
    store = own_store(tmp_path, feature_store)
    project = Project(small_pipeline(tmp_path, evaluation={"min_roc_auc": 0.99}), store,
                      MlflowTracking(local_dir=str(tmp_path / "mlflow")), instance)
    (gate,) = project.asset(project.keys.evaluation).check_specs
    assert gate.name == MIN_ROC_AUC_CHECK and gate.blocking  # stops downstream assets in a run
    result = project.materialize(training_keys())
    (evaluation,) = [e for e in result.all_events if e.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION]
    assert evaluation.asset_check_evaluation_data.passed is False
    assert evaluation.asset_check_evaluation_data.severity == dg.AssetCheckSeverity.ERROR
    md = metadata_of(result, "flights__model_evaluation")
    assert md["alias"] == "none" and md["promoted"] is False and "quality gate failed" in md["decision"]
    client = project.client()
    assert [v.aliases for v in client.search_model_versions("name = 'flights_delay'")] == [[]]
    # scoring now has no champion: a clear failure and no predictions file
    scored = project.materialize([project.keys.predictions], partition_key="2013-03-12")
    assert not scored.success
    message = failure_message(scored)
    assert "no 'champion' version of model 'flights_delay'" in message and "version(s) 1" in message
    assert "flights_training_job" in message
    assert not (store / "flights" / "predictions").exists()
