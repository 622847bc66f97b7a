"""Layer 1: the tabular pipeline YAML loader and schema (``ml_assets.config.tabular``)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
import yaml

from ml_assets.config import PipelineConfigError, PipelineSpec, load_pipeline, tabular_pipeline_files
from ml_assets.config.base import read_yaml
from tests.conftest import FLIGHTS_YAML


def _write(tmp_path: Path, data: dict | str, name: str = "p.yaml") -> Path:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data), encoding="utf-8")
    return path


def _minimal() -> dict:
    return {
        "name": "demo",
        "sources": {"rows": {"kind": "csv", "path": "rows.csv"}},
        "target": {"name": "y", "column": "value", "rule": "> 1"},
    }


def test_flights_yaml_loads_with_its_sections(flights_spec: PipelineSpec):
    assert flights_spec.name == "flights"
    assert set(flights_spec.sources) == {"flights", "weather"}
    assert flights_spec.partitioning.start == dt.date(2013, 1, 1)
    assert flights_spec.partitioning.end == dt.date(2013, 12, 31)
    assert flights_spec.partitioning.timezone == "America/New_York"
    assert flights_spec.target.parsed_rule() == (">", 15.0)
    assert flights_spec.features.function == "flights_features"
    assert flights_spec.features.history_days == 28
    assert flights_spec.sources["flights"].entity_key == ["year", "month", "day", "carrier", "flight", "origin"]
    assert flights_spec.sources["flights"].validation.ranges["distance"].strict_min is True
    leakage = {"dep_delay", "dep_time", "arr_time", "air_time", "arr_delay"}
    assert leakage <= set(flights_spec.features.exclude)
    assert not leakage & set(flights_spec.features.numeric + flights_spec.features.categorical)


def test_env_substitution_with_default_and_override(tmp_path, monkeypatch):
    data = _minimal()
    data["sources"]["rows"]["path"] = "${ROWS_PATH:-default.csv}"
    path = _write(tmp_path, data)
    monkeypatch.delenv("ROWS_PATH", raising=False)
    assert load_pipeline(path).sources["rows"].path == "default.csv"
    monkeypatch.setenv("ROWS_PATH", "/data/other.csv")
    assert load_pipeline(path).sources["rows"].path == "/data/other.csv"


def test_env_variable_without_default_names_file_and_key(tmp_path, monkeypatch):
    data = _minimal()
    data["sources"]["rows"]["path"] = "${SURELY_UNSET_VAR}"
    path = _write(tmp_path, data)
    monkeypatch.delenv("SURELY_UNSET_VAR", raising=False)
    with pytest.raises(PipelineConfigError) as err:
        load_pipeline(path)
    assert str(path) in str(err.value)
    assert "sources.rows.path" in str(err.value)
    assert "SURELY_UNSET_VAR" in str(err.value)


@pytest.mark.parametrize(
    ("mutate", "key", "problem"),
    [
        (lambda d: d.update(colour="blue"), "colour", "unknown key"),
        (lambda d: d["sources"]["rows"].update(pathh="x"), "sources.rows.csv.pathh", "unknown key"),
        (lambda d: d.pop("target"), "target", "required key is missing"),
        (lambda d: d["target"].update(rule="more than 15"), "target.rule", "comparison with a number"),
        (lambda d: d["target"].update(positive="YES"), "target", "either 'rule' or 'positive'"),
        (lambda d: d["target"].update(rule=None, task="regression", positive=1), "target", "takes the column as is"),
        (lambda d: d["target"].update(rule=None, task="classification", classes=["a", "b", "c"]), "target",
         "'classes' is for task: multiclass"),
        # features and target against the columns the source declares, at load
        (lambda d: d["sources"]["rows"].update(validation={"columns": {"value": "float", "x": "float"}})
         or d.update(features={"numeric": ["x", "z"]}), "features.numeric[1]", "'z' is not a column of source 'rows'"),
        (lambda d: d["sources"]["rows"].update(validation={"columns": {"x": "float"}}), "target.column",
         "'value' is not a column of source 'rows'"),
        # windows against the partition range; dated windows need partitions
        (lambda d: d.update(partitioning={"time_column": "t", "start": "2020-01-01", "end": "2020-12-31"},
                            model={"windows": {"train": {"start": "2019-12-01", "end": "2020-06-30"},
                                               "validate": {"start": "2020-07-01", "end": "2020-08-31"},
                                               "test": {"start": "2020-09-01", "end": "2020-12-31"}}}),
         "model.windows.train", "outside the partition range 2020-01-01..2020-12-31"),
        (lambda d: d.update(model={"windows": {"mode": "rolling"}}), "model.windows", "need a 'partitioning' section"),
        (lambda d: d.update(model={"windows": {"fractions": {"train": 0.8, "validate": 0.15, "test": 0.15}}}),
         "model.windows.fractions", "must be 1"),
        (lambda d: d.update(evaluation={"baselines": [{"name": "prior", "mean_of": ["x"]}]}), "evaluation.baselines",
         "generic baselines' names"),
        (lambda d: d.update(partitioning={"time_column": "t", "start": "not a date"}), "partitioning.start", "date"),
        (lambda d: d["sources"]["rows"].update(kind="xls"), "sources.rows", "xls"),
        (lambda d: d.update(features={"history_days": "many"}), "features.history_days", "integer"),
        (lambda d: d.update(features={"numeric": ["a"], "exclude": ["a"]}), "features", "both as features and in 'exclude'"),
    ],
)
def test_invalid_files_name_file_key_and_problem(tmp_path, mutate, key, problem):
    data = _minimal()
    mutate(data)
    path = _write(tmp_path, data)
    with pytest.raises(PipelineConfigError) as err:
        load_pipeline(path)
    message = str(err.value)
    assert str(path) in message
    assert key in message
    assert problem in message


def test_yaml_syntax_error_and_non_mapping(tmp_path):
    with pytest.raises(PipelineConfigError, match="YAML syntax error"):
        load_pipeline(_write(tmp_path, "name: [unclosed\n"))
    with pytest.raises(PipelineConfigError, match="top level must be a mapping"):
        load_pipeline(_write(tmp_path, "- a\n- b\n", "list.yaml"))


def test_safe_loader_refuses_python_tags(tmp_path):
    path = _write(tmp_path, "name: !!python/object/apply:os.system ['echo hi']\n")
    with pytest.raises(PipelineConfigError, match="YAML syntax error"):
        load_pipeline(path)


def test_non_utf8_yaml(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_bytes(b"name: caf\xe9\n")
    with pytest.raises(PipelineConfigError, match="not valid UTF-8"):
        load_pipeline(path)


def test_sql_source_takes_an_env_var_name_not_a_url(tmp_path):
    data = _minimal()
    data["sources"]["rows"] = {"kind": "sql", "query": "select 1", "connection_env": "postgresql://u:p@h/db"}
    with pytest.raises(PipelineConfigError, match="not an environment variable name"):
        load_pipeline(_write(tmp_path, data))


def test_only_tabular_files_are_listed(tmp_path):
    _write(tmp_path, _minimal(), "a.yaml")
    _write(tmp_path, {"kind": "fewshot", "name": "x"}, "b.yaml")
    assert [p.name for p in tabular_pipeline_files(tmp_path)] == ["a.yaml"]
    assert FLIGHTS_YAML in tabular_pipeline_files(FLIGHTS_YAML.parent)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"windows": {"validate": {"start": "2013-08-01", "end": "2013-09-30"}}},
         "must be in time order and must not overlap"),
        ({"windows": {"test": {"start": "2013-12-01", "end": "2013-11-01"}}}, "is before 'start'"),
        ({"tuning": {"search_space": {"num_leaves": {"type": "int", "low": 300, "high": 20}}}},
         "model.tuning.search_space.num_leaves"),
        ({"tuning": {"n_trial": 3}}, "model.tuning.n_trial: unknown key"),
        ({"registered_name": "flights delay"}, "must be a Python-style identifier"),
    ],
)
def test_bad_model_sections_name_the_key(tmp_path, change, expected):
    raw = read_yaml(FLIGHTS_YAML)
    for key, value in change.items():
        raw["model"][key] = {**raw["model"].get(key, {}), **value} if isinstance(value, dict) else value
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(PipelineConfigError) as caught:
        load_pipeline(path)
    assert str(path) in str(caught.value) and expected in str(caught.value)


def test_every_flights_feature_has_a_description(flights_spec):
    """The column schema of flights/features explains every model input, from the YAML."""
    features = flights_spec.features
    missing = [c for c in [*features.numeric, *features.categorical] if not features.descriptions.get(c, "").strip()]
    assert missing == []
    assert len(features.numeric) + len(features.categorical) >= 30


def test_string_targets_rules_and_unpartitioned_models_load(tmp_path):
    data = _minimal()
    data["target"] = {"name": "y", "column": "answer", "rule": '== "YES"'}
    data["model"] = {"windows": {"time_column": "when"}}
    spec = load_pipeline(_write(tmp_path, data))
    assert spec.target.parsed_rule() == ("==", "YES") and spec.partitioning is None
    assert spec.model.windows.time_column == "when" and spec.model.windows.fractions.train == 0.7
    data["target"] = {"name": "y", "column": "answer", "positive": [True, "maybe"]}
    assert load_pipeline(_write(tmp_path, data)).target.positive_values() == [True, "maybe"]


def test_example_pipelines_load_as_a_folder():
    from ml_assets import load_tabular_pipelines
    from ml_assets.config.paths import REPO_ROOT

    names = {p.spec.name: p.spec for p in load_tabular_pipelines(REPO_ROOT / "pipelines" / "examples")}
    assert set(names) == {"boston_housing", "mpls_stops", "penguins"}
    assert names["mpls_stops"].target.positive_values() == ["YES"]
    assert names["penguins"].target.task == "multiclass" and names["boston_housing"].partitioning is None
