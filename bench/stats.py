"""Turning raw counts and latencies into the figures the report shows."""

from __future__ import annotations

from array import array
from collections.abc import Iterable
from typing import Any


def percentile(ordered: list[float], q: float) -> float:
    """Nearest-rank percentile of an already sorted list (0 when empty)."""
    if not ordered:
        return 0.0
    rank = max(0, min(len(ordered) - 1, int(round(q / 100 * len(ordered) + 0.5)) - 1))
    return ordered[rank]


def latency_summary(samples: Iterable[float]) -> tuple[dict[str, float], list[float]]:
    """p50/p90/p99/max in ms, and 101 quantiles for the plot."""
    ordered = sorted(samples)
    ms = {f"p{q}": round(percentile(ordered, q) * 1000, 2) for q in (50, 90, 99)}
    ms["max"] = round(ordered[-1] * 1000, 2) if ordered else 0.0
    quantiles = [round(percentile(ordered, q) * 1000, 3) for q in range(101)] if ordered else []
    return ms, quantiles


def merge_latencies(blobs: Iterable[bytes]) -> array:
    merged = array("d")
    for blob in blobs:
        merged.frombytes(blob)
    return merged


def ratio(ours: float | None, theirs: float | None) -> float | None:
    if ours is None or theirs is None or theirs == 0:
        return None
    return round(ours / theirs, 2)


def mb(value: float) -> float:
    return round(value / 1_048_576, 1)


def per(value: float, seconds: float) -> float | None:
    return round(value / seconds, 1) if seconds > 0 else None


def fmt(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if value >= 1000:
            return f"{value:,.0f}"
        if value >= 100:
            return f"{value:.0f}"
        return f"{value:.3g}" if value < 10 else f"{value:.1f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)
