"""Baseline for bench_backfill.py: the flights year's ingestion, validation and features as a plain
script, with no orchestration. Same readers, same Great Expectations suites, same feature function,
same one-Parquet-file-per-day output as the Dagster assets; nothing else.

    .venv/bin/python bench/plain_flights.py OUTPUT_DIR [LAST_DAY]

LAST_DAY (e.g. 2013-01-31) stops at that day instead of the year's last (bench_distributed.py --last).
"""

import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))


def main(out_dir: Path, last: str | None = None) -> None:
    import datetime as dt
    from zoneinfo import ZoneInfo

    from ml_assets.config import PIPELINES_DIR, load_pipeline
    from ml_assets.config.tabular import PARTITION_COLUMN
    from ml_assets.features.functions import get_feature_function
    from ml_assets.ingest.assets import daily_partitions
    from ml_assets.ingest.sources import describe_source, read_source
    from ml_assets.ingest.validation import validate_frame
    from resources.data_sources import DataSourceResource, Window, local_days
    from resources.parquet_io import atomic_write_parquet

    started = time.monotonic()
    spec = load_pipeline(PIPELINES_DIR / "flights.yaml")
    tz = spec.partitioning.timezone
    days = [day for day in daily_partitions(spec).get_partition_keys() if last is None or day <= last]
    start = dt.datetime.fromisoformat(days[0]).replace(tzinfo=ZoneInfo(tz))
    window = Window(start, dt.datetime.fromisoformat(days[-1]).replace(tzinfo=ZoneInfo(tz)) + dt.timedelta(days=1))
    reader = DataSourceResource(base_dir=str(REPO_ROOT))
    frames = {}
    for name, source in spec.sources.items():
        time_column = spec.time_column_for(name)
        frame = read_source(reader, source, name=name, time_column=time_column, timezone=tz, window=window)
        checked = frame.assign(**{PARTITION_COLUMN: local_days(frame[time_column], tz)})
        outcomes = validate_frame(checked, source.validation, source.entity_key, describe_source(reader, source),
                                  partition_column=PARTITION_COLUMN, expected_partitions=days)
        blocking = [o for o in outcomes.values() if not o.passed and o.severity == "ERROR"]
        if blocking:
            raise SystemExit(f"validation failed for {name}: {[o.name for o in blocking]}")
        groups = checked.groupby(PARTITION_COLUMN).groups
        for day in days:  # every day gets a file, an empty one for a day without rows
            part = frame.loc[groups[day]] if day in groups else frame.iloc[0:0]
            atomic_write_parquet(part.reset_index(drop=True), out_dir / f"raw_{name}" / f"{day}.parquet")
        frames[name] = frame
    import ml_assets.features  # noqa: F401  (registers the feature functions)

    features = get_feature_function(spec.features.function)(frames, days, spec, **spec.features.params)
    for day, part in features.groupby(PARTITION_COLUMN):
        atomic_write_parquet(part.reset_index(drop=True), out_dir / "features" / f"{day}.parquet")
    print(f"plain: {len(features)} feature rows for {len(days)} days in {time.monotonic() - started:.1f} s")


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2] if len(sys.argv) > 2 else None)
