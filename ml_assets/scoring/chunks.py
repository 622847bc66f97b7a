"""Scoring a range of stored feature days a chunk of days at a time: the features of a chunk are
read (one file per day), scored together and released before the next chunk, so a year's run holds
one chunk of features plus the year's predictions (a few columns), not the year's features and their
model matrix. Each day's metadata is computed from that day's rows while its chunk is in memory.
pandas is imported inside the function.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ml_assets.config.tabular import PARTITION_COLUMN


def score_in_chunks(
    features: Any, model: Any, version: str, key_columns: list[str], target: str,
    describe: Callable[[Any, Any], dict[str, Any]], *, chunk_days: int = 31,
) -> tuple[Any, dict[Any, dict[str, Any]], int]:
    """``(predictions, {day: describe(day's predictions, day's features)}, chunks)`` of the stored
    ``features`` (``resources.partition_reader.StoredPartitions``) scored by ``model`` (a
    ``ScoringModel``) ``chunk_days`` days at a time. The predictions are the entity keys, the day,
    ``<target>_score``, ``<target>_predicted`` and ``model_version``."""
    import numpy as np
    import pandas as pd

    if chunk_days < 1:
        raise ValueError(f"chunk_days must be at least 1, got {chunk_days}")
    keys = list(features.keys)
    outputs, per_day, chunks = [], {}, 0
    for first in range(0, len(keys), chunk_days):
        chunk_keys = keys[first:first + chunk_days]
        frames = [features.read(key) for key in chunk_keys]
        sizes = [len(frame) for frame in frames]
        inputs = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
        del frames
        scored = model.score(inputs) if len(inputs) else pd.DataFrame({"score": [], "label": []})
        out = inputs[[*key_columns, PARTITION_COLUMN]].reset_index(drop=True)
        out[f"{target}_score"] = scored["score"].to_numpy()
        out[f"{target}_predicted"] = scored["label"].to_numpy()
        out["model_version"] = version
        del scored
        bounds = np.cumsum([0, *sizes])
        for key, lo, hi in zip(chunk_keys, bounds[:-1], bounds[1:]):
            per_day[key] = describe(out.iloc[lo:hi], inputs.iloc[lo:hi])
        outputs.append(out)
        chunks += 1
        del inputs
    if not outputs:
        raise ValueError("no feature partitions to score")
    result = pd.concat(outputs, ignore_index=True) if len(outputs) > 1 else outputs[0]
    return result, per_day, chunks
