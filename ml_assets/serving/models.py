"""The models the service scores with: the versions the ``champion`` and ``challenger`` aliases point
to, loaded from the MLflow registry only (``models:/<name>/<version>``), and swapped when an alias
moves without stopping the requests in flight.

``AliasedModels.refresh()`` asks the registry where each alias points; a new version is loaded first
and then replaces the old one in one assignment, so a request that already took the old model
finishes with it and the next one gets the new one. A background thread calls it every
``poll_seconds``. No Dagster here; mlflow loads inside the functions.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any

from ml_assets.training.registry import CHALLENGER, CHAMPION, ModelLoadError, NoChampionError, load_model

log = logging.getLogger("ml_platform.serving")


@dataclass(frozen=True)
class Served:
    """One loaded registry version: the alias it was found under, its version and its model."""

    alias: str
    name: str
    version: str
    model: Any  # the registered ScoringModel
    scorer: Any = None  # its FastScorer (the same scores without the pandas round trip)

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"


class AliasedModels:
    """The champion (required to serve) and the challenger (optional, scored in shadow)."""

    def __init__(self, tracking: Any, spec: Any, poll_seconds: float = 10.0) -> None:
        self.tracking = tracking
        self.spec = spec
        self.name = spec.registered_model_name
        self.poll_seconds = poll_seconds
        self.champion: Served | None = None
        self.challenger: Served | None = None
        self.last_error: str | None = None
        self.swaps = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def no_champion_message(self) -> str:
        """Why there is nothing to serve and what to run (the registry's own account)."""
        if self.last_error:
            return self.last_error
        return (
            f"no '{CHAMPION}' version of model '{self.name}' is loaded yet. Run"
            f" {self.spec.name}_training_job (its evaluation promotes a model that passes the gate)."
        )

    def _resolve(self, alias: str, current: Served | None) -> Served | None:
        version = self.tracking.alias_version(self.name, alias)
        if version is None:
            return None
        number = str(version.version)
        if current is not None and current.version == number:
            return current
        from ml_assets.serving.scoring import FastScorer

        model = load_model(self.tracking, f"models:/{self.name}/{number}")
        log.info("loaded %s version %s (alias %s)", self.name, number, alias)
        return Served(alias, self.name, number, model, FastScorer(model))

    def refresh(self) -> None:
        """Point both slots at the versions the aliases hold now (loading new ones first)."""
        with self._lock:
            try:
                champion = self._resolve(CHAMPION, self.champion)
                if champion is None:
                    from ml_assets.training.registry import champion_model

                    try:
                        champion_model(self.tracking, self.spec)
                    except (NoChampionError, ModelLoadError) as exc:
                        self.last_error = str(exc)
                else:
                    self.last_error = None
            except ModelLoadError as exc:
                # keep serving the version already loaded; say why the new one is not taken
                self.last_error = f"alias '{CHAMPION}' of '{self.name}' cannot be loaded: {exc}"
                log.error(self.last_error)
                champion = self.champion
            try:
                challenger = self._resolve(CHALLENGER, self.challenger)
            except ModelLoadError as exc:
                log.error("challenger not loaded: %s", exc)
                challenger = None
            if challenger is not None and champion is not None and challenger.version == champion.version:
                challenger = None  # the same version in both roles has nothing to compare
            if champion is not self.champion:
                self.swaps += 1
            self.champion, self.challenger = champion, challenger

    def start(self) -> None:
        """Refresh now, then every ``poll_seconds`` in a daemon thread."""
        self.refresh()

        def loop() -> None:
            while not self._stop.wait(self.poll_seconds):
                try:
                    self.refresh()
                except Exception as exc:  # noqa: BLE001 - a registry hiccup must not stop serving
                    log.warning("registry refresh failed (serving the loaded versions): %s", exc)

        self._thread = threading.Thread(target=loop, name="alias-refresh", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
