"""The ``schema`` rules of a source: every named column exists and has its declared type (judged on
the dtype, or value by value for object columns; ISO-8601 strings count as datetimes)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ml_assets.ingest.gx import GxResult, new_expectation
from ml_assets.ingest.rules import Frame, Plan, RuleFailure, referenced_columns

if TYPE_CHECKING:
    import pandas as pd

    from ml_assets.config.tabular import ValidationRules


_INT_DTYPES = [
    "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
    "Int8Dtype", "Int16Dtype", "Int32Dtype", "Int64Dtype",
    "UInt8Dtype", "UInt16Dtype", "UInt32Dtype", "UInt64Dtype",
]  # fmt: skip


_FLOAT_DTYPES = ["float16", "float32", "float64", "Float32Dtype", "Float64Dtype"]


# Type lists for ExpectColumnValuesToBeInTypeList. On a typed column GX compares the dtype; on an
# object column it checks each non-null value against the native type ("int", "float", ...).
_GX_TYPE_LISTS: dict[str, list[str]] = {
    "int": [*_INT_DTYPES, "int"],
    "float": [*_INT_DTYPES, *_FLOAT_DTYPES, "int", "float"],
    "number": [*_INT_DTYPES, *_FLOAT_DTYPES, "int", "float"],
    "str": ["str", "StringDtype"],
    "bool": ["bool", "BooleanDtype"],
}


def schema_plans(frame: Frame, rules: ValidationRules, required: dict[str, str] | None = None) -> list[Plan]:
    """Existence and type rules of ``rules.columns``, plus existence of each ``required`` column
    (``{column: where the pipeline needs it}``, e.g. ``features.numeric[2] in pipelines/x.yaml``)."""
    plans = []
    for column in referenced_columns(frame, rules):
        plans.append(
            Plan("schema", new_expectation("ExpectColumnToExist", column=column), _exists_check(frame, column))
        )
    declared = set(referenced_columns(frame, rules))
    for column, where in (required or {}).items():
        if column not in declared:
            plans.append(Plan("schema", new_expectation("ExpectColumnToExist", column=column),
                              _exists_check(frame, column, f"column exists (needed by {where})")))
    for column, kind in rules.columns.items():
        if not frame.has(column):
            continue  # reported by the existence rule
        expectation = None
        if kind in _GX_TYPE_LISTS:
            expectation = new_expectation(
                "ExpectColumnValuesToBeInTypeList", column=column, type_list=_GX_TYPE_LISTS[kind]
            )
        plans.append(Plan("schema", expectation, _type_check(frame, column, kind)))
    return plans


def _exists_check(frame: Frame, column: str, rule: str = "column exists") -> Callable[[GxResult], RuleFailure | None]:
    def evaluate(result: GxResult) -> RuleFailure | None:
        if result.success:
            return None
        observed = "column missing"
        if frame.has(column):  # GX could not evaluate it; never claim a present column is missing
            observed = f"not evaluated: {result.error or 'GX reported no result'}"
        return frame.failure("schema", column, rule, observed, frame.rows)

    return evaluate


def _dtype_verdict(series: pd.Series, kind: str) -> bool | None:
    """Whether the dtype satisfies ``kind``; None when only the values can tell (object dtype)."""
    from pandas.api import types as pdt

    dtype = series.dtype
    if pdt.is_object_dtype(dtype):
        return None
    if kind == "int":
        return pdt.is_integer_dtype(dtype) and not pdt.is_bool_dtype(dtype)
    if kind in ("float", "number"):
        return pdt.is_numeric_dtype(dtype) and not pdt.is_bool_dtype(dtype) and not pdt.is_complex_dtype(dtype)
    if kind == "bool":
        return pdt.is_bool_dtype(dtype)
    if kind == "str":
        return pdt.is_string_dtype(dtype)
    if kind == "datetime":
        if pdt.is_datetime64_any_dtype(dtype):
            return True
        return None if pdt.is_string_dtype(dtype) else False
    return False


def _value_matches(kind: str) -> Callable[[Any], bool]:
    """Python-level predicate for one non-null value of an object column (mirrors GX's map check)."""
    import numpy as np

    accepted = {
        "int": (int, np.integer),
        "float": (int, float, np.integer, np.floating),
        "number": (int, float, np.integer, np.floating),
        "str": (str,),
        "bool": (bool, np.bool_),
    }[kind]
    return lambda value: isinstance(value, accepted)


def _type_check(frame: Frame, column: str, kind: str) -> Callable[[GxResult], RuleFailure | None]:
    rule = f"type is {kind}"

    def evaluate(result: GxResult) -> RuleFailure | None:
        series = frame.df[column]
        present = series.notna()
        values = int(present.sum())
        if values == 0:
            return None  # no values, nothing contradicts the type (not_null reports empty columns)
        dtype = str(series.dtype)
        if kind == "datetime":
            return _datetime_check(frame, column, series, present, rule)
        verdict = _dtype_verdict(series, kind)
        if verdict is True:
            return None
        if verdict is False:
            observed = f"dtype {dtype}"
            gx_type = result.get("observed_value")
            if gx_type and gx_type not in dtype:
                observed += f" (GX: {gx_type})"
            return frame.failure("schema", column, rule, observed, values, present)
        # Object dtype: the values decide. GX checks each one against the native type.
        if result.error:
            return frame.failure(
                "schema", column, rule, f"dtype {dtype}; not evaluated: {result.error}", values, present
            )
        if result.success:
            return None
        matches = _value_matches(kind)
        bad = present & ~series.map(matches, na_action="ignore").fillna(True).astype(bool)
        count = int(result.get("unexpected_count", int(bad.sum())))
        observed = f"dtype {dtype}; " + frame.share(count, values, "non-null values") + f" are not {kind}"
        return frame.failure("schema", column, rule, observed, count, bad if bad.any() else present)

    return evaluate


def _datetime_check(
    frame: Frame, column: str, series: pd.Series, present: pd.Series, rule: str
) -> RuleFailure | None:
    """datetime64 dtype, or strings that all parse as ISO-8601 datetimes."""
    import pandas as pd

    verdict = _dtype_verdict(series, "datetime")
    dtype = str(series.dtype)
    if verdict is True:
        return None
    if verdict is False:
        return frame.failure("schema", column, rule, f"dtype {dtype}", int(present.sum()), present)
    parsed = pd.to_datetime(series.where(present), utc=True, format="ISO8601", errors="coerce")
    bad = present & parsed.isna()
    if not bad.any():
        return None
    observed = (
        f"dtype {dtype}; "
        + frame.share(int(bad.sum()), int(present.sum()), "non-null values")
        + " do not parse as ISO-8601 datetimes"
    )
    return frame.failure("schema", column, rule, observed, int(bad.sum()), bad)
