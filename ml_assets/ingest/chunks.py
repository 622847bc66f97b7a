"""Reading a raw source over a range of days a chunk of days at a time, without holding the range.

The source is read once, as the data-source resource streams it (files in chunks of rows, SQL results
in chunks): every chunk of rows is split by the chunk of days (``partitioning.chunk_days``) its rows
fall in, and each piece is spilled to a private temp folder. The raw asset then validates one chunk
of days at a time (``read``), keeping only the verdicts and the per-day metadata, and, when every day
passed, hands the IO manager an iterator that reads the chunks again (``frames``), so that a year's run
holds one chunk of days, not the year plus a copy to validate it. The rows of a chunk are those of a
read of the whole range, in the same order and with the same dtypes (the dtypes the whole range's
concatenation would give). pandas is imported inside the methods.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from resources.data_sources import local_days

if TYPE_CHECKING:
    import pandas as pd


def chunks_of(keys: list[str], chunk_days: int) -> list[list[str]]:
    """``keys`` cut into consecutive runs of at most ``chunk_days`` keys."""
    if chunk_days < 1:
        raise ValueError(f"chunk_days must be at least 1, got {chunk_days}")
    return [keys[first:first + chunk_days] for first in range(0, len(keys), chunk_days)]


class SpilledRange:
    """The rows of one source over ``chunks`` (lists of consecutive day keys), spilled by chunk under
    ``folder`` as they are read (``add``); the local day of ``time_column`` in ``timezone`` says
    which chunk a row belongs to."""

    def __init__(self, folder: Path, chunks: list[list[str]], time_column: str, timezone: str) -> None:
        self.folder = Path(folder)
        self.chunks = chunks
        self.time_column = time_column
        self.timezone = timezone
        self.index = {day: i for i, chunk in enumerate(chunks) for day in chunk}
        self.pieces: list[list[Path]] = [[] for _ in chunks]
        self.seen: dict[str, set] = {}  # the dtypes of each column over every non-empty chunk read
        self.template: Any = None  # an empty frame of the source's columns
        self.rows = 0

    def add(self, frame: pd.DataFrame) -> None:
        """Spill the rows of ``frame`` (a chunk of the source read, already filtered to the range)."""
        if self.template is None:
            self.template = frame.iloc[0:0]
        if not len(frame):
            return
        for column, dtype in frame.dtypes.items():
            self.seen.setdefault(column, set()).add(dtype)
        which = local_days(frame[self.time_column], self.timezone).map(self.index).to_numpy()
        for chunk, positions in frame.groupby(which, sort=False).indices.items():
            number = int(chunk)
            path = self.folder / f"{number:05d}-{len(self.pieces[number]):06d}.pkl"
            frame.iloc[positions].to_pickle(path)  # a private temp file of this process
            self.pieces[number].append(path)
        self.rows += len(frame)

    def read(self, number: int) -> pd.DataFrame:
        """The rows of chunk ``number``, in the source's order, with the whole range's dtypes."""
        import pandas as pd

        frames = [pd.read_pickle(path) for path in self.pieces[number]]
        if not frames:
            return self.empty()
        else:
            frame = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0].reset_index(drop=True)
        del frames
        wanted = self.dtypes()
        differ = {c: t for c, t in wanted.items() if c in frame.columns and frame[c].dtype != t}
        return frame.astype(differ) if differ else frame

    def empty(self) -> pd.DataFrame:
        """No rows, the source's columns with the range's dtypes (the rows of a day without any)."""
        import pandas as pd

        if self.template is None:
            return pd.DataFrame()
        wanted = self.dtypes()
        return self.template.astype({c: t for c, t in wanted.items() if c in self.template.columns})

    def frames(self) -> Iterator[pd.DataFrame]:
        """Each chunk's rows (``read``), one at a time, removing its spilled pieces once read."""
        for number in range(len(self.chunks)):
            frame = self.read(number)
            for path in self.pieces[number]:
                path.unlink(missing_ok=True)
            yield frame

    def dtypes(self) -> dict[str, Any]:
        """The dtype of each column that differed between chunks of rows read (integers in one,
        floats with missing values in another), as concatenating them gives: the common numeric type
        of numbers, else ``object``."""
        import numpy as np

        common: dict[str, Any] = {}
        for column, dtypes in self.seen.items():
            if len(dtypes) < 2:
                continue
            numeric = all(isinstance(t, np.dtype) and t.kind in "iuf" for t in dtypes)
            common[column] = np.result_type(*dtypes) if numeric else np.dtype(object)
        return common
