"""Helpers shared by the benchmarks: machine load, min/median, peak RSS of children."""

from __future__ import annotations

import os
import resource
from collections.abc import Sequence

import numpy as np


def load() -> str:
    """The 1/5/15-minute load averages and core count, printed beside every figure."""
    one, five, fifteen = os.getloadavg()
    return f"load {one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} cores"


def min_median(times: Sequence[float]) -> tuple[float, float]:
    return float(min(times)), float(np.median(times))


def children_peak_rss_mb() -> float:
    """Largest resident set of any child process waited for so far (Linux: KiB)."""
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def children_cpu_s() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime
