"""The alert policy (``resources.alert_policy``): a pure decision on plain JSON state."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from resources.alert_policy import Observation, decide
from tests.conftest import ALERT_KEY as KEY
from tests.conftest import ALERT_T0 as T0
from tests.conftest import drift_failure as fail


def test_decide_is_pure_and_validates():
    state0: dict = {"version": 1, "keys": {}}
    state1, _ = decide(state0, fail("x"), T0)
    assert state0 == {"version": 1, "keys": {}}
    decide(state1, fail("y"), T0 + timedelta(hours=2))
    assert state1["keys"][KEY]["consecutive_failures"] == 1
    # a naive now is UTC
    _, alerts = decide(state1, fail("z"), datetime(2026, 1, 1, 13, 0))
    assert [a.kind for a in alerts] == ["reminder"]
    with pytest.raises(ValueError, match="severity"):
        Observation(key=KEY, ok=False, severity="critical")
    with pytest.raises(ValueError, match="version"):
        decide({"version": 99, "keys": {}}, fail(), T0)
    # separate keys are independent
    other = Observation(key="run:flights_job", ok=False, title="Run failed")
    state2, alerts = decide(state1, other, T0)
    assert [a.kind for a in alerts] == ["failure"] and set(state2["keys"]) == {KEY, "run:flights_job"}
