"""The ``fewshot-select`` command: select the few-shot examples most similar to a query text from the
store, and optionally render a prompt.

After install: ``fewshot-select``; or ``python -m ml_assets.fewshot.cli``::

    fewshot-select "the coffee was stale and bitter" -k 4 --balance --mmr 0.7 --prompt review_chat
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ml_assets.fewshot.prompts import PromptRenderError, render_prompt
from ml_assets.fewshot.selection import Example, SelectionError, SelectionParams, select_examples

if TYPE_CHECKING:
    from ml_assets.config.fewshot import FewshotSpec


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fewshot-select",
        description="Select the few-shot examples most similar to a query text, and render a prompt.",
    )
    parser.add_argument("query", help="the query text ('-' reads it from stdin)")
    parser.add_argument("--config", help="few-shot YAML (default: pipelines/reviews_fewshot.yaml)")
    parser.add_argument("-k", type=int, help="number of examples (default: selection.k)")
    parser.add_argument("--label", help="only examples with this label")
    parser.add_argument("--min-score", type=float, help="minimum cosine similarity")
    parser.add_argument("--balance", action="store_true", default=None, help="balance labels")
    parser.add_argument("--mmr", type=float, metavar="LAMBDA", help="MMR diversity, 0..1 (1 = relevance only)")
    parser.add_argument("--fetch-k", type=int, help="candidates fetched for MMR / balancing")
    parser.add_argument(
        "--prompt", nargs="?", const="", metavar="TEMPLATE", help="render a prompt (default template if no name)"
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--qdrant-path", help="local Qdrant folder (default: vector_store.path)")
    parser.add_argument("--collection", help="collection name (default: from the YAML and model)")
    parser.add_argument("--lock-timeout", type=float, help="seconds to wait for a locked local store")
    return parser


def params_from_args(spec: FewshotSpec, args: argparse.Namespace) -> SelectionParams:
    defaults = spec.selection
    return SelectionParams(
        k=args.k if args.k is not None else defaults.k,
        label=args.label,
        min_score=args.min_score if args.min_score is not None else defaults.min_score,
        balance_labels=args.balance if args.balance is not None else defaults.balance_labels,
        mmr_lambda=args.mmr if args.mmr is not None else defaults.mmr_lambda,
        fetch_k=args.fetch_k if args.fetch_k is not None else defaults.fetch_k,
    )


def shorten(text: str, width: int = 100) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def run_selection(
    spec: FewshotSpec,
    query: str,
    params: SelectionParams,
    *,
    embedder: Any,
    store: Any,
    collection: str | None = None,
) -> list[Example]:
    """Embed ``query`` and select examples from the store (opened and closed here)."""
    if params.label is not None and params.label not in spec.labels:
        raise SelectionError(f"unknown label '{params.label}' (labels: {spec.labels})")
    vector = embedder.embed([query])[0]
    name = collection or spec.collection_name(embedder.name)
    with store.open() as client:
        store.require_collection(client, name)

        def search(vec: Any, limit: int, label: str | None, threshold: float | None, vectors: bool):
            return store.search(client, name, vec, limit, label, threshold, vectors)

        return select_examples(search, vector, params, spec.labels)


def main(argv: Sequence[str] | None = None) -> int:
    """``fewshot-select``: print the top-k examples with scores (and optionally a rendered prompt)."""
    from ml_assets.config import DEFAULT_FEWSHOT_YAML, PipelineConfigError, load_fewshot_spec
    from ml_assets.fewshot.store import embedder_for, vector_store_for
    from resources.embedder import EmbedderError
    from resources.vector_store import VectorStoreError

    args = build_parser().parse_args(argv)
    query = sys.stdin.read() if args.query == "-" else args.query
    try:
        spec = load_fewshot_spec(args.config or DEFAULT_FEWSHOT_YAML)
        params = params_from_args(spec, args)
        template_name = None
        if args.prompt is not None:
            template_name = args.prompt or spec.prompts.default
            if template_name not in spec.prompts.templates:
                raise SelectionError(
                    f"unknown template '{template_name}' (templates: {sorted(spec.prompts.templates)})"
                )
        embedder = embedder_for(spec)
        store = vector_store_for(
            spec,
            path=args.qdrant_path,
            url=os.environ.get("QDRANT_URL") or None,
            api_key=os.environ.get("QDRANT_API_KEY") or None,
            lock_timeout_seconds=args.lock_timeout,
        )
        selected = run_selection(spec, query, params, embedder=embedder, store=store, collection=args.collection)
        prompt = None
        if template_name is not None:
            prompt = render_prompt(
                spec.prompts.templates[template_name], query, selected, name=template_name, labels=spec.labels
            )
    except (PipelineConfigError, SelectionError, PromptRenderError, VectorStoreError, EmbedderError) as exc:
        print(f"fewshot-select: error: {exc}", file=sys.stderr)
        return 2

    if args.json:
        body: dict[str, Any] = {"query": query, "examples": [e.to_dict() for e in selected]}
        if prompt is not None:
            body["prompt"] = prompt.to_dict()
        print(json.dumps(body, indent=2, ensure_ascii=False))
        return 0
    if not selected:
        print("no example matched (check --label / --min-score)")
    for rank, ex in enumerate(selected, start=1):
        print(f"{rank:>2}  {ex.score:.4f}  {ex.label:<10} {shorten(ex.text)}")
    if prompt is not None:
        print(f"\n--- prompt: {prompt.template} v{prompt.version} ({prompt.kind}) ---")
        print(prompt.as_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
