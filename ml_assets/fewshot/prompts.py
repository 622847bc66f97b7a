"""Prompt rendering: versioned templates from the few-shot YAML (instruction, chat, completion) filled
with ``str.format`` placeholders; unknown placeholders are a clear error naming the template."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ml_assets.fewshot.selection import Example

if TYPE_CHECKING:
    from ml_assets.config.fewshot import PromptTemplate


class PromptRenderError(ValueError):
    """A template could not be rendered; the message names the template and the placeholder."""


@dataclass(frozen=True)
class RenderedPrompt:
    """A rendered prompt: ``text`` for instruction/completion templates, ``messages`` for chat."""

    template: str
    version: int
    kind: str
    text: str | None = None
    messages: list[dict[str, str]] | None = None

    def as_text(self) -> str:
        if self.text is not None:
            return self.text
        return "\n\n".join(f"[{m['role']}]\n{m['content']}" for m in self.messages or [])

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"template": self.template, "version": self.version, "kind": self.kind}
        if self.messages is not None:
            body["messages"] = self.messages
        else:
            body["text"] = self.text
        return body


def format_part(part: str, text: str, values: Mapping[str, Any], template: str) -> str:
    try:
        return text.format_map(values)
    except KeyError as exc:
        raise PromptRenderError(
            f"template '{template}' {part}: no value for placeholder {{{exc.args[0]}}}"
            f" (available: {sorted(values)})"
        ) from None
    except (ValueError, IndexError, AttributeError) as exc:
        raise PromptRenderError(f"template '{template}' {part}: {exc}") from None


def render_prompt(
    template: PromptTemplate,
    query: str,
    examples: Sequence[Example],
    *,
    name: str = "template",
    labels: Sequence[str] = (),
    variables: Mapping[str, Any] | None = None,
) -> RenderedPrompt:
    """Render a few-shot prompt from ``examples`` (in the given order) and the ``query`` text.

    Values: ``{query} {labels} {k}`` everywhere, ``{text} {label} {score} {index}`` per example, the
    template's own ``variables`` and then the caller's ``variables`` (which win).
    """
    common: dict[str, Any] = {
        "query": query,
        "labels": ", ".join(labels),
        "k": len(examples),
        **template.variables,
        **(variables or {}),
    }

    def example_values(i: int, ex: Example) -> dict[str, Any]:
        return {**common, "text": ex.text, "label": ex.label, "score": f"{ex.score:.3f}", "index": i + 1}

    if template.kind == "chat":
        messages = [{"role": "system", "content": format_part("instruction", template.instruction, common, name)}]
        for i, ex in enumerate(examples):
            values = example_values(i, ex)
            messages.append({"role": "user", "content": format_part("example_user", template.example_user, values, name)})
            messages.append(
                {"role": "assistant", "content": format_part("example_assistant", template.example_assistant, values, name)}
            )
        messages.append({"role": "user", "content": format_part("query", template.query, common, name)})
        return RenderedPrompt(name, template.version, template.kind, messages=messages)

    parts: list[str] = []
    head = template.instruction if template.kind == "instruction" else template.prefix
    if head:
        parts.append(format_part("instruction" if template.kind == "instruction" else "prefix", head, common, name))
    parts.extend(format_part("example", template.example, example_values(i, ex), name) for i, ex in enumerate(examples))
    parts.append(format_part("query", template.query, common, name))
    return RenderedPrompt(name, template.version, template.kind, text=template.separator.join(parts))
