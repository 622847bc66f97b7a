"""Features: the named feature functions a pipeline YAML refers to, and the features asset.

Importing the package registers every feature function shipped with the project.
"""

from ml_assets.features import flights  # noqa: F401  (registers flights_features)
