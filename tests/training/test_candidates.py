"""No ungated models: a version left as a candidate by a run that ended before the gate is tagged
abandoned by the next training run (or ./run.sh recover); a live run's candidate is left alone."""

from ml_assets.training.registry import EVALUATION_TAG, PENDING, abandon_stale_candidates
from resources.tracking import MlflowTracking


def test_candidates_of_ended_runs_are_tagged_abandoned_and_hold_no_alias(tmp_path):
    tracking = MlflowTracking(local_dir=str(tmp_path / "mlflow"))
    client = tracking.client()
    client.create_registered_model("m")
    source = tmp_path / "model"
    source.mkdir()
    for run_id in ("crashed-run", "live-run", "current-run"):
        client.create_model_version("m", str(source), tags={EVALUATION_TAG: PENDING, "dagster_run_id": run_id})

    tagged = abandon_stale_candidates(tracking, "m", run_finished=lambda run_id: run_id != "live-run",
                                      current_run="current-run")

    assert tagged == ["m/1"]
    tags = {str(v.version): v.tags[EVALUATION_TAG] for v in client.search_model_versions("name = 'm'")}
    assert tags["1"].startswith("abandoned: Dagster run crashed-run ended before the evaluation gate")
    assert tags["2"] == PENDING and tags["3"] == PENDING
    assert client.get_registered_model("m").aliases == {}
    assert abandon_stale_candidates(tracking, "m", lambda run_id: True, current_run="current-run") == ["m/2"]
