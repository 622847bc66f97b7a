"""The alert notifier resource: delivery through apprise of the alerts the policy
(``resources.alert_policy``) decides.

``Notifier`` (a ``dg.ConfigurableResource``) delivers alerts through apprise: Slack, email, JSON
webhooks and every other apprise service, by URL (``urls=dg.EnvVar("ALERT_URLS")``, comma or space
separated). Delivery failures are returned (and logged) per alert and per URL, with credentials and
tokens redacted, and never raise unless ``raise_on_failure=True``: a sensor must keep running.

apprise is imported inside the methods that use it.
"""

from __future__ import annotations

import logging
import re
import urllib.parse
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any

import dagster as dg
from pydantic import Field

from resources.alert_policy import Alert, AlertPolicy, Observation, decide_all

logger = logging.getLogger(__name__)

NO_URLS_MESSAGE = "not delivered: no ALERT_URLS"


_TOKEN_LIKE = re.compile(r"^[A-Za-z0-9_\-.~+/=]{16,}$")


_SENSITIVE_QUERY_KEYS = re.compile(r"(token|key|secret|pass|pwd|auth|sig|webhook|access|credential)", re.I)


def url_secrets(url: str) -> set[str]:
    """The parts of an apprise URL that must never be logged: the password, token-like user/host/path
    segments and sensitive or token-like query values."""
    secrets: set[str] = set()
    try:
        parts = urllib.parse.urlsplit(url)
        netloc = parts.netloc
        userinfo = netloc.rpartition("@")[0] if "@" in netloc else ""
        user, _, password = userinfo.partition(":")
        host = netloc.rpartition("@")[2]
        path_segments = parts.path.split("/")
        query = urllib.parse.parse_qsl(parts.query, keep_blank_values=False)
    except ValueError:
        return {url} if len(url) >= 3 else set()
    for value in (password, urllib.parse.unquote(password)):
        if len(value) >= 3:
            secrets.add(value)
    for value in (user, host.split(":")[0], *path_segments):
        for candidate in (value, urllib.parse.unquote(value)):
            if _TOKEN_LIKE.match(candidate):
                secrets.add(candidate)
    for name, value in query:
        if len(value) >= 3 and (_SENSITIVE_QUERY_KEYS.search(name) or _TOKEN_LIKE.match(value)):
            secrets.add(value)
            secrets.add(urllib.parse.quote(value, safe=""))
    return secrets


def scrub(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every secret replaced by ``****`` (longest first)."""
    for secret in sorted(set(secrets), key=len, reverse=True):
        if secret:
            text = text.replace(secret, "****")
    return text


def redact_url(url: str, secrets: Iterable[str] = ()) -> str:
    """A display form of an apprise URL: no query string, no password, no tokens."""
    secrets = set(secrets) | url_secrets(url)
    base = url.split("?", 1)[0]
    parts = urllib.parse.urlsplit(base)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, host = netloc.rpartition("@")
        user = userinfo.partition(":")[0]
        netloc = f"{user}:****@{host}" if ":" in userinfo else f"{user}@{host}"
        base = urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", ""))
    return scrub(base, secrets)


class _ScrubFilter(logging.Filter):
    def __init__(self, secrets: set[str]) -> None:
        super().__init__()
        self.secrets = secrets

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken record: leave it to the logging machinery
            return True
        cleaned = scrub(message, self.secrets)
        if cleaned != message:
            record.msg, record.args = cleaned, ()
        return True


# Loggers that can print a service URL (apprise's debug logs print webhook URLs with their tokens;
# urllib3 prints request paths).
_SCRUBBED_LOGGERS = ("apprise", "urllib3.connectionpool", "requests")


@contextmanager
def _scrubbed_logs(secrets: set[str]) -> Iterator[None]:
    if not secrets:
        yield
        return
    log_filter = _ScrubFilter(secrets)
    loggers = [logging.getLogger(name) for name in _SCRUBBED_LOGGERS]
    for one in loggers:
        one.addFilter(log_filter)
    try:
        yield
    finally:
        for one in loggers:
            one.removeFilter(log_filter)


class NotificationError(RuntimeError):
    """An alert could not be delivered (raised only with ``raise_on_failure=True``)."""


class Notifier(dg.ConfigurableResource):
    """Alert delivery through apprise (``urls``, usually ``dg.EnvVar("ALERT_URLS")``) plus the
    suppression/escalation policy (``decide``) used by ``observe``."""

    urls: str | None = Field(
        default=None,
        description=(
            "apprise URLs, comma or space separated (slack://..., mailto://..., json://host/path)."
            " Secret: pass dg.EnvVar('ALERT_URLS'). Unset: alerts are decided but not delivered."
        ),
    )
    suppression_minutes: float = Field(
        default=60, ge=0, description="Minimum minutes between two alerts for a key that keeps failing."
    )
    escalate_after: int = Field(
        default=3, ge=0, description="Consecutive failures before an escalation alert (0: never)."
    )
    timeout_seconds: float = Field(
        default=10,
        gt=0,
        description=(
            "Connect and read timeout of each request (unless a URL sets its own ?cto=/?rto=); one"
            " delivery call is cut off after 3x this."
        ),
    )

    def policy(self) -> AlertPolicy:
        return AlertPolicy(suppression_minutes=self.suppression_minutes, escalate_after=self.escalate_after)

    def url_list(self) -> list[str]:
        """The configured URLs, split like apprise does (commas inside e.g. ``?to=a,b`` are kept)."""
        if not self.urls or not self.urls.strip():
            return []
        from apprise.utils.parse import parse_urls

        return [url for url in parse_urls(self.urls) if url]

    def _build(self, urls: Sequence[str], secrets: set[str]) -> tuple[Any, list[dict[str, Any]]]:
        """One Apprise object with every valid URL, and a target entry for each invalid one."""
        import apprise

        apobj = apprise.Apprise()
        invalid: list[dict[str, Any]] = []
        for url in urls:
            plugin = apprise.Apprise.instantiate(url)
            if plugin is None:
                invalid.append(
                    {
                        "url": redact_url(url, secrets),
                        "service": None,
                        "ok": False,
                        "status": "INVALID_URL",
                        "error": "apprise cannot parse or load this URL (unknown scheme or missing parts)",
                    }
                )
                continue
            query = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)
            if "cto" not in query:
                plugin.socket_connect_timeout = float(self.timeout_seconds)
            if "rto" not in query:
                plugin.socket_read_timeout = float(self.timeout_seconds)
            apobj.add(plugin)
        return apobj, invalid

    def send(self, alerts: Iterable[Alert], raise_on_failure: bool = False) -> list[dict[str, Any]]:
        """Deliver ``alerts`` to every URL; one result dict per alert.

        Each result: ``key``, ``kind``, ``title``, ``severity``, ``delivered`` (every URL accepted
        it), ``status`` (SUCCESS, PARTIAL, FAILURE, TIMEOUT or NOT_DELIVERED), ``message`` and
        ``targets`` (per URL: redacted ``url``, ``service``, ``ok``, ``status``, ``error``). Failures
        are logged as warnings and returned; with ``raise_on_failure=True`` a ``NotificationError``
        is raised after every alert has been attempted.
        """
        alerts = list(alerts)
        if not alerts:
            return []
        urls = self.url_list()
        if not urls:
            results = []
            for alert in alerts:
                logger.warning("alert %r (%s) %s", alert.title, alert.key, NO_URLS_MESSAGE)
                results.append(self._result(alert, "NOT_DELIVERED", NO_URLS_MESSAGE, []))
            if raise_on_failure:
                raise NotificationError(f"{len(alerts)} alert(s) {NO_URLS_MESSAGE}")
            return results

        from apprise import NotifyType

        secrets: set[str] = set()
        for url in urls:
            secrets |= url_secrets(url)
        results: list[dict[str, Any]] = []
        with _scrubbed_logs(secrets):
            apobj, invalid = self._build(urls, secrets)
            for target in invalid:
                logger.error("alert URL %s is invalid: %s", target["url"], target["error"])
            for alert in alerts:
                targets = [dict(target) for target in invalid]
                if len(apobj):
                    outcome = apobj.notify(
                        body=alert.body or alert.title,
                        title=alert.title,
                        notify_type=NotifyType(alert.severity),
                        timeout=3 * float(self.timeout_seconds),
                    )
                    try:
                        for service in outcome:
                            problems = [
                                entry.message
                                for entry in service.logs()
                                if str(getattr(entry, "level", "")).upper() in ("WARNING", "ERROR", "CRITICAL")
                            ]
                            error = None
                            if not service:
                                error = "; ".join(problems) or f"apprise reported {service.status.name}"
                            targets.append(
                                {
                                    "url": redact_url(service.url, secrets),
                                    "service": service.name,
                                    "ok": bool(service),
                                    "status": service.status.name,
                                    "error": scrub(error, secrets) if error else None,
                                }
                            )
                    finally:
                        outcome.close()
                results.append(self._summarise(alert, targets))

        failed = [result for result in results if not result["delivered"]]
        if failed and raise_on_failure:
            raise NotificationError("; ".join(result["message"] for result in failed))
        return results

    @staticmethod
    def _result(alert: Alert, status: str, message: str, targets: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "key": alert.key,
            "kind": alert.kind,
            "title": alert.title,
            "severity": alert.severity,
            "delivered": status == "SUCCESS",
            "status": status,
            "message": message,
            "targets": targets,
        }

    def _summarise(self, alert: Alert, targets: list[dict[str, Any]]) -> dict[str, Any]:
        ok = [target for target in targets if target["ok"]]
        bad = [target for target in targets if not target["ok"]]
        if not bad:
            return self._result(alert, "SUCCESS", f"delivered to {len(ok)} URL(s)", targets)
        if ok:
            status = "PARTIAL"
        elif all(target["status"] == "TIMEOUT" for target in bad):
            status = "TIMEOUT"
        else:
            status = "FAILURE"
        details = "; ".join(f"{target['url']}: {target['error']}" for target in bad)
        message = (
            f"alert {alert.title!r} ({alert.kind}, {alert.key}) not delivered to {len(bad)} of"
            f" {len(targets)} URL(s): {details}"
        )
        logger.warning("%s", message)
        return self._result(alert, status, message, targets)

    def observe(
        self,
        state: Mapping[str, Any] | None,
        observations: Iterable[Observation],
        now: datetime | None = None,
        raise_on_failure: bool = False,
    ) -> tuple[dict[str, Any], list[Alert], list[dict[str, Any]]]:
        """``decide`` every observation (with this resource's policy), then ``send`` the alerts.

        Returns the new state (store it in the sensor cursor with ``json.dumps``), the alerts and
        their delivery results. ``now`` defaults to the current UTC time.
        """
        now = now or datetime.now(timezone.utc)
        new_state, alerts = decide_all(state, observations, now, self.policy())
        deliveries = self.send(alerts, raise_on_failure=raise_on_failure)
        return new_state, alerts, deliveries
