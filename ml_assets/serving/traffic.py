"""The served-traffic log: every scored row with its features, the champion's score and (scored off
the response path) the challenger's, in a SQLite file the ``served_predictions`` asset reads per day.

``TrafficLog.submit`` only puts the request on a queue; one worker thread takes everything queued,
scores the challenger once for all of it and writes the rows in one transaction, so neither slows the
response. The writer shares the interpreter with the requests, so its work per row is kept small:
a request's features are stored once per request (table ``served_requests``: text columns as JSON,
numeric ones as the raw bytes of their arrays) rather than as one JSON object per row, and the per-row key and category lists
are encoded once per distinct list. ``read_day`` expands either layout (rows written by earlier
versions hold their features in ``served.features``). No Dagster here.
"""

from __future__ import annotations

import json
import logging
import queue
import sqlite3
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ml_assets.serving.scoring import rows_of

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger("ml_platform.serving")

COLUMNS = (
    "request_id", "row_index", "served_at", "partition_date", "champion_version", "champion_score",
    "champion_label", "challenger_version", "challenger_score", "challenger_label", "missing_keys",
    "unseen_categories", "features",
)


def connect(path: str | Path) -> sqlite3.Connection:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, timeout=30, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(
        "CREATE TABLE IF NOT EXISTS served (request_id TEXT, row_index INTEGER, served_at TEXT,"
        " partition_date TEXT, champion_version TEXT, champion_score REAL, champion_label REAL,"
        " challenger_version TEXT, challenger_score REAL, challenger_label REAL, missing_keys TEXT,"
        " unseen_categories TEXT, features TEXT, PRIMARY KEY (request_id, row_index))"
    )
    conn.execute("CREATE INDEX IF NOT EXISTS served_day ON served (partition_date)")
    conn.execute("CREATE TABLE IF NOT EXISTS served_requests (request_id TEXT PRIMARY KEY, features TEXT,"
                 " arrays BLOB)")
    return conn


def read_day(path: str | Path, day: str) -> pd.DataFrame:
    """The rows served for flights of ``day`` (their partition date), oldest first; features expanded
    into columns."""
    import pandas as pd

    if not Path(path).exists():
        return pd.DataFrame(columns=[c for c in COLUMNS if c != "features"])
    with connect(path) as conn:
        frame = pd.read_sql_query(
            "SELECT * FROM served WHERE partition_date = ? ORDER BY served_at, request_id, row_index",
            conn, params=(day,),
        )
        ids = frame.loc[frame["features"].isna(), "request_id"].unique().tolist()
        blobs: dict[str, tuple[str, bytes]] = {}
        for start in range(0, len(ids), 500):
            chunk = ids[start:start + 500]
            rows = conn.execute(f"SELECT request_id, features, arrays FROM served_requests WHERE request_id IN"
                                f" ({','.join('?' * len(chunk))})", chunk).fetchall()
            blobs.update((request_id, (text, arrays)) for request_id, text, arrays in rows)
    texts = frame.pop("features")
    # a request's rows are consecutive (ordered by time, then request): one piece per run of rows
    pieces = []
    request_ids, row_index = frame["request_id"].tolist(), frame["row_index"].tolist()
    start = 0
    while start < len(frame):
        stop = start
        while stop < len(frame) and request_ids[stop] == request_ids[start]:
            stop += 1
        blob = blobs.get(request_ids[start])
        if blob is not None:
            pieces.append(pd.DataFrame(request_columns(*blob)).iloc[row_index[start:stop]])
        else:
            pieces.append(pd.DataFrame([json.loads(text) if text else {} for text in texts.iloc[start:stop]]))
        start = stop
    features = pd.concat(pieces, ignore_index=True) if pieces else pd.DataFrame(index=range(0))
    features.index = frame.index
    features = features.drop(columns=[c for c in features.columns if c in frame.columns])
    return pd.concat([frame, features], axis=1)


def feature_columns(parts: list[Any]) -> dict[str, Any]:
    """The features of many requests, each a DataFrame or ``{column: values}`` (the service's request
    path), as one ``{column: array}``, concatenated column by column."""
    import numpy as np
    import pandas as pd

    plain = [p if not hasattr(p, "columns") else {c: p[c].to_numpy() for c in p.columns} for p in parts]
    if len({tuple(p) for p in plain}) == 1:
        return {c: np.concatenate([np.asarray(p[c]) for p in plain]) for c in plain[0]}
    frame = pd.concat([pd.DataFrame(dict(p)) for p in plain], ignore_index=True)
    return {c: frame[c].to_numpy() for c in frame.columns}


def encode_columns(columns: dict[str, Any]) -> tuple[str, bytes]:
    """A request's feature columns for ``served_requests``: the text and other object columns as JSON,
    the numeric ones as the raw bytes of their arrays one after the other (their names and dtypes in
    the JSON): formatting thousands of floats as text would cost the writer more than the request."""
    import numpy as np

    objects: dict[str, list[Any]] = {}
    arrays: list[tuple[str, str, int]] = []
    chunks: list[bytes] = []
    for column, values in columns.items():
        values = np.asarray(values)
        if values.dtype.kind in "biuf":
            data = np.ascontiguousarray(values).tobytes()
            arrays.append((column, values.dtype.str, len(data)))
            chunks.append(data)
        else:
            objects[column] = values.tolist()
    text = json.dumps({"order": list(columns), "columns": objects, "arrays": arrays},
                      default=lambda v: v.item() if hasattr(v, "item") else str(v))
    return text, b"".join(chunks)


def request_columns(text: str, data: bytes) -> dict[str, Any]:
    """The columns ``encode_columns`` wrote, in their order."""
    import numpy as np

    stored = json.loads(text)
    columns = dict(stored["columns"])
    offset = 0
    for name, dtype, size in stored["arrays"]:
        columns[name] = np.frombuffer(data, dtype=dtype, count=size // np.dtype(dtype).itemsize, offset=offset).copy()
        offset += size
    return {c: columns[c] for c in stored["order"]}


def json_lists(lists: list[list[str]]) -> list[str]:
    """``json.dumps`` of each list, encoded once per distinct list (most rows share a few)."""
    memo: dict[tuple[str, ...], str] = {}
    out = []
    for value in lists:
        key = tuple(value)
        text = memo.get(key)
        if text is None:
            text = memo[key] = json.dumps(value)
        out.append(text)
    return out


class TrafficLog:
    """A queue and one writer thread: ``submit`` returns at once."""

    def __init__(self, path: str | Path, max_queue: int = 10_000, batch_items: int = 500) -> None:
        self.path = Path(path)
        self.batch_items = batch_items
        self.queue: queue.Queue = queue.Queue(maxsize=max_queue)
        self.dropped = 0
        self.written = 0
        self._thread = threading.Thread(target=self._run, name="traffic-log", daemon=True)
        self._thread.start()

    def submit(self, item: dict[str, Any]) -> None:
        try:
            self.queue.put_nowait(item)
        except queue.Full:
            self.dropped += 1

    def flush(self, timeout: float = 30.0) -> None:
        """Wait until everything submitted so far is written (tests, shutdown)."""
        done = threading.Event()
        self.queue.put({"flush": done})
        done.wait(timeout)

    def _run(self) -> None:
        conn = connect(self.path)
        while True:
            # everything queued so far in one go: one challenger call and one transaction for many
            # requests keeps the writer's share of the interpreter small under load
            items = [self.queue.get()]
            while len(items) < self.batch_items:
                try:
                    items.append(self.queue.get_nowait())
                except queue.Empty:
                    break
            flushes = [item["flush"] for item in items if "flush" in item]
            requests = [item for item in items if "flush" not in item]
            if requests:
                try:
                    self._write(conn, requests)
                except Exception:  # noqa: BLE001 - a bad log write must not stop the writer
                    log.exception("writing served traffic failed")
            for done in flushes:
                done.set()

    def _write(self, conn: sqlite3.Connection, items: list[dict[str, Any]]) -> None:
        import numpy as np

        sizes = [rows_of(item["features"]) for item in items]
        features = feature_columns([item["features"] for item in items])
        total = sum(sizes)
        owner = np.repeat(np.arange(len(items)), sizes)
        shadow = np.full(total, np.nan)
        shadow_label = np.full(total, np.nan)
        shadow_version: list[str | None] = [None] * total
        # the challenger scores the rows of the requests that had one, grouped by version
        by_version: dict[str, list[int]] = {}
        for i, item in enumerate(items):
            if item.get("challenger") is not None:
                by_version.setdefault(item["challenger"].version, []).append(i)
        for version, members in by_version.items():
            challenger = items[members[0]]["challenger"]
            rows = np.isin(owner, members)
            scores, labels, _ = challenger.scorer.score({c: v[rows] for c, v in features.items()})
            shadow[rows] = np.asarray(scores, dtype=float)
            shadow_label[rows] = np.asarray(labels, dtype=float)
            for i in rows.nonzero()[0]:
                shadow_version[i] = version
        days = [None if d is None or d != d else str(d) for d in features["partition_date"].tolist()]
        champion = np.concatenate([np.asarray(item["scores"], dtype=float) for item in items]).tolist()
        champion_label = np.concatenate([np.asarray(item["labels"], dtype=float) for item in items]).tolist()
        missing = json_lists([keys for item in items for keys in item["missing_keys"]])
        unseen = json_lists([columns for item in items for columns in item["unseen"]])
        shadow_list, shadow_label_list = shadow.tolist(), shadow_label.tolist()
        rows = []
        blobs = []
        position = 0
        for item, size in zip(items, sizes):
            blobs.append((item["request_id"], *encode_columns(
                {c: v[position:position + size] for c, v in features.items()})))
            for i in range(size):
                j = position + i
                has_shadow = shadow_version[j] is not None
                rows.append((
                    item["request_id"], i, item["served_at"], days[j], item["champion_version"], champion[j],
                    champion_label[j], shadow_version[j], shadow_list[j] if has_shadow else None,
                    shadow_label_list[j] if has_shadow else None, missing[j], unseen[j], None,
                ))
            position += size
        with conn:
            conn.executemany("INSERT OR REPLACE INTO served_requests VALUES (?, ?, ?)", blobs)
            conn.executemany(f"INSERT OR REPLACE INTO served VALUES ({','.join('?' * len(COLUMNS))})", rows)
        self.written += len(rows)
