"""The bottom layer: the pipeline YAML schemas and their loaders, and where things are.

No Dagster import: everything above (stage libraries, stage assets, sensors) builds on these plain
pydantic specs.
"""

from ml_assets.config.base import Identifier, PipelineConfigError
from ml_assets.config.fewshot import DEFAULT_FEWSHOT_YAML, FewshotSpec, load_fewshot_spec
from ml_assets.config.paths import PIPELINES_DIR, REPO_ROOT, data_dir, package_path, repo_path
from ml_assets.config.tabular import PipelineSpec, load_pipeline, tabular_pipeline_files

__all__ = [
    "DEFAULT_FEWSHOT_YAML", "FewshotSpec", "Identifier", "PIPELINES_DIR", "PipelineConfigError",
    "PipelineSpec", "REPO_ROOT", "data_dir", "load_fewshot_spec", "load_pipeline", "package_path",
    "repo_path", "tabular_pipeline_files",
]
