"""A job for test_instance.py: many concurrent steps writing events to a SQLite instance."""

import dagster as dg

from definitions import EXECUTOR


def _writer(index: int) -> dg.AssetsDefinition:
    @dg.asset(name=f"writer_{index}")
    def _asset(context: dg.AssetExecutionContext):
        for step in range(40):
            context.log.info(f"writer {index} event {step}")
        return dg.MaterializeResult(metadata={"index": index})

    return _asset


WRITERS = [_writer(i) for i in range(8)]


def stress_job() -> dg.JobDefinition:
    """Eight assets, no dependencies, under the project's executor (configured for 4 at once here)."""
    executor = dg.multiprocess_executor.configured({"max_concurrent": 4, "start_method": {"forkserver": {}}})
    defs = dg.Definitions(assets=WRITERS, jobs=[dg.define_asset_job("stress", executor_def=executor)])
    return defs.resolve_job_def("stress")


def project_executor_job() -> dg.JobDefinition:
    defs = dg.Definitions(assets=WRITERS, jobs=[dg.define_asset_job("project_executor")], executor=EXECUTOR)
    return defs.resolve_job_def("project_executor")
