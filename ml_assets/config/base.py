"""What every pipeline YAML loader shares: strict models, identifiers, ``${VAR}`` substitution and
errors that name the file, the key path and the problem.

Only the standard library, PyYAML and pydantic are imported here: the config layer is loaded with
the code location and has no Dagster import.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any, TypeVar

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, ValidationError

ENV_PATTERN = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>[^}]*))?\}")
IDENTIFIER_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def check_identifier(value: str) -> str:
    if not IDENTIFIER_PATTERN.match(value):
        raise ValueError(f"'{value}' must be a Python-style identifier (letters, digits, _)")
    return value


Identifier = Annotated[str, AfterValidator(check_identifier)]
"""A name used in asset keys and run config: letters, digits and underscores."""


class PipelineConfigError(ValueError):
    """A pipeline YAML file is missing, unreadable or does not match the schema."""


class Strict(BaseModel):
    """A YAML section: unknown keys are errors, values are frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def substitute_env(value: Any, path: str, file: Path) -> Any:
    """Replace ``${VAR}`` and ``${VAR:-default}`` in every string of a parsed YAML tree."""
    if isinstance(value, dict):
        return {k: substitute_env(v, f"{path}.{k}" if path else str(k), file) for k, v in value.items()}
    if isinstance(value, list):
        return [substitute_env(v, f"{path}[{i}]", file) for i, v in enumerate(value)]
    if not isinstance(value, str):
        return value

    def _replace(match: re.Match[str]) -> str:
        name, default = match["name"], match["default"]
        if name in os.environ:
            return os.environ[name]
        if default is not None:
            return default
        raise PipelineConfigError(
            f"{file}: {path}: environment variable '{name}' is not set and has no default"
            f" (write ${{{name}:-default}} to give one)"
        )

    return ENV_PATTERN.sub(_replace, value)


def format_validation_error(file: Path, error: ValidationError) -> str:
    lines = [f"{file}: invalid pipeline file ({error.error_count()} problem(s))"]
    for item in error.errors():
        location = ".".join(str(part) for part in item["loc"]) or "<top level>"
        if item["type"] == "extra_forbidden":
            message = "unknown key"
        elif item["type"] == "missing":
            message = "required key is missing"
        else:
            message = item["msg"]
            if "input" in item and not isinstance(item["input"], dict | list):
                message += f" (got {item['input']!r})"
        lines.append(f"  - {location}: {message}")
    return "\n".join(lines)


def read_yaml(file: str | Path) -> dict[str, Any]:
    """Safe-load a YAML mapping and substitute environment variables; errors name the file."""
    file = Path(file)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise PipelineConfigError(f"{file}: pipeline file not found") from exc
    except UnicodeDecodeError as exc:
        raise PipelineConfigError(f"{file}: not valid UTF-8 ({exc.reason} at byte {exc.start})") from exc
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise PipelineConfigError(f"{file}: YAML syntax error: {exc}") from exc
    if not isinstance(raw, dict):
        raise PipelineConfigError(f"{file}: the top level must be a mapping of keys, got {type(raw).__name__}")
    return substitute_env(raw, "", file)



SpecT = TypeVar("SpecT", bound=BaseModel)


def validate_file(file: Path, raw: dict[str, Any], model: type[SpecT]) -> SpecT:
    """``raw`` (a read pipeline file) validated as ``model``; a ``PipelineConfigError`` names the file."""
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise PipelineConfigError(format_validation_error(file, exc)) from None
