"""The scoring service: a FastAPI app serving the ``champion`` of one pipeline's registered model.

``POST /predict`` takes ``{"rows": [{...}]}`` in the primary source's own column names (only what is
known at request time; other fields are ignored, outcome columns never reach the model), computes the
request-side features with the pipeline's feature code on the request's columns
(``ml_assets.features.rows``; the feature function on a frame of the rows when it registers no row
features), joins the online features of the row's day from the online store, and answers ``{"predictions": [{"score", "label"}], "model": {"name",
"version"}}``. The ``challenger``, when one exists, is scored off the response path and both are
logged for the ``served_predictions`` asset. ``GET /health`` (the process is up), ``GET /ready``
(a champion is loaded), ``GET /metrics`` (Prometheus), ``GET /docs`` (OpenAPI).

A missing or wrongly typed field is a 422 naming it; no champion is a 503 saying what to run. Models
come only from the MLflow registry by alias. No Dagster here; heavy libraries load in ``create_app``.
"""


import datetime as dt
import json
import operator
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ml_assets.config.tabular import PipelineSpec
from ml_assets.features.rows import row_features, row_plan
from ml_assets.serving.online import (
    groups_of,
    join_columns,
    join_online,
    joined_columns,
    request_columns,
    request_features,
    request_spec,
    required_columns,
)

#: Latency buckets (seconds) fine enough to read a p95 around a few milliseconds.
LATENCY_BUCKETS = (0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
MAX_ROWS = 50_000

_TYPES: dict[str, Any] = {"int": int, "float": float, "number": float, "str": str, "bool": bool}


@dataclass
class ServiceSettings:
    """Where the service finds its pieces (plain values; ``server.py`` fills them from the project)."""

    spec: PipelineSpec
    tracking: Any  # resources.tracking.MlflowTracking
    store: Any  # resources.online_store.KeyValueStore
    traffic_path: Path
    poll_seconds: float = 10.0


def row_model(spec: PipelineSpec) -> Any:
    """The pydantic model of one request row: the request columns of ``spec`` with their YAML types,
    required when they may not be missing, other fields ignored."""
    from pydantic import ConfigDict, create_model

    required = set(required_columns(spec))
    fields: dict[str, Any] = {}
    for column, kind in request_columns(spec).items():
        annotation = dt.datetime if kind == "datetime" else _TYPES[kind]
        fields[column] = (annotation, ...) if column in required else (annotation | None, None)
    return create_model(
        f"{spec.name.title()}Row", __config__=ConfigDict(extra="ignore"), **fields
    )


def columns_of(rows: list[Any], names: list[str]) -> dict[str, list[Any]]:
    """``{name: [value of each row]}`` of validated request rows (pydantic models)."""
    if len(names) == 1:
        return {names[0]: [getattr(r, names[0]) for r in rows]}
    values = operator.attrgetter(*names)
    return {name: list(column) for name, column in zip(names, zip(*(values(r) for r in rows)))}


def create_app(settings: ServiceSettings, start_background: bool = True) -> Any:
    """The FastAPI app; ``start_background`` starts the alias refresher (tests may drive it by hand)."""
    from contextlib import asynccontextmanager

    import pandas as pd
    from fastapi import FastAPI, HTTPException, Response
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
    from pydantic import BaseModel, Field, create_model

    from ml_assets.serving.models import AliasedModels
    from ml_assets.serving.traffic import TrafficLog

    spec = settings.spec
    req_spec = request_spec(spec)
    groups = groups_of(spec)
    Row = row_model(spec)
    row_columns = list(Row.model_fields)
    plan = row_plan(spec, req_spec, row_columns)
    PredictRequest = create_model(
        "PredictRequest", rows=(list[Row], Field(min_length=1, max_length=MAX_ROWS, description="Rows to score."))
    )

    class Prediction(BaseModel):
        score: float
        label: float

    class ModelRef(BaseModel):
        name: str
        version: str

    class PredictResponse(BaseModel):
        predictions: list[Prediction]
        model: ModelRef

    models = AliasedModels(settings.tracking, spec, poll_seconds=settings.poll_seconds)
    traffic = TrafficLog(settings.traffic_path)
    registry = CollectorRegistry()
    requests_total = Counter("serving_requests_total", "Requests by endpoint and status code.",
                             ["endpoint", "status"], registry=registry)
    rows_total = Counter("serving_rows_total", "Rows scored by the champion.", registry=registry)
    latency = Histogram("serving_request_latency_seconds", "Time to answer /predict.",
                        buckets=LATENCY_BUCKETS, registry=registry)
    version_info = Gauge("serving_model_version_info", "1 for the version each alias serves.",
                         ["alias", "name", "version"], registry=registry)
    missing_keys = Counter("serving_online_missing_keys_total",
                           "Rows whose key had no online record, by key group (scored as missing).",
                           ["group"], registry=registry)
    unseen = Counter("serving_unseen_categories_total",
                     "Categorical values not seen in training (scored as missing), by column.",
                     ["column"], registry=registry)

    def update_version_gauge() -> None:
        version_info.clear()
        for served in (models.champion, models.challenger):
            if served is not None:
                version_info.labels(served.alias, served.name, served.version).set(1)

    @asynccontextmanager
    async def lifespan(app):
        if start_background:
            models.start()
        else:
            models.refresh()
        update_version_gauge()
        yield
        models.stop()
        traffic.flush(5)

    app = FastAPI(
        title=f"{spec.name} scoring service",
        description=(
            f"Scores rows of `{spec.primary_source}` with the `champion` version of"
            f" `{spec.registered_model_name}` from the MLflow registry, joined with the online features"
            " of the row's day. The `challenger`, when there is one, is scored in shadow."
        ),
        lifespan=lifespan,
    )
    app.state.models = models
    app.state.traffic = traffic

    @app.get("/health", summary="The process is up")
    def health() -> dict[str, str]:
        requests_total.labels("/health", "200").inc()
        return {"status": "ok"}

    @app.get("/ready", summary="A champion is loaded and the online store answers")
    def ready(response: Response) -> dict[str, Any]:
        champion = models.champion
        if champion is None:
            response.status_code = 503
            requests_total.labels("/ready", "503").inc()
            return {"ready": False, "reason": models.no_champion_message()}
        requests_total.labels("/ready", "200").inc()
        return {"ready": True, "model": {"name": champion.name, "version": champion.version},
                "challenger": models.challenger.version if models.challenger else None,
                "online_store": settings.store.describe()}

    @app.get("/metrics", summary="Prometheus metrics", include_in_schema=True)
    def metrics() -> Response:
        update_version_gauge()
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    @app.post("/predict", response_model=PredictResponse, summary="Score rows with the champion",
              responses={422: {"description": "A field is missing or has the wrong type (named in `detail`)."},
                         503: {"description": "No champion in the registry: says what to run."}})
    async def predict(request: PredictRequest) -> Response:  # type: ignore[valid-type]
        # async: the work is CPU-bound and short, so it runs on the event loop rather than paying a
        # hand-off to the thread pool on every request
        started = time.perf_counter()
        champion = models.champion  # one read: a concurrent alias move does not change this request
        if champion is None:
            requests_total.labels("/predict", "503").inc()
            raise HTTPException(status_code=503, detail=models.no_champion_message())
        columns = columns_of(request.rows, row_columns)
        n = len(request.rows)
        if plan is not None:  # the request-side features from the columns (ml_assets.features.rows)
            own = row_features(columns, plan)
            online, stats = join_columns(own, n, spec, settings.store, groups)
            features: Any = joined_columns(own, online)
        else:  # the feature function on a frame of the rows
            features, stats = join_online(request_features(pd.DataFrame(columns), spec, req_spec), spec,
                                          settings.store, groups)
        scores, labels, unseen_rows = champion.scorer.score(features)
        unseen_counts: dict[str, int] = {}
        for columns in unseen_rows:
            for column in columns:
                unseen_counts[column] = unseen_counts.get(column, 0) + 1
        for column, count in unseen_counts.items():
            unseen.labels(column).inc(count)
        for group, count in stats.missing.items():
            if count:
                missing_keys.labels(group).inc(count)
        traffic.submit({
            "request_id": uuid.uuid4().hex, "served_at": dt.datetime.now(dt.UTC).isoformat(),
            "features": features, "scores": scores, "labels": labels, "champion_version": champion.version,
            "challenger": models.challenger, "missing_keys": stats.missing_by_row, "unseen": unseen_rows,
        })
        # the JSON of PredictResponse written directly (a Response skips FastAPI's validation and
        # encoding of the response model, which cost more than the scoring on a large request)
        body = json.dumps({
            "predictions": [{"score": s, "label": l}
                            for s, l in zip(scores.astype(float).tolist(), labels.astype(float).tolist())],
            "model": {"name": champion.name, "version": champion.version},
        }, allow_nan=False)
        rows_total.inc(n)
        requests_total.labels("/predict", "200").inc()
        latency.observe(time.perf_counter() - started)
        return Response(body, media_type="application/json")

    return app
