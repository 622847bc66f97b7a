"""Monitoring on a real instance: the reference, the daily drift report and its checks, and the closed
loop from drift alarms through the drift sensor to a retrain the evaluation gate decides.

Real parts: features from the packaged data, a trained champion in an embedded MLflow store,
Evidently. The sensor itself is tested in tests/sensors.
"""

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from ml_assets.metadata import RUN_SUMMARY, rounded
from ml_assets.keys import (
    DATA_DRIFT_CHECK,
    DRIFT_TRIGGER,
    MIN_ROC_AUC_CHECK,
    PREDICTION_DRIFT_CHECK,
    REASON_TAG,
    TRIGGER_TAG,
)
from ml_assets.training.registry import CHAMPION
from resources.parquet_io import atomic_write_parquet
from resources.tracking import MlflowTracking
from sensors.drift import build_drift_sensor
from tests.conftest import (
    Project,
    check_history,
    markdown_rows,
    metadata_of,
    own_store,
    sensor_tick,
    small_pipeline,
    training_keys,
)

pytestmark = pytest.mark.slow  # a real training, real drift reports

DAYS = ["2013-03-13", "2013-03-14"]  # dry days (2013-03-12 rained all day)


@pytest.fixture(scope="module")
def monitored(tmp_path_factory, feature_store):
    """A champion, its reference, and two real days scored and checked for drift."""
    tmp = tmp_path_factory.mktemp("monitored")
    store = own_store(tmp, feature_store)
    home = tmp / "dagster_home"
    home.mkdir()
    with dg.instance_for_test(temp_dir=str(home)) as instance:
        project = Project(small_pipeline(tmp, model={"tuning": {"n_trials": 0}}), store,
                          MlflowTracking(local_dir=str(tmp / "mlflow")), instance)
        keys = project.keys
        assert project.materialize(training_keys()).success
        reference = project.materialize([keys.reference])
        runs = {day: (project.materialize([keys.predictions], day), project.materialize([keys.drift_report], day))
                for day in DAYS}
        yield {"project": project, "store": store, "reference": reference, "runs": runs, "tmp": tmp}


# --------------------------------------------------------------------------- reference and drift


def test_reference_belongs_to_the_champion_and_is_kept_while_it_is(monitored):
    project = monitored["project"]
    md = metadata_of(monitored["reference"], "flights__reference")
    assert md["model_version"] == "1"
    assert md["window"] == "2013-01-15 .. 2013-02-20"  # the champion's training window
    assert md["sample_rows"] == min(20_000, md["source_rows"]) > 1000
    assert set(md["columns"]["numeric"]) >= {"distance", "sched_dep_hour"}
    assert md["columns"]["prediction"] == "delayed_score"
    # every row of the window, labelled or not; no hand-set threshold: every one calibrated on its days
    assert md["labelled_rows"] <= md["source_rows"]
    assert md["calibration"]["by"] == "day" and md["calibration"]["chunks"] == 37 and md["calibration"]["left_out"]
    rows = {r[0]: r for r in markdown_rows(md["thresholds"])}
    assert set(rows) == {*md["columns"]["numeric"], *md["columns"]["categorical"], "delayed_score"}
    assert {r[2] for r in rows.values()} == {"calibrated"}
    assert all(float(r[1]) >= float(r[4]) > 0 for r in rows.values())  # at least the quantile of the days
    again = project.materialize([project.keys.reference])
    assert again.success and again.asset_materializations_for_node("flights__reference") == []
    client = project.tracking.client()
    assert str(client.get_model_version_by_alias("flights_delay", CHAMPION).version) == "1"


def test_ordinary_days_do_not_alarm_and_report_every_column(monitored):
    for day in DAYS:
        scored, drift = monitored["runs"][day]
        assert scored.success and drift.success
        md = metadata_of(drift, "flights__drift_report")
        assert md["data_drift"] is False and md["drifted_columns"] == "none", (day, md["scores"])
        assert 0.0 <= md["share_drifted"] < 0.1 and md["missing_columns"] == "none"
        assert md["prediction_score"] >= 0 and md["rows"] > 500
        assert "html_report" not in md  # rendered only where a person will look
        checks = {e.asset_check_evaluation_data.check_name: e.asset_check_evaluation_data
                  for e in drift.all_events if e.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION}
        assert checks[DATA_DRIFT_CHECK].passed and checks[DATA_DRIFT_CHECK].severity == dg.AssetCheckSeverity.WARN
        assert PREDICTION_DRIFT_CHECK in checks
        stored = pd.read_parquet(monitored["store"] / "flights" / "drift_report" / f"{day}.parquet")
        assert {"distance", "carrier", "delayed_score"} <= set(stored["column"])
        assert stored["score"].notna().all() and (stored["partition_date"] == day).all()


def test_a_range_run_records_each_days_own_predictions_and_drift(monitored):
    """Predictions and drift of both days in one run: each day's metadata is the one-day run's."""
    project = monitored["project"]
    tags = {"dagster/asset_partition_range_start": DAYS[0], "dagster/asset_partition_range_end": DAYS[-1]}
    # HTML reports on request, for every day of the range: each day links its own report
    html = {"ops": {"flights__drift_report": {"config": {"render_html": True}}}}
    result = project.materialize([project.keys.predictions, project.keys.drift_report], tags=tags, run_config=html)
    assert result.success
    report_keys = ("html_report", "html_report_file", "html_bytes")
    for node in ("flights__predictions", "flights__drift_report"):
        per_day = {m.partition: m.metadata for m in result.asset_materializations_for_node(node)}
        assert sorted(per_day) == DAYS
        assert [day for day, md in per_day.items() if RUN_SUMMARY in md] == [DAYS[-1]]
        for day in DAYS:
            single = {k: v for k, v in monitored["runs"][day][0 if node == "flights__predictions" else 1]
                      .asset_materializations_for_node(node)[0].metadata.items() if k != "compute_seconds"}
            own = {k: v for k, v in per_day[day].items()
                   if k not in (RUN_SUMMARY, "compute_seconds", *report_keys)}
            assert own == single, (node, day)
            if node == "flights__drift_report":
                assert per_day[day]["html_report_file"].value.endswith(f"/{day}.html")
                assert per_day[day]["html_bytes"].value > 100_000
    # The check history of each drift check: one real verdict per day and run, none "Skipped", and
    # the range run's verdict of a day is the one-day run's.
    drift_key = project.keys.drift_report
    for check in (DATA_DRIFT_CHECK, PREDICTION_DRIFT_CHECK):
        check_key = dg.AssetCheckKey(drift_key, check)
        history = [row for row in check_history(project.instance, check_key) if row[1] in DAYS]
        assert sorted((partition, status) for status, partition, _ in history) == sorted(
            [(day, "SUCCEEDED") for day in DAYS] * 2), (check, history)
        by_run: dict[str, dict] = {}
        for record in project.instance.event_log_storage.get_asset_check_execution_history(check_key, limit=100):
            evaluation = record.evaluation
            assert evaluation.severity == dg.AssetCheckSeverity.WARN and evaluation.partition == record.partition
            by_run.setdefault(record.run_id, {})[record.partition] = (
                evaluation.passed, evaluation.description, {k: v.value for k, v in evaluation.metadata.items()})
        assert sorted(by_run[result.run_id]) == DAYS
        for day in DAYS:
            assert by_run[result.run_id][day] == by_run[monitored["runs"][day][1].run_id][day], (check, day)
    # the unpartitioned gate of the training run: its one evaluation, nothing skipped
    (gate,) = check_history(project.instance, dg.AssetCheckKey(project.keys.evaluation, MIN_ROC_AUC_CHECK))
    assert gate[0] == "SUCCEEDED" and gate[1] is None and gate[2].passed
    predictions = {m.partition: m.metadata for m in result.asset_materializations_for_node("flights__predictions")}
    stored = pd.read_parquet(monitored["store"] / "flights" / "predictions" / f"{DAYS[0]}.parquet")
    assert predictions[DAYS[0]]["positive_share"].value == rounded(stored["delayed_predicted"].mean())
    assert predictions[DAYS[0]]["dagster/row_count"].value == len(stored)
    # the day's schema and preview, and its missing inputs named by column
    schema = [c.name for c in predictions[DAYS[0]]["dagster/column_schema"].schema.columns]
    assert schema == list(stored.columns)
    preview = markdown_rows(predictions[DAYS[0]]["preview"].value)
    assert len(preview) == min(10, len(stored))
    missing = {row[0]: int(row[1]) for row in markdown_rows(predictions[DAYS[0]]["missing_numeric_inputs"].value)}
    features = pd.read_parquet(monitored["store"] / "flights" / "features" / f"{DAYS[0]}.parquet")
    numeric = features[[c for c in project.spec.features.numeric if c in features]].isna().sum()
    assert missing == {c: int(n) for c, n in numeric.items() if n}


def shifted_store(monitored, tmp_path, change) -> "Project":
    """The monitored project's champion and reference, with a store whose 2013-03-14 features are
    the real ones changed by ``change``."""
    source = monitored["store"]
    store = tmp_path / "store"
    (store / "flights" / "features").mkdir(parents=True)
    day = "2013-03-15"
    real = pd.read_parquet(source / "flights" / "features" / f"{day}.parquet")
    atomic_write_parquet(change(real.copy()), store / "flights" / "features" / f"{day}.parquet")
    project = monitored["project"]
    shifted = Project(project.file, store, project.tracking, project.instance)
    return shifted


def carrier_mix(frame: pd.DataFrame) -> pd.DataFrame:
    """Half the flights moved to one carrier (new flight numbers keep the entity key unique)."""
    moved = np.arange(len(frame)) % 2 == 0
    return frame.assign(carrier=np.where(moved, "UA", frame["carrier"]),
                        flight=np.where(moved, 100_000 + np.arange(len(frame)), frame["flight"]))


@pytest.mark.parametrize(
    ("name", "change", "column"),
    [
        ("distance x1.5", lambda f: f.assign(distance=f["distance"] * 1.5), "distance"),
        ("carrier mix", lambda f: carrier_mix(f), "carrier"),
        ("visibility halved", lambda f: f.assign(visib=f["visib"] / 2), "visib"),
    ],
)
def test_injected_shifts_alarm_name_the_column_and_render_the_html(monitored, tmp_path, monkeypatch, name, change, column):
    monkeypatch.setenv("ML_DATA_DIR", str(tmp_path / "data"))
    project = shifted_store(monitored, tmp_path, change)
    project.resources["tracking"] = project.tracking = MlflowTracking(
        local_dir=monitored["project"].tracking.local_dir, ui_url="http://127.0.0.1:5999",
        dagster_ui_url="http://127.0.0.1:3999")
    assert project.materialize([project.keys.predictions], "2013-03-15").success
    result = project.materialize([project.keys.drift_report], "2013-03-15")
    assert result.success
    md = metadata_of(result, "flights__drift_report")
    assert md["data_drift"] is True and column in md["drifted_columns"].split(", "), (name, md["scores"])
    checks = {e.asset_check_evaluation_data.check_name: e.asset_check_evaluation_data.passed
              for e in result.all_events if e.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION}
    assert checks[DATA_DRIFT_CHECK] is False
    html = md["html_report_file"]
    assert html.startswith(str(tmp_path / "data" / "reports")) and md["html_bytes"] > 100_000
    runs = project.tracking.client().search_runs(
        [project.tracking.client().get_experiment_by_name("flights-monitoring").experiment_id]
    )
    (run,) = [r for r in runs if r.data.tags.get("dagster_run_id") == result.run_id]
    assert run.data.tags["dagster_run_url"] == f"http://127.0.0.1:3999/runs/{result.run_id}"
    # one click from the asset page to the report in the MLflow UI, which previews it
    assert md["html_report"] == (f"http://127.0.0.1:5999/#/experiments/{run.info.experiment_id}/runs/"
                                 f"{run.info.run_id}/artifacts/drift_reports/2013-03-15.html")
    assert [a.path for a in project.tracking.client().list_artifacts(run.info.run_id, "drift_reports")] == [
        "drift_reports/2013-03-15.html"]
    scores = {row[0]: row for row in markdown_rows(md["scores"])}
    assert scores[column][-1] == "yes" and scores["sched_dep_hour"][-1] == "no"


def test_a_day_without_weather_is_missing_data_not_drift_or_a_crash(monitored, tmp_path):
    project = shifted_store(monitored, tmp_path, lambda f: f.assign(precip=np.nan, visib=np.nan))
    assert project.materialize([project.keys.predictions], "2013-03-15").success
    result = project.materialize([project.keys.drift_report], "2013-03-15")
    assert result.success
    md = metadata_of(result, "flights__drift_report")
    assert md["missing_columns"] == "precip, visib" and md["data_drift"] is False


# --------------------------------------------------------------------------- the closed loop (last: it adds a model)


def test_injected_drift_on_real_days_launches_a_rolling_retrain_that_the_gate_decides(monitored, tmp_path):
    """Three real days with a doubled distance feed -> three drift alarms -> the sensor's RunRequest
    -> a real training run on the rolling windows -> the evaluation gate decides."""
    source = monitored["store"] / "flights" / "features"
    store = tmp_path / "store"
    folder = store / "flights" / "features"
    folder.mkdir(parents=True)
    broken = ["2013-03-16", "2013-03-17", "2013-03-18"]
    for file in source.glob("*.parquet"):
        if file.stem in broken:
            frame = pd.read_parquet(file)
            atomic_write_parquet(frame.assign(distance=frame["distance"] * 2), folder / file.name)
        else:
            (folder / file.name).symlink_to(file)
    project = monitored["project"]
    loop = Project(project.file, store, project.tracking, project.instance)
    for day in broken:
        assert loop.materialize([loop.keys.predictions], day).success
        drift = loop.materialize([loop.keys.drift_report], day)
        assert metadata_of(drift, "flights__drift_report")["drifted_columns"] == "distance"
    request, _ = sensor_tick(build_drift_sensor(loop.spec), loop.instance)
    assert isinstance(request, dg.RunRequest), request
    assert request.run_key == "drift-retrain:flights:" + ",".join(broken)
    retrain = dg.materialize(loop.assets, selection=training_keys(), resources=loop.resources, instance=loop.instance,
                             run_config=request.run_config, tags=request.tags)
    assert retrain.success
    windows = metadata_of(retrain, "flights__training_set")["windows"]
    rows = [row[:3] for row in markdown_rows(windows)]
    assert ["test", "2013-03-12", "2013-03-18"] in rows and ["train", "2013-02-03", "2013-03-04"] in rows
    decision = metadata_of(retrain, "flights__model_evaluation")
    assert decision["champion_before"] == "1" and decision["alias"] in (CHAMPION, "challenger")
    assert decision["comparison_method"] == "paired_bootstrap" and 0.0 <= decision["p_value"] <= 1.0
    run = loop.instance.get_run_by_id(retrain.run_id)
    assert run.tags[TRIGGER_TAG] == DRIFT_TRIGGER and "3 drift alarm days" in run.tags[REASON_TAG]
