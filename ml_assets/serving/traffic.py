"""The served-traffic log: every scored row with its features, the champion's score and (scored off
the response path) the challenger's, in a SQLite file the ``served_predictions`` asset reads per day.

``TrafficLog.submit`` only puts the request on a queue; one worker thread takes everything queued,
scores the challenger once for all of it and writes the rows in one transaction, so neither slows the
response. No Dagster here.
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
    features = pd.DataFrame([json.loads(text) for text in frame.pop("features")], index=frame.index)
    features = features.drop(columns=[c for c in features.columns if c in frame.columns])
    return pd.concat([frame, features], axis=1)


def traffic_frame(parts: list[Any]) -> pd.DataFrame:
    """One frame of the features of many requests, each a DataFrame or ``{column: values}`` (the
    service's request path): plain columns are concatenated column by column, not frame by frame."""
    import numpy as np
    import pandas as pd

    if all(not hasattr(p, "columns") for p in parts) and len({tuple(p) for p in parts}) == 1:
        return pd.DataFrame({c: np.concatenate([np.asarray(p[c]) for p in parts]) for c in parts[0]})
    frames = [p if hasattr(p, "columns") else pd.DataFrame(dict(p)) for p in parts]
    return pd.concat(frames, ignore_index=True)


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
        import pandas as pd

        features = traffic_frame([item["features"] for item in items])
        sizes = [rows_of(item["features"]) for item in items]
        owner = np.repeat(np.arange(len(items)), sizes)
        shadow = np.full(len(features), np.nan)
        shadow_label = np.full(len(features), np.nan)
        shadow_version: list[str | None] = [None] * len(features)
        # the challenger scores the rows of the requests that had one, grouped by version
        by_version: dict[str, list[int]] = {}
        for i, item in enumerate(items):
            if item.get("challenger") is not None:
                by_version.setdefault(item["challenger"].version, []).append(i)
        for version, members in by_version.items():
            challenger = items[members[0]]["challenger"]
            rows = np.isin(owner, members)
            scores, labels, _ = challenger.scorer.score(features[rows])
            shadow[rows] = np.asarray(scores, dtype=float)
            shadow_label[rows] = np.asarray(labels, dtype=float)
            for i in rows.nonzero()[0]:
                shadow_version[i] = version
        # one JSON text per row, by pandas in one call
        texts = features.to_json(orient="records", lines=True, date_format="iso").splitlines()
        days = features["partition_date"].astype(object).where(features["partition_date"].notna(), None).tolist()
        champion = np.concatenate([np.asarray(item["scores"], dtype=float) for item in items]).tolist()
        champion_label = np.concatenate([np.asarray(item["labels"], dtype=float) for item in items]).tolist()
        shadow_list, shadow_label_list = shadow.tolist(), shadow_label.tolist()
        rows = []
        position = 0
        for item, size in zip(items, sizes):
            for i in range(size):
                j = position + i
                has_shadow = shadow_version[j] is not None
                rows.append((
                    item["request_id"], i, item["served_at"], days[j], item["champion_version"], champion[j],
                    champion_label[j], shadow_version[j], shadow_list[j] if has_shadow else None,
                    shadow_label_list[j] if has_shadow else None, json.dumps(item["missing_keys"][i]),
                    json.dumps(item["unseen"][i]), texts[j],
                ))
            position += size
        with conn:
            conn.executemany(f"INSERT OR REPLACE INTO served VALUES ({','.join('?' * len(COLUMNS))})", rows)
        self.written += len(rows)
