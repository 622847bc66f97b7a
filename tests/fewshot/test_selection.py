"""Few-shot selection helpers and prompt rendering (``ml_assets.fewshot.selection`` and ``.prompts``).

No embedding model here: selection runs on small hand-made vectors, against plain lists and against a
real Qdrant local-mode store in a temporary folder.
"""

from __future__ import annotations

import uuid

import pytest

from ml_assets.fewshot.prompts import PromptRenderError, render_prompt
from ml_assets.fewshot.selection import (
    Example,
    SelectionError,
    SelectionParams,
    balance_labels,
    label_quotas,
    mmr,
    select_examples,
    select_from_candidates,
    top_k,
)
from ml_assets.fewshot.store import content_hash, point_id
from tests.conftest import unit


def ex(id_: str, label: str, score: float, vector=None) -> Example:
    return Example(id=id_, text=f"text {id_}", label=label, score=score, vector=vector)


# -- selection helpers ------------------------------------------------------------------------


def test_top_k_orders_by_score():
    cands = [ex("a", "x", 0.2), ex("b", "x", 0.9), ex("c", "y", 0.5)]
    assert [c.id for c in top_k(cands, 2)] == ["b", "c"]


def test_mmr_prefers_diverse_examples_over_near_duplicates():
    a = ex("a", "x", 0.95, unit(1, 0, 0))
    a2 = ex("a2", "x", 0.94, unit(1, 0.02, 0))  # near-duplicate of a
    b = ex("b", "y", 0.80, unit(0, 1, 0))
    assert [c.id for c in top_k([a, a2, b], 2)] == ["a", "a2"]
    assert [c.id for c in mmr([a, a2, b], 2, lambda_=0.5)] == ["a", "b"]
    # lambda = 1 is pure relevance: the same as top-k
    assert [c.id for c in mmr([a, a2, b], 3, lambda_=1.0)] == ["a", "a2", "b"]


def test_mmr_needs_vectors():
    with pytest.raises(SelectionError, match="vectors"):
        mmr([ex("a", "x", 0.9)], 1, 0.5)


def test_label_quotas_split_k_evenly():
    assert label_quotas(["a", "b"], 5) == {"a": 3, "b": 2}
    assert label_quotas(["a", "b", "c"], 3) == {"a": 1, "b": 1, "c": 1}


def test_balance_labels_gives_each_label_its_share():
    cands = [ex(f"g{i}", "great", 0.9 - i / 100) for i in range(6)] + [
        ex("o1", "other", 0.5),
        ex("o2", "other", 0.4),
    ]
    picked = balance_labels(cands, 4)
    assert sorted(c.label for c in picked) == ["great", "great", "other", "other"]
    assert [c.score for c in picked] == sorted((c.score for c in picked), reverse=True)


def test_balance_labels_fills_a_short_label_from_the_others():
    cands = [ex(f"g{i}", "great", 0.9 - i / 100) for i in range(6)] + [ex("o1", "other", 0.5)]
    picked = balance_labels(cands, 4)
    assert [c.label for c in picked].count("other") == 1
    assert len(picked) == 4


def test_label_filter_and_min_score():
    cands = [ex("a", "great", 0.9), ex("b", "other", 0.8), ex("c", "great", 0.3)]
    params = SelectionParams(k=5, label="great", min_score=0.5)
    assert [c.id for c in select_from_candidates(cands, params)] == ["a"]


def test_selection_params_are_validated():
    with pytest.raises(SelectionError, match="k must be"):
        SelectionParams(k=0)
    with pytest.raises(SelectionError, match="mmr_lambda"):
        SelectionParams(mmr_lambda=1.5)
    with pytest.raises(SelectionError, match="min_score"):
        SelectionParams(min_score=2.0)
    assert SelectionParams(k=3).candidates == 3
    assert SelectionParams(k=3, mmr_lambda=0.5).candidates == 20


# -- against a real local Qdrant store ----------------------------------------------------------


def _search_fn(store, client, collection="c"):
    def search(vec, limit, label, threshold, with_vectors):
        return store.search(client, collection, vec, limit, label, threshold, with_vectors)

    return search


def test_select_examples_from_qdrant(small_store):
    query = unit(1, 0.1, 0)
    with small_store.open() as client:
        search = _search_fn(small_store, client)
        plain = select_examples(search, query, SelectionParams(k=3), ["great", "other"])
        assert [e.label for e in plain] == ["great"] * 3
        assert plain[0].score == pytest.approx(float(query @ unit(1, 0.05, 0)), abs=1e-5)

        balanced = select_examples(search, query, SelectionParams(k=4, balance_labels=True), ["great", "other"])
        assert sorted(e.label for e in balanced) == ["great", "great", "other", "other"]

        only_other = select_examples(search, query, SelectionParams(k=3, label="other"), ["great", "other"])
        assert [e.label for e in only_other] == ["other", "other"]

        strict = select_examples(search, query, SelectionParams(k=6, min_score=0.9), ["great", "other"])
        assert strict and all(e.score >= 0.9 for e in strict)
        assert len(strict) == 3

        diverse = select_examples(search, query, SelectionParams(k=2, mmr_lambda=0.3), ["great", "other"])
        assert diverse[0].label == "great"
        assert diverse[1].id not in {e.id for e in plain[:2]}


def test_point_ids_are_deterministic_uuids():
    digest = content_hash("tasty", "great", "m")
    assert digest == content_hash("tasty", "great", "m")
    assert digest != content_hash("tasty", "other", "m") != content_hash("tasty", "great", "m2")
    assert uuid.UUID(point_id(digest)).version == 5
    assert point_id(digest) == point_id(content_hash("tasty", "great", "m"))



# -- prompts ------------------------------------------------------------------------------------


EXAMPLES = [Example("1", "Loved it, {not a placeholder}", "great", 0.91), Example("2", "Stale.", "other", 0.72)]


def test_instruction_template(fewshot_spec):
    prompt = render_prompt(
        fewshot_spec.prompts.templates["review_instruction"], "Good coffee", EXAMPLES, name="review_instruction", labels=fewshot_spec.labels
    )
    assert prompt.kind == "instruction" and prompt.version == 1 and prompt.messages is None
    assert prompt.text.startswith("Classify the food review as one of: great, other.")
    assert "Here are 2 labeled examples." in prompt.text
    assert "Review: Loved it, {not a placeholder}\nLabel: great" in prompt.text
    assert prompt.text.endswith("Review: Good coffee\nLabel:")


def test_chat_template(fewshot_spec):
    prompt = render_prompt(fewshot_spec.prompts.templates["review_chat"], "Good coffee", EXAMPLES, name="review_chat", labels=fewshot_spec.labels)
    roles = [m["role"] for m in prompt.messages]
    assert roles == ["system", "user", "assistant", "user", "assistant", "user"]
    assert prompt.messages[2]["content"] == "great" and prompt.messages[-1]["content"] == "Good coffee"
    assert "great, other" in prompt.messages[0]["content"]
    assert "[assistant]\nother" in prompt.as_text()


def test_completion_template_and_variables(fewshot_spec):
    template = fewshot_spec.prompts.templates["review_completion"].model_copy(
        update={"prefix": "Ratings by {site}:", "variables": {"site": "example.org"}}
    )
    prompt = render_prompt(template, "Good coffee", EXAMPLES, name="c", variables={"site": "shop"})
    assert prompt.text.split("\n\n")[0] == "Ratings by shop:"
    assert prompt.text.endswith("Review: Good coffee\nRating:")
    with pytest.raises(PromptRenderError, match=r"template 'c' prefix: no value for placeholder \{site\}"):
        render_prompt(template.model_copy(update={"variables": {}}), "q", EXAMPLES, name="c")


