"""Layer 1: the few-shot pipeline YAML loader and schema (``ml_assets.config.fewshot``)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from ml_assets.config import PipelineConfigError, tabular_pipeline_files
from ml_assets.config.fewshot import DEFAULT_FEWSHOT_YAML, load_fewshot_spec


def _write_yaml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "fewshot.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_yaml_unknown_placeholder_and_key_are_clear_errors(tmp_path):
    base = DEFAULT_FEWSHOT_YAML.read_text(encoding="utf-8")
    bad = base.replace('query: "Review: {query}\\nLabel:"', 'query: "Review: {qeury}\\nLabel:"')
    with pytest.raises(PipelineConfigError, match=r"prompts.templates.review_instruction.*unknown placeholder \{qeury\}"):
        load_fewshot_spec(_write_yaml(tmp_path, bad))
    with pytest.raises(PipelineConfigError, match=r"selection.top_k: unknown key"):
        load_fewshot_spec(_write_yaml(tmp_path, base.replace("  k: 4\n  min_score", "  top_k: 4\n  min_score")))
    with pytest.raises(PipelineConfigError, match="expected 'fewshot'"):
        load_fewshot_spec(_write_yaml(tmp_path, base.replace("kind: fewshot", "kind: tabular")))


def test_default_yaml_is_skipped_by_the_tabular_loader(fewshot_spec):
    assert DEFAULT_FEWSHOT_YAML not in tabular_pipeline_files()
    assert fewshot_spec.collection_name("all-MiniLM-L6-v2") == "reviews_fewshot__all-MiniLM-L6-v2"
    assert fewshot_spec.sample.train_limit is None and math.isclose(fewshot_spec.vector_store.lock_timeout_seconds, 30)
