"""The traffic log keeps what was served: features written once per request (plain columns or a
frame) come back from ``read_day`` row by row with their scores, in order, next to rows an earlier
version logged with one JSON object per row."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from ml_assets.serving.traffic import COLUMNS, TrafficLog, connect, read_day


def test_requests_written_once_per_request_read_back_per_row_with_legacy_rows(tmp_path):
    path = tmp_path / "traffic.sqlite"
    # a row logged by the earlier layout: its features in served.features
    with connect(path) as conn:
        legacy = {"carrier": "AA", "flight": 1, "partition_date": "2013-03-12", "distance": 200.0, "delayed": None}
        conn.execute(f"INSERT INTO served VALUES ({','.join('?' * len(COLUMNS))})", (
            "old", 0, "2013-03-12T00:00:00+00:00", "2013-03-12", "1", 0.25, 0.0, None, None, None, "[]", "[]",
            json.dumps(legacy)))
    plain = {"carrier": np.array(["UA", None, "ZZ"], dtype=object), "flight": np.array([7, 8, 9]),
             "partition_date": np.array(["2013-03-12", "2013-03-12", "2013-03-13"], dtype=object),
             "distance": np.array([1400.0, np.nan, 17.0]), "delayed": np.full(3, np.nan)}
    frame = pd.DataFrame({"carrier": ["B6"], "flight": [5], "partition_date": ["2013-03-12"],
                          "distance": [300.0], "delayed": [np.nan]})
    log = TrafficLog(path)
    for request_id, served_at, features, scores, missing, unseen in (
        ("a", "2013-03-12T01:00:00+00:00", plain, [0.1, 0.2, 0.3], [[], ["carrier"], []], [[], [], ["carrier"]]),
        ("b", "2013-03-12T02:00:00+00:00", frame, [0.9], [["origin"]], [[]]),
    ):
        log.submit({"request_id": request_id, "served_at": served_at, "features": features,
                    "scores": np.array(scores), "labels": (np.array(scores) >= 0.5).astype("int64"),
                    "champion_version": "3", "challenger": None, "missing_keys": missing, "unseen": unseen})
    log.flush()
    assert log.written == 4
    day = read_day(path, "2013-03-12")
    assert day["request_id"].tolist() == ["old", "a", "a", "b"]
    assert day["row_index"].tolist() == [0, 0, 1, 0]
    assert day["carrier"].tolist()[:3] == ["AA", "UA", None] and day["carrier"].iloc[3] == "B6"
    assert day["flight"].tolist() == [1, 7, 8, 5]
    np.testing.assert_array_equal(day["distance"].to_numpy(dtype=float), [200.0, 1400.0, np.nan, 300.0])
    assert day["champion_score"].tolist() == [0.25, 0.1, 0.2, 0.9]
    assert day["champion_label"].tolist() == [0.0, 0.0, 0.0, 1.0]
    assert [json.loads(t) for t in day["missing_keys"]] == [[], [], ["carrier"], ["origin"]]
    assert [json.loads(t) for t in day["unseen_categories"]] == [[], [], [], []]
    assert day["delayed"].isna().all()
    other = read_day(path, "2013-03-13")
    assert other["flight"].tolist() == [9] and other["row_index"].tolist() == [2]
    assert json.loads(other["unseen_categories"].iloc[0]) == ["carrier"]
    assert read_day(path, "2013-03-14").empty
