"""Origin weather for the flights features: the reading at a flight's scheduled hour, and aggregates
over the hours before it (never a reading after it). pandas and numpy load inside the functions.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ml_assets.features.functions import as_str, epoch_ns, utc_times

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd


HOUR_NS = 3_600_000_000_000


def weather_table(weather: pd.DataFrame, weather_time_column: str, columns: list[str]) -> pd.DataFrame:
    """Origin, epoch-ns hour and numeric ``columns`` of the weather rows, first row per (origin, hour)."""
    import pandas as pd

    if weather_time_column not in weather.columns or "origin" not in weather.columns:
        raise ValueError(f"the weather source needs 'origin' and '{weather_time_column}' columns")
    table = pd.DataFrame(
        {
            "origin": as_str(weather["origin"]).to_numpy(),
            "_hour": epoch_ns(utc_times(weather[weather_time_column])),
        }
    )
    for column in columns:
        table[column] = pd.to_numeric(weather[column], errors="coerce").astype("float64").to_numpy()
    return table.drop_duplicates(["origin", "_hour"], keep="first")


def weather_window_features(
    weather: pd.DataFrame,
    weather_time_column: str,
    origins: pd.Series,
    times: pd.Series,
    wanted: list[tuple[str, str, str, int]],
) -> dict[str, np.ndarray]:
    """Per flight, an aggregate of its origin's hourly weather over the ``n`` hours up to its
    scheduled UTC hour ``t``: ``sum``/``min``/``max``/``mean`` over the readings in ``(t - n h, t]``
    (missing hours skipped, NaN when none) and ``change`` = reading at ``t`` minus reading at
    ``t - n h`` (NaN if either is missing). Never a reading after ``t``.

    Readings go on a dense (origin x hour) grid; each window is accumulated one lag at a time, in
    the same order for every flight, so a flight's value does not depend on the other rows.
    """
    import numpy as np
    import pandas as pd

    columns = list(dict.fromkeys(column for _, column, _, _ in wanted))
    table = weather_table(weather, weather_time_column, columns)
    n_rows = len(origins)
    result: dict[str, np.ndarray] = {}
    if table.empty or n_rows == 0:
        for name, *_ in wanted:
            result[name] = np.full(n_rows, np.nan)
        return result
    table = table[table["_hour"] != np.iinfo("int64").min]
    origin_index = pd.Index(pd.unique(table["origin"].to_numpy()))
    origin_codes = origin_index.get_indexer(table["origin"].to_numpy())
    hours = table["_hour"].to_numpy() // HOUR_NS
    first_hour = int(hours.min()) if len(hours) else 0
    n_hours = int(hours.max()) - first_hour + 1 if len(hours) else 0
    flight_ns = epoch_ns(times)
    flight_origin = origin_index.get_indexer(as_str(origins).to_numpy())
    usable = (flight_ns != np.iinfo("int64").min) & (flight_origin >= 0)
    flight_hour = np.where(usable, flight_ns // HOUR_NS - first_hour, 0)

    def at_lag(grid: np.ndarray, lag: int) -> np.ndarray:
        """Reading ``lag`` hours before each flight's hour (NaN outside the grid)."""
        position = flight_hour - lag
        inside = usable & (position >= 0) & (position < n_hours)
        values = np.full(n_rows, np.nan)
        values[inside] = grid[flight_origin[inside], position[inside]]
        return values

    for column in columns:
        grid = np.full((len(origin_index), n_hours), np.nan)
        grid[origin_codes, hours - first_hour] = table[column].to_numpy()
        for name, row_column, agg, n in wanted:
            if row_column != column:
                continue
            if agg == "change":
                result[name] = at_lag(grid, 0) - at_lag(grid, n)
                continue
            total = np.zeros(n_rows)
            count = np.zeros(n_rows, dtype="int64")
            low = np.full(n_rows, np.inf)
            high = np.full(n_rows, -np.inf)
            for lag in range(n):
                values = at_lag(grid, lag)
                present = ~np.isnan(values)
                count += present
                if agg in ("sum", "mean"):
                    total += np.where(present, values, 0.0)
                elif agg == "min":
                    low = np.where(present, np.minimum(low, values), low)
                else:
                    high = np.where(present, np.maximum(high, values), high)
            aggregate = {"sum": total, "min": low, "max": high}.get(agg)
            if agg == "mean":
                with np.errstate(invalid="ignore", divide="ignore"):
                    aggregate = total / count
            result[name] = np.where(count > 0, aggregate, np.nan)
    return result


def weather_at_hour(
    weather: pd.DataFrame,
    weather_time_column: str,
    origins: pd.Series,
    times: pd.Series,
    columns: list[str],
) -> pd.DataFrame:
    """Weather of each flight's origin at its scheduled UTC hour; NaN when that hour is missing."""
    import pandas as pd

    table = weather_table(weather, weather_time_column, columns)
    keys = pd.DataFrame({"origin": as_str(origins).to_numpy(), "_hour": epoch_ns(times)})
    joined = keys.merge(table, on=["origin", "_hour"], how="left", sort=False)
    return joined[columns]
