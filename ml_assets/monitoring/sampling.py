"""The reference's rows chosen before they are scored, one stored day at a time: constant-size work
stays constant however large the training window is.

``sample_reference`` reads the window's feature days one after another (``features`` is a
``resources.partition_reader.StoredPartitions``) and keeps only

* the monitored columns of every row (for the per-column statistics of the whole window),
* the rows of a seeded sample of ``sample_size`` rows, the very rows (in the same order) that
  ``DataFrame.sample(n=sample_size, random_state=seed)`` draws from the window in one frame,
* the days the threshold calibration compares (``drift.reference_chunks`` chooses them),

and scores only the sample and the calibration days with the champion. The sample, the feature
statistics and the calibrated thresholds are therefore the ones a whole-window build gives; the
statistics of the prediction column come from the scored sample (the window is never scored whole).
pandas and numpy are imported inside the functions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ml_assets.config.tabular import PARTITION_COLUMN


@dataclass
class SampledReference:
    reference: Any  # drift.Reference, calibrated
    window: tuple[str, str]  # first and last day with rows
    source_rows: int  # rows of the window
    labelled_rows: int  # rows of the window with a known target
    scored_rows: int  # rows scored: the sample and the calibration days
    calibration_days: list[str]


def sample_positions(total: int, size: int, seed: int) -> Any:
    """Positions (in window order) of the rows ``DataFrame.sample(n=size, random_state=seed)`` draws
    from a ``total``-row frame, in the order it returns them; all rows when ``total <= size``."""
    import numpy as np

    if total <= size:
        return np.arange(total)
    return np.random.RandomState(seed).choice(total, size=size, replace=False).astype(np.intp)


def sample_reference(features: Any, days: list[str], model: Any, columns: Any, config: Any, *,
                     target: str, sample_size: int, seed: int) -> SampledReference:
    """A calibrated ``drift.Reference`` of the feature ``days`` (see the module doc). ``ValueError``
    for a window without rows or columns that cannot be compared."""
    import numpy as np
    import pandas as pd

    from ml_assets.memory import release_freed_memory
    from ml_assets.monitoring.drift import build_reference, calibrate_thresholds, calibration_chunks, window_stats

    counts = [features.num_rows(day) for day in days]
    total = int(sum(counts))
    if total == 0:
        raise ValueError(f"the training window {days[0] if days else '?'} .. {days[-1] if days else '?'} has no feature rows")
    positions = sample_positions(total, sample_size, seed)
    ordered = np.sort(positions)
    monitored = list(columns.features)
    parts, picked, labelled = [], [], 0
    start = 0
    for day, count in zip(days, counts):
        if not count:
            continue
        frame = features.read(day)
        lo, hi = np.searchsorted(ordered, [start, start + count])
        if hi > lo:
            picked.append(frame.iloc[ordered[lo:hi] - start])
        absent = [c for c in monitored if c not in frame.columns]
        if absent:
            raise ValueError(f"reference frame lacks drift columns {absent} (features of {day})")
        parts.append(frame[monitored])
        if target in frame.columns:
            labelled += int(frame[target].notna().sum())
        start += count
        del frame
    # statistics of the monitored columns over every row of the window (no scores needed)
    window_columns = type(columns)(tuple(columns.numeric), tuple(columns.categorical), None)
    whole = pd.concat(parts, ignore_index=True)
    del parts
    stats = window_stats(whole, window_columns)
    del whole
    release_freed_memory()  # the window's columns and the days read for them, before the scoring
    # the sample, back in the order DataFrame.sample returns it, and scored
    sample = pd.concat(picked, ignore_index=True).iloc[np.searchsorted(ordered, positions)].reset_index(drop=True)
    sample[columns.prediction] = model.score(sample)["score"].to_numpy()
    reference = build_reference(sample, columns, sample_size=len(sample), seed=seed)
    reference.stats = {**reference.stats, **stats}
    reference.source_rows = total
    # the calibration days, chosen as in a whole-window calibration, scored one by one
    day_frame = pd.DataFrame({PARTITION_COLUMN: np.repeat(np.array(days, dtype=object), counts)})
    chunks, _ = calibration_chunks(day_frame, PARTITION_COLUMN, config)
    chosen = [str(day_frame[PARTITION_COLUMN].iloc[positions[0]]) for positions in chunks]
    del day_frame
    # only what the calibration compares is kept of each scored day: its monitored columns, the
    # prediction and the day (every day is the whole window: all columns would be its full width)
    kept_columns = list(dict.fromkeys([*monitored, PARTITION_COLUMN]))
    scored_days = []
    for day in chosen:
        frame = features.read(day)
        scores = model.score(frame)["score"].to_numpy()
        scored_days.append(frame[kept_columns].assign(**{columns.prediction: scores}))
        del frame, scores
    calibration = pd.concat(scored_days, ignore_index=True)
    del scored_days
    # Each calibration day is compared with the rest of the window (left out). When every day of the
    # window is calibrated (the default, up to 365 days), the scored days are the window: the same
    # calibration as a whole-window build. Otherwise a day's pool is the scored sample less that
    # day's rows, a random sample of the window without the day, as the whole-window build draws it.
    every_day = len(chosen) == sum(1 for c in counts if c)
    reference = calibrate_thresholds(reference, calibration, config, day_column=PARTITION_COLUMN,
                                     pool=None if every_day else sample)
    present = [d for d, c in zip(days, counts) if c]
    return SampledReference(reference, (present[0], present[-1]), total, labelled,
                            len(sample) + len(calibration), chosen)
