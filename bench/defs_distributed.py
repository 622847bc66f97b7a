"""The code location of bench_distributed.py: the project's own definitions (definitions.py, so the
executor is ``ML_EXECUTOR``'s, celery in the benchmark) plus what a chunked backfill of the flights
year runs and the bookkeeping floor to compare it with. The repository's definitions are not changed.

* ``bench_flights_raw_job``: the raw assets of every source (their checks run in the same step);
* ``bench_flights_features_job``: the features asset. A backfill with
  ``BackfillPolicy.multi_run(N)`` runs the features in runs of their own: their partition mapping
  reaches ``history_days`` back, so Dagster's asset backfill does not put them in a run with the raw
  days they read ("partition mapping ... is not simple", Dagster 1.13's asset backfill);
* the floor: one no-op asset per real asset (group ``bench_floor``) with the same daily partitions,
  backfill policy and dependencies (the features' no-op reaches back the same days), the raw no-ops
  with the same six partitioned blocking checks, each passing for every day; they compute nothing
  and store nothing. In ``bench_floor_raw_job`` and ``bench_floor_features_job``, run the same way,
  they give Dagster's own cost of the same runs, steps, partitions and check evaluations (planning,
  events in the instance, dispatch to a worker) with no work inside.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import dagster as dg  # noqa: E402

import definitions  # noqa: E402
from ml_assets.config import PIPELINES_DIR, load_pipeline  # noqa: E402
from ml_assets.execution import backfill_policy  # noqa: E402
from ml_assets.features.assets import earlier_days  # noqa: E402
from ml_assets.ingest.assets import daily_partitions  # noqa: E402
from ml_assets.ingest.validation import CHECK_GROUPS  # noqa: E402
from ml_assets.keys import pipeline_keys  # noqa: E402
from ml_assets.metadata import partition_check_results, partition_keys  # noqa: E402

FLOOR_GROUP = "bench_floor"
RAW_JOB, FEATURES_JOB = "bench_flights_raw_job", "bench_flights_features_job"
FLOOR_RAW_JOB, FLOOR_FEATURES_JOB = "bench_floor_raw_job", "bench_floor_features_job"

spec = load_pipeline(PIPELINES_DIR / "flights.yaml")
keys = pipeline_keys(spec)
partitions_def = daily_partitions(spec)
policy = backfill_policy(spec)


def floor_key(key: dg.AssetKey) -> dg.AssetKey:
    return dg.AssetKey([FLOOR_GROUP, *key.path])


def noop_raw(key: dg.AssetKey) -> dg.AssetsDefinition:
    key = floor_key(key)

    @dg.asset(key=key, group_name=FLOOR_GROUP, partitions_def=partitions_def, backfill_policy=policy,
              kinds={"python"}, code_version="1",
              check_specs=[dg.AssetCheckSpec(name=group, asset=key, blocking=True, partitions_def=partitions_def)
                           for group in CHECK_GROUPS])
    def _noop(context: dg.AssetExecutionContext):
        """No work: the bookkeeping floor of a raw asset (same partitions and checks)."""
        yield dg.MaterializeResult()
        yield from partition_check_results(context, {
            day: [dg.AssetCheckResult(check_name=group, passed=True) for group in CHECK_GROUPS]
            for day in partition_keys(context)
        })

    return _noop


floor_raw = [noop_raw(keys.raw(source)) for source in spec.sources]


@dg.asset(key=floor_key(keys.features), group_name=FLOOR_GROUP, partitions_def=partitions_def,
          backfill_policy=policy, kinds={"python"}, code_version="1",
          deps=[dg.AssetDep(floor_key(keys.raw(source)), partition_mapping=dg.TimeWindowPartitionMapping(
              start_offset=-earlier, allow_nonexistent_upstream_partitions=True) if earlier else None)
                for source, earlier in earlier_days(spec).items()])
def floor_features() -> dg.MaterializeResult:
    """No work: the bookkeeping floor of the features (same partitions and dependencies)."""
    return dg.MaterializeResult()


defs = dg.Definitions.merge(definitions.defs, dg.Definitions(
    assets=[*floor_raw, floor_features],
    jobs=[
        dg.define_asset_job(RAW_JOB, selection=[keys.raw(source) for source in spec.sources]),
        dg.define_asset_job(FEATURES_JOB, selection=[keys.features]),
        dg.define_asset_job(FLOOR_RAW_JOB, selection=[floor_key(keys.raw(source)) for source in spec.sources]),
        dg.define_asset_job(FLOOR_FEATURES_JOB, selection=[floor_key(keys.features)]),
    ],
))
