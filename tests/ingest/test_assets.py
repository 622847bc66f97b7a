"""Layers 2-4: the generated flights ingest assets (raw data and features) on real packaged data, and
their blocking checks on bad data.

Bad input must give a failing check or a clear error naming the file, column and rule, must not run
the downstream assets, and must leave every stored partition exactly as it was.
"""

import json

import dagster as dg
import pandas as pd
import pytest

from ml_assets.config.tabular import FileSource, PipelineSpec, SqlSource
from ml_assets.features.assets import build_features_asset
from ml_assets.ingest.assets import build_ingest_defs, daily_partitions
from ml_assets.ingest.validation import CHECK_DESCRIPTIONS, CHECK_GROUPS
from ml_assets.keys import pipeline_keys
from ml_assets.metadata import RUN_SUMMARY, rounded
from tests.conftest import check_history, markdown_rows

LEAKAGE = {"dep_time", "dep_delay", "arr_time", "air_time", "arr_delay", "tailnum"}


def ingest_assets(spec: PipelineSpec) -> list[dg.AssetsDefinition]:
    """The raw assets (with their checks) and the features asset of ``spec``."""
    partitions_def = daily_partitions(spec)
    return [*build_ingest_defs(spec, partitions_def).assets, build_features_asset(spec, partitions_def)]


def raw_assets(spec: PipelineSpec, assets: list[dg.AssetsDefinition]) -> list[dg.AssetsDefinition]:
    raw_keys = {pipeline_keys(spec).raw(source) for source in spec.sources}
    return [a for a in assets if a.key in raw_keys]


def range_tags(start: str, end: str) -> dict[str, str]:
    return {"dagster/asset_partition_range_start": start, "dagster/asset_partition_range_end": end}


def check_evaluations(result) -> dict[tuple[str, str, str | None], object]:
    """``{(asset, check, partition): evaluation}`` of a run (the raw assets' checks are per day)."""
    return {
        (e.asset_check_evaluation_data.asset_key.path[-1], e.asset_check_evaluation_data.check_name,
         e.asset_check_evaluation_data.partition): e.asset_check_evaluation_data
        for e in result.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION"
    }


def same_metadata(ranged: dict, single: dict) -> bool:
    """Whether a day's metadata from a range run equals a one-day run's (apart from the run summary)."""
    return {k: v for k, v in ranged.items() if k != RUN_SUMMARY} == dict(single)


def metadata_text(evaluation) -> str:
    return json.dumps({k: str(v.value) for k, v in evaluation.metadata.items()})


def test_raw_asset_called_directly_with_a_partition_context(flights_spec, resources):
    assets = ingest_assets(flights_spec)
    raw_flights = next(a for a in assets if a.key == pipeline_keys(flights_spec).raw("flights"))
    context = dg.build_asset_context(partition_key="2013-03-08", resources={"data_source": resources["data_source"]})
    events = list(raw_flights(context))
    outputs = [e for e in events if isinstance(e, dg.Output)]
    checks = {e.check_name: e for e in events if isinstance(e, dg.AssetCheckResult)}
    assert len(outputs) == 1
    frame = outputs[0].value
    assert len(frame) == 979
    assert outputs[0].metadata["dagster/row_count"].value == 979
    assert set(checks) == set(CHECK_GROUPS)
    assert all(c.passed for c in checks.values())


@pytest.mark.slow
def test_materialize_real_partitions_with_28_days_of_history(flights_spec, resources, instance, tmp_path):
    assets = ingest_assets(flights_spec)
    raws = raw_assets(flights_spec, assets)
    assert len(raws) == 2
    first = dg.materialize(raws, resources=resources, instance=instance, tags=range_tags("2013-02-07", "2013-03-08"))
    assert first.success
    evaluations = check_evaluations(first)
    assert len(evaluations) == 12 * 30  # each check once per day of the range
    failed = {k: v for k, v in evaluations.items() if not v.passed}
    # The only real-data finding in this window: the 1048 mph wind reading at EWR on 2013-02-12,
    # reported with WARN severity (weather ranges warn), on that day, and masked in the features.
    wind = ("raw_weather", "ranges", "2013-02-12")
    assert set(failed) == {wind}
    assert failed[wind].severity == dg.AssetCheckSeverity.WARN
    assert "wind_speed" in metadata_text(failed[wind])
    # The UI's description of a failed check is the broken rule (the day's own rows); of a passed
    # check, the rule group.
    assert failed[wind].description == (
        "column 'wind_speed': wind_speed >= 0 and <= 150: 1 of 72 rows (1.39%) out of range; min 4.60312,"
        " max 1048.36 on 2013-02-12"
    )
    assert evaluations[("raw_flights", "ranges", "2013-02-12")].description == CHECK_DESCRIPTIONS["ranges"]
    # ./run.sh main ends with the same finding, read back from the instance.
    from scripts.run_main import failed_checks

    graph = dg.Definitions(assets=raws, resources=resources).resolve_asset_graph()
    assert failed_checks(instance, graph) == [
        "    flights/raw_weather [2013-02-12] ranges (WARN): column 'wind_speed': wind_speed >= 0 and <= 150:"
        " 1 of 72 rows (1.39%) out of range; min 4.60312, max 1048.36 on 2013-02-12"
    ]
    stored = tmp_path / "data" / "flights" / "raw_flights"
    assert len(list(stored.glob("*.parquet"))) == 30
    # Each day of the range run carries its own metadata; the whole run's figures once, on the last day.
    per_day = {m.partition: m.metadata for m in first.asset_materializations_for_node("flights__raw_flights")}
    assert len(per_day) == 30
    for day in ("2013-02-08", "2013-03-08"):
        assert per_day[day]["dagster/row_count"].value == len(pd.read_parquet(stored / f"{day}.parquet"))
    assert per_day["2013-03-08"]["dagster/row_count"].value == 979
    assert [day for day, md in per_day.items() if RUN_SUMMARY in md] == ["2013-03-08"]
    (summary,) = markdown_rows(per_day["2013-03-08"][RUN_SUMMARY].value.split("\n\n", 1)[1])
    assert summary[:2] == ["30", str(sum(m["dagster/row_count"].value for m in per_day.values()))]
    second = dg.materialize(assets, selection=[pipeline_keys(flights_spec).features], resources=resources,
                            instance=instance, tags=range_tags("2013-03-07", "2013-03-08"))
    assert second.success
    features = pd.read_parquet(tmp_path / "data" / "flights" / "features" / "2013-03-08.parquet")
    assert len(features) == 979
    assert not LEAKAGE & set(features.columns)
    expected = {*flights_spec.features.numeric, *flights_spec.features.categorical, "delayed", "partition_date"}
    assert expected <= set(features.columns)
    assert features.carrier_delay_rate_28d.notna().mean() > 0.95  # 28 days of real history present
    assert set(features.delayed.dropna().unique()) <= {0.0, 1.0}
    materializations = {m.partition: m for m in second.asset_materializations_for_node("flights__features")}
    assert set(materializations) == {"2013-03-07", "2013-03-08"}
    materialization = materializations["2013-03-08"]
    assert materialization.metadata["dagster/row_count"].value == 979
    raw_day = pd.read_parquet(tmp_path / "data" / "flights" / "raw_flights" / "2013-03-08.parquet")
    known = raw_day.arr_delay.dropna()
    # 2013-03-08 was a snowstorm day in New York: most arrivals were late.
    assert materialization.metadata["positive_rate"].value == rounded((known > 15).mean()) == 0.792  # 4 digits
    assert materialization.metadata["label_known_rows"].value == len(known)
    schema = {c.name: c.description for c in materialization.metadata["dagster/column_schema"].schema.columns}
    assert schema["carrier"] == "Two-letter carrier code."  # from the YAML
    assert schema["temp"].startswith("Temperature at the origin at the scheduled hour")

    # A range run records, for each day, what a run of that one day records.
    ranged = {
        "flights__raw_flights": {m.partition: m.metadata for m in first.asset_materializations_for_node(
            "flights__raw_flights")},
        "flights__features": {m.partition: m.metadata for m in second.asset_materializations_for_node(
            "flights__features")},
    }
    for node, key, day in (("flights__raw_flights", pipeline_keys(flights_spec).raw("flights"), "2013-02-20"),
                           ("flights__raw_flights", pipeline_keys(flights_spec).raw("flights"), "2013-03-08"),
                           ("flights__features", pipeline_keys(flights_spec).features, "2013-03-08")):
        alone = dg.materialize(assets, selection=[key], resources=resources, instance=instance, partition_key=day)
        (single,) = alone.asset_materializations_for_node(node)
        assert same_metadata(ranged[node][day], single.metadata), (node, day)
    raw_md = ranged["flights__raw_flights"]["2013-03-08"]
    assert "dep_time" in raw_md["null_counts"].value  # the day's nulls, named by column
    day_nulls = pd.read_parquet(stored / "2013-03-08.parquet").isna().sum()
    assert [row for row in markdown_rows(raw_md["null_counts"].value) if row[0] == "dep_time"] == [
        ["dep_time", str(day_nulls["dep_time"])]]
    preview = raw_md["preview"].value
    header = [cell.strip() for cell in preview.splitlines()[0].strip("|").split("|")]
    assert {(row[header.index("month")], row[header.index("day")]) for row in markdown_rows(preview)} == {("3", "8")}


def evaluation_values(evaluation) -> tuple:
    """What a person reads of one check evaluation: verdict, severity, description and metadata."""
    return (evaluation.passed, evaluation.severity, evaluation.description,
            {k: v.value for k, v in evaluation.metadata.items()})


@pytest.mark.slow
def test_check_history_has_one_real_evaluation_per_check_and_day_and_no_skipped_rows(
    flights_spec, resources, instance
):
    """A range run over three days and a run of its middle day leave, for every check of both raw
    assets, exactly four evaluations in the check history (one per day and run, none "Skipped"),
    and the range run's evaluation of a day is what the one-day run records."""
    raws = raw_assets(flights_spec, ingest_assets(flights_spec))
    days = ["2013-02-11", "2013-02-12", "2013-02-13"]
    ranged = dg.materialize(raws, resources=resources, instance=instance, tags=range_tags(days[0], days[-1]))
    single = dg.materialize(raws, resources=resources, instance=instance, partition_key=days[1])
    assert ranged.success and single.success
    graph = dg.Definitions(assets=raws, resources=resources).resolve_asset_graph()
    assert len(graph.asset_check_keys) == 12
    for check_key in graph.asset_check_keys:
        history = check_history(instance, check_key)
        # only real verdicts: nothing planned and left unevaluated (the UI's "Skipped")
        assert {status for status, _, _ in history} <= {"SUCCEEDED", "FAILED"}, (check_key, history)
        source = check_key.asset_key.path[-1].removeprefix("raw_")
        warn = check_key.name in flights_spec.sources[source].validation.warn_only  # the YAML's say
        wind = source == "weather" and check_key.name == "ranges"
        expected = {day: "FAILED" if wind and day == "2013-02-12" else "SUCCEEDED" for day in days}
        assert sorted((partition, status) for status, partition, _ in history) == sorted(
            [(day, expected[day]) for day in days] + [(days[1], expected[days[1]])]), check_key
        by_run: dict[str, dict[str, tuple]] = {}
        for record in instance.event_log_storage.get_asset_check_execution_history(check_key, limit=100):
            evaluation = record.evaluation
            assert evaluation.partition == record.partition
            assert evaluation.severity == (dg.AssetCheckSeverity.WARN if warn else dg.AssetCheckSeverity.ERROR)
            by_run.setdefault(record.run_id, {})[record.partition] = evaluation_values(evaluation)
        assert sorted(by_run[ranged.run_id]) == days and list(by_run[single.run_id]) == [days[1]]
        # the middle day: the range run's verdict and metadata are the one-day run's
        assert by_run[ranged.run_id][days[1]] == by_run[single.run_id][days[1]], check_key
    status, partition, newest = check_history(
        instance, dg.AssetCheckKey(pipeline_keys(flights_spec).raw("weather"), "ranges"))[0]
    assert (status, partition) == ("FAILED", "2013-02-12")
    assert newest.metadata["unexpected_rows"].value == 1 and "wind_speed" in newest.description


# --------------------------------------------------------------------------- bad input

@pytest.fixture()
def csv_pipeline(flights_spec, march_flights, tmp_path):
    """The flights pipeline reading a CSV copy of real 2013-03-07/08 flights, with 1 day of history."""
    path = tmp_path / "flights_source.csv"
    rows = march_flights[march_flights.day.isin([7, 8])].reset_index(drop=True)
    rows.to_csv(path, index=False)
    original = flights_spec.sources["flights"]

    def build(source=None):
        source = source or FileSource(kind="csv", path=str(path), entity_key=original.entity_key,
                                      validation=original.validation)
        spec = flights_spec.model_copy(update={
            "sources": {**flights_spec.sources, "flights": source},
            "features": flights_spec.features.model_copy(update={"history_days": 1}),
        })
        return spec, ingest_assets(spec)

    return build, path, rows


@pytest.fixture()
def stored_good_day(csv_pipeline, resources, instance, tmp_path):
    """Materialize the good data once: raw 03-07..03-08 and features of 03-08."""
    build, _, _ = csv_pipeline
    spec, assets = build()
    assert dg.materialize(raw_assets(spec, assets), resources=resources, instance=instance,
                          tags=range_tags("2013-03-07", "2013-03-08")).success
    assert dg.materialize(assets, selection=[pipeline_keys(spec).features], resources=resources,
                          instance=instance, partition_key="2013-03-08").success
    root = tmp_path / "data" / "flights"
    files = {p: p.read_bytes() for p in root.rglob("2013-03-08.parquet")}
    assert len(files) == 3
    return files


def _corrupt(rows: pd.DataFrame, how: str) -> pd.DataFrame:
    day8 = rows.day == 8
    bad = rows.copy()
    if how == "missing_column":
        return bad.drop(columns=["carrier"])
    if how == "wrong_dtype":
        bad["distance"] = bad["distance"].astype(object)
        bad.loc[day8.idxmax(), "distance"] = "far"
    elif how == "all_null_key":
        bad["flight"] = bad["flight"].astype("Float64")
        bad.loc[day8, "flight"] = None
    elif how == "negative_distance":
        bad.loc[bad.index[day8][:3], "distance"] = -100
    elif how == "duplicate_keys":
        bad = pd.concat([bad, bad[day8].head(2)], ignore_index=True)
    elif how == "unknown_category":
        bad.loc[bad.index[day8][:2], "origin"] = "XXX"
    return bad


@pytest.mark.parametrize(
    ("how", "group", "column"),
    [
        ("missing_column", "schema", "carrier"),
        ("wrong_dtype", "schema", "distance"),
        ("all_null_key", "not_null", "flight"),
        ("negative_distance", "ranges", "distance"),
        ("duplicate_keys", "unique", "flight"),
        ("unknown_category", "allowed_values", "origin"),
    ],
)
def test_bad_rows_fail_a_blocking_check_and_keep_stored_data(
    csv_pipeline, stored_good_day, resources, instance, how, group, column
):
    build, path, rows = csv_pipeline
    _corrupt(rows, how).to_csv(path, index=False)
    _, assets = build()
    result = dg.materialize(assets, resources=resources, instance=instance,
                            partition_key="2013-03-08", raise_on_error=False)
    assert not result.success
    evaluation = check_evaluations(result)[("raw_flights", group, "2013-03-08")]
    assert evaluation.passed is False
    assert evaluation.severity == dg.AssetCheckSeverity.ERROR
    text = metadata_text(evaluation)
    assert column in text
    assert not result.asset_materializations_for_node("flights__raw_flights")
    assert "flights__features" not in {e.step_key for e in result.all_events if e.event_type_value == "STEP_START"}
    for file, content in stored_good_day.items():
        assert file.read_bytes() == content, f"{file} changed"


@pytest.mark.parametrize("how", ["empty_file", "non_utf8", "truncated_parquet", "unreachable_sql"])
def test_unreadable_sources_fail_clearly_and_keep_stored_data(
    flights_spec, csv_pipeline, stored_good_day, resources, instance, tmp_path, monkeypatch, how
):
    build, path, rows = csv_pipeline
    original = flights_spec.sources["flights"]
    source = None
    if how == "empty_file":
        path.write_bytes(b"")
        expected = [path.name, "is empty"]
    elif how == "non_utf8":
        path.write_bytes(path.read_bytes().replace(b"UA", b"\xff\xfe", 1))
        expected = [path.name, "not valid UTF-8"]
    elif how == "truncated_parquet":
        parquet = tmp_path / "flights_source.parquet"
        rows.to_parquet(parquet, index=False)
        parquet.write_bytes(parquet.read_bytes()[:4000])
        source = FileSource(kind="parquet", path=str(parquet), entity_key=original.entity_key,
                            validation=original.validation)
        expected = [parquet.name, "Parquet"]
    else:
        monkeypatch.setenv("TEST_FLIGHTS_URL", "postgresql+psycopg2://u:pw@127.0.0.1:1/db?connect_timeout=2")
        source = SqlSource(kind="sql", query="SELECT * FROM flights", connection_env="TEST_FLIGHTS_URL",
                           entity_key=original.entity_key, validation=original.validation)
        expected = ["TEST_FLIGHTS_URL", "cannot query the database"]
    _, assets = build(source)
    result = dg.materialize(assets, resources=resources, instance=instance,
                            partition_key="2013-03-08", raise_on_error=False)
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    message = failure.event_specific_data.error.cause.message if failure.event_specific_data.error.cause else ""
    message += failure.event_specific_data.error.message
    for part in expected:
        assert part in message, message
    assert "source 'flights'" in message
    for file, content in stored_good_day.items():
        assert file.read_bytes() == content, f"{file} changed"


def test_a_bad_day_in_a_range_fails_its_own_check_and_the_history_has_no_skipped_rows(
    csv_pipeline, stored_good_day, resources, instance
):
    """Negative distances on 2013-03-08 in a run of 03-07..03-08: the blocking check fails on that
    day only (with the day's own counts), the other day passes, nothing is stored, and every check
    of both days has a real verdict in the history (none "Skipped")."""
    build, path, rows = csv_pipeline
    _corrupt(rows, "negative_distance").to_csv(path, index=False)
    spec, assets = build()
    result = dg.materialize(raw_assets(spec, assets), resources=resources, instance=instance,
                            tags=range_tags("2013-03-07", "2013-03-08"), raise_on_error=False)
    assert not result.success
    key = pipeline_keys(spec).raw("flights")
    records = instance.event_log_storage.get_asset_check_execution_history(dg.AssetCheckKey(key, "ranges"), limit=100)
    mine = {r.partition: r for r in records if r.run_id == result.run_id}
    assert {day: r.status.value for day, r in mine.items()} == {"2013-03-07": "SUCCEEDED", "2013-03-08": "FAILED"}
    failed = mine["2013-03-08"].evaluation
    assert failed.severity == dg.AssetCheckSeverity.ERROR and failed.metadata["unexpected_rows"].value == 3
    assert "distance" in failed.description and "2013-03-08" in failed.description
    day8 = (rows.day == 8).sum()
    assert f"3 of {day8} rows" in failed.description  # the day's own rows, as a one-day run counts
    for group in CHECK_GROUPS:
        statuses = [status for status, _, _ in check_history(instance, dg.AssetCheckKey(key, group))]
        assert "SKIPPED" not in statuses and "EXECUTION_FAILED" not in statuses, (group, statuses)
    for file, content in stored_good_day.items():
        assert file.read_bytes() == content, f"{file} changed"
