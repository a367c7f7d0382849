"""When not to trust a cost table: a busy machine, or cells whose repeats disagree.

Timings taken while other processes compete for the cores are slower and noisier than the code
is (on a shared machine clip's step once came out slower at V=1 than at V=4). Two checks:

- **busy machine**: the 1-minute load average before the measurement, over the number of cores;
  above `BUSY_LOAD_FRACTION` the machine was busy before we started.
- **spread**: a cell's interquartile range over its median, IQR / median; above `SPREAD_LIMIT`
  the median of the repeats is not a stable figure (rerun with more --repeats on a quiet machine).
"""

from __future__ import annotations

import os
from typing import Any

BUSY_LOAD_FRACTION = 0.5
SPREAD_LIMIT = 0.25


def machine_load() -> dict[str, Any]:
    """{"load_1min", "load_5min", "cpus"}: None where the platform has no load average."""
    one: float | None
    five: float | None
    try:
        one, five, _ = os.getloadavg()
    except (AttributeError, OSError):
        one = five = None
    return {"load_1min": one, "load_5min": five, "cpus": os.cpu_count()}


def busy_warning(load: dict[str, Any]) -> str | None:
    one, cpus = load.get("load_1min"), load.get("cpus")
    if one is None or not cpus or one <= BUSY_LOAD_FRACTION * cpus:
        return None
    return (
        f"the machine was busy: load average {one:.1f} on {cpus} cores before measuring; timings are slower "
        "and noisier than the code is (measure on a quiet machine, or compare only cells measured together)"
    )


def spread_warnings(rows: list[dict[str, Any]], limit: float = SPREAD_LIMIT) -> list[str]:
    """One line per measured cell whose IQR / median exceeds `limit`, alone or as a whole step."""
    out = []
    for row in rows:
        if row.get("status") != "ok":
            continue
        for part, name in (("objective", "objective alone"), ("step", "whole step")):
            median, iqr = row.get(f"{part}_ms_median"), row.get(f"{part}_ms_iqr")
            if median and iqr is not None and median > 0 and iqr / median > limit:
                out.append(
                    f"{row['objective']} V={row['views']} {name}: spread {100 * iqr / median:.0f}% of the median "
                    f"(IQR {iqr:.2f} ms, median {median:.2f} ms) > {100 * limit:.0f}%"
                )
    return out


def cost_warnings(result: dict[str, Any]) -> list[str]:
    """Every warning for a cost result (its `machine_load` and rows)."""
    out = []
    busy = busy_warning(result.get("machine_load") or {})
    if busy:
        out.append(busy)
    spread = spread_warnings(result.get("rows", []))
    if spread:
        out.append(f"{len(spread)} cell(s) with a large spread between repeats (more --repeats, a quieter machine):")
        out += [f"  {line}" for line in spread]
    return out
