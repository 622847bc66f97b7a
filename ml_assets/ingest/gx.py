"""The Great Expectations runtime: one ephemeral GX 1.x context per process, and results as read-only
views. Great Expectations is imported on first use, never at module import.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

MAX_EXAMPLES = 5


@dataclass(frozen=True)
class GxRuntime:
    gx: Any
    expectations: Any
    batch_definition: Any


_RUNTIME: GxRuntime | None = None


_RUNTIME_LOCK = threading.Lock()


_VALIDATE_LOCK = threading.Lock()


def gx_runtime() -> GxRuntime:
    """The process-wide GX context, pandas datasource and whole-frame batch definition."""
    global _RUNTIME
    with _RUNTIME_LOCK:
        if _RUNTIME is None:
            os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
            import great_expectations as gx
            import great_expectations.expectations as gxe
            from great_expectations.data_context.types.base import ProgressBarsConfig

            context = gx.get_context(mode="ephemeral")
            context.variables.progress_bars = ProgressBarsConfig(
                globally=False, metric_calculations=False
            )
            datasource = context.data_sources.add_pandas("ml_platform_validation")
            asset = datasource.add_dataframe_asset("frame")
            batch_definition = asset.add_batch_definition_whole_dataframe("whole_frame")
            _RUNTIME = GxRuntime(gx=gx, expectations=gxe, batch_definition=batch_definition)
        return _RUNTIME


def new_expectation(kind: str, **kwargs: Any) -> Any:
    """An expectation of class ``kind`` (e.g. ``ExpectColumnToExist``)."""
    return getattr(gx_runtime().expectations, kind)(**kwargs)


def run_expectations(df: pd.DataFrame, expectations: list[Any]) -> dict[int, Any]:
    """Validate the frame against the expectations as one suite; results keyed by ``id(expectation)``."""
    if not expectations:
        return {}
    runtime = gx_runtime()
    suite = runtime.gx.ExpectationSuite(name="ml_platform_validation")
    tagged = {}
    for index, expectation in enumerate(expectations):
        expectation.meta = {**(expectation.meta or {}), "ml_platform_rule": index}
        suite.add_expectation(expectation)
        tagged[index] = expectation
    # Every frame gets the same batch id on the shared execution engine: one validation at a time.
    with _VALIDATE_LOCK:
        batch = runtime.batch_definition.get_batch(batch_parameters={"dataframe": df})
        report = batch.validate(
            suite, result_format={"result_format": "SUMMARY", "partial_unexpected_count": MAX_EXAMPLES}
        )
    # GX does not keep the suite's order in the results: match them by the tag in ``meta``.
    return {
        id(tagged[result.expectation_config.meta["ml_platform_rule"]]): result
        for result in report.results
    }


class GxResult:
    """Read-only view of one ExpectationValidationResult (or of none)."""

    def __init__(self, result: Any | None) -> None:
        self.raw = result

    @property
    def success(self) -> bool:
        return bool(self.raw is not None and self.raw.success)

    @property
    def details(self) -> dict[str, Any]:
        return dict(self.raw.result or {}) if self.raw is not None else {}

    def get(self, key: str, default: Any = None) -> Any:
        value = self.details.get(key)
        return default if value is None else value

    @property
    def error(self) -> str | None:
        """The exception message when GX could not evaluate the expectation."""
        if self.raw is None:
            return None
        info = self.raw.exception_info or {}
        entries = [info] if "raised_exception" in info else list(info.values())
        for entry in entries:
            if isinstance(entry, dict) and entry.get("raised_exception"):
                return str(entry.get("exception_message") or "unknown error")
        return None
