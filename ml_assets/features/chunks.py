"""Building the features of a range of days a chunk of days at a time: each chunk reads, from the
stored raw partitions (``resources.partition_reader.StoredPartitions``), its own days plus the
history (primary source) or context days (other sources) the feature function needs, builds the
chunk's features and hands them on; the caller (the features asset) passes the iterator to the
Parquet IO manager, which stages each chunk's partition files and releases the chunk before asking
for the next. A run over a year then holds one month of raw rows and features, not the year.

The feature functions only use rows of a day and of the days before it (``tests/features``), so a
chunk's features equal the same days' rows of a whole-range call (``tests/features/test_chunks.py``).
pandas is imported inside the functions.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from typing import Any

from ml_assets.ingest.chunks import chunks_of


def needed_keys(stored_keys: tuple, chunk: list[str], earlier: int) -> list[str]:
    """The stored upstream keys a chunk needs: its days and the ``earlier`` days before the first."""
    first = (dt.date.fromisoformat(chunk[0]) - dt.timedelta(days=earlier)).isoformat()
    return [key for key in stored_keys if key is not None and first <= key <= chunk[-1]]


def read_chunk_sources(stored: dict[str, Any], chunk: list[str], earlier: dict[str, int]) -> dict[str, Any]:
    """Each source's frame for ``chunk``: its stored days from ``earlier[source]`` days before the
    chunk to its last day, concatenated in day order (as an eager load of those days)."""
    return {name: source.read_all(keys=needed_keys(source.keys, chunk, earlier.get(name, 0)))
            for name, source in stored.items()}


def feature_chunks(
    stored: dict[str, Any], days: list[str], chunk_days: int, earlier: dict[str, int],
    build: Callable[[dict[str, Any], list[str]], Any], on_chunk: Callable[[list[str], Any], None],
) -> Iterator[Any]:
    """The features of ``days``, one frame per chunk of ``chunk_days`` days: ``build(sources,
    chunk)`` on the chunk's sources; ``on_chunk(chunk, frame)`` (per-day metadata, totals) runs
    before each frame is handed on. Nothing is read before the consumer asks for the first chunk."""
    for chunk in chunks_of(days, chunk_days):
        sources = read_chunk_sources(stored, chunk, earlier)
        frame = build(sources, chunk)
        del sources
        on_chunk(chunk, frame)
        yield frame
