"""The outage benchmark's measure of time per batch while the server was away (pure arithmetic
on made-up stamps: it sees a slowdown and nothing else)."""

from __future__ import annotations

import pytest

from benchmarks.outage_bench import time_per_batch_while_away


def _batches(start: float, end: float, every: float, x0: float = 0.0, per: int = 100) -> list[tuple[float, float]]:
    """Batches every `every` s from `start` to `end`, `per` to an epoch, x counting on from `x0`."""
    n = int(round((end - start) / every))
    return [(start + i * every, x0 + (i + 1) / per) for i in range(n)]


def test_the_measure_of_time_per_batch_while_away_sees_a_slowdown_and_nothing_else() -> None:
    # one run alone, 10 ms a batch; the server away from 2 s to 4 s
    steady = _batches(0, 6, 0.01)
    away = [("frozen", 2.0, 4.0, 4.0)]
    ratio, seconds = time_per_batch_while_away({"a": steady}, away)
    assert ratio == pytest.approx(1.0) and seconds == pytest.approx(2.0, abs=0.02)
    # 20 ms a batch while away: seen
    slowed = _batches(0, 2, 0.01) + _batches(2.01, 4, 0.02, x0=2.0) + _batches(4.01, 6, 0.01, x0=3.0)
    assert time_per_batch_while_away({"a": slowed}, away)[0] == pytest.approx(2.0, rel=0.02)
    # a second run that starts as the server goes takes half the core: no slowdown of the dashboard's
    shared = _batches(0, 2, 0.01) + _batches(2.01, 6, 0.02, x0=2.0)
    beside = _batches(2.01, 6, 0.02)
    assert time_per_batch_while_away({"a": shared, "b": beside}, away)[0] == pytest.approx(1.0, rel=0.02)
    # a test pass between epochs (0.5 s with no batch) while away is no batch
    paused = _batches(0, 3, 0.01) + _batches(3.5, 6, 0.01, x0=3.0)
    assert time_per_batch_while_away({"a": paused}, away)[0] == pytest.approx(1.0, rel=0.02)
    # nor is a killed server's restart (the new process starting up)
    restart = [("killed", 2.0, 3.0, 4.0)]
    slow_start = _batches(0, 3, 0.01) + _batches(3.01, 4, 0.03, x0=3.0) + _batches(4.01, 6, 0.01, x0=4.0)
    assert time_per_batch_while_away({"a": slow_start}, restart)[0] == pytest.approx(1.0, rel=0.02)


