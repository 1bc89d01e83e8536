"""Bounded pictures of long series: what a window on the server holds for one trace.

The server's cost per update grows with the points in a window, and a browser slows past a few
thousand points per line, so a trace never holds more than `max_points`. Consecutive points are
grouped in buckets of `size` points (1, 2, 4, ...: the size doubles whenever the buckets would
not fit) and each bucket is drawn as its lowest and its highest point, so a spike stays visible
however long the run. The picture depends only on the sequence of points, never on when they
arrived: a live run and a replay of its log draw the same trace. Every point stays in the run log.
"""

from __future__ import annotations

import math

Point = tuple[float, float]  # (x, y)


class MinMaxSeries:
    """A series kept as at most `max_points` points: each bucket's min and max, in x order."""

    def __init__(self, max_points: int = 1000) -> None:
        if max_points < 4:
            raise ValueError("max_points must be at least 4")
        self.max_buckets = max_points // 2
        self.size = 1  # raw points per bucket
        self.buckets: list[tuple[Point, Point]] = []  # complete buckets: (lowest, highest) point
        self.partial: tuple[Point, Point] | None = None  # the bucket being filled
        self.partial_count = 0
        self.count = 0  # raw points seen
        # the points of the complete buckets, as `points` gives them: kept as buckets complete (a
        # flush then copies lists instead of walking every bucket), redone when buckets merge
        self._xs: list[float] = []
        self._ys: list[float] = []

    def add(self, x: float, y: float) -> None:
        """Add one point; non-finite values (a diverged loss) are not drawn."""
        if not math.isfinite(y):
            return
        self.count += 1
        point = (x, y)
        if self.partial is None:
            self.partial = (point, point)
        else:
            self.partial = _merge(self.partial, (point, point))
        self.partial_count += 1
        if self.partial_count == self.size:
            self.buckets.append(self.partial)
            _extend(self._xs, self._ys, self.partial)
            self.partial, self.partial_count = None, 0
            if len(self.buckets) == self.max_buckets:
                # halve the resolution: adjacent pairs become one bucket of twice the size
                self.buckets = [_merge(self.buckets[i], self.buckets[i + 1]) for i in range(0, len(self.buckets), 2)]
                self.size *= 2
                self._xs, self._ys = [], []
                for bucket in self.buckets:
                    _extend(self._xs, self._ys, bucket)

    def points(self) -> tuple[list[float], list[float]]:
        """(xs, ys) of the trace as the server should hold it (new lists)."""
        xs, ys = self._xs[:], self._ys[:]
        if self.partial is not None:
            _extend(xs, ys, self.partial)
        return xs, ys


def _extend(xs: list[float], ys: list[float], bucket: tuple[Point, Point]) -> None:
    """Append a bucket's points, in x order (one point when its lowest is its highest)."""
    low, high = bucket
    first, second = (low, high) if low[0] <= high[0] else (high, low)
    xs.append(first[0])
    ys.append(first[1])
    if second != first:
        xs.append(second[0])
        ys.append(second[1])


def _merge(a: tuple[Point, Point], b: tuple[Point, Point]) -> tuple[Point, Point]:
    """The (lowest, highest) of two buckets, `a` first in time; ties keep the earlier point."""
    low = a[0] if a[0][1] <= b[0][1] else b[0]
    high = a[1] if a[1][1] >= b[1][1] else b[1]
    return low, high


class Ema:
    """Exponential moving average with TensorBoard's bias correction (no pull towards 0 at the start)."""

    def __init__(self, weight: float) -> None:
        if not 0.0 <= weight < 1.0:
            raise ValueError("the smoothing weight must be in [0, 1)")
        self.weight = weight
        self.value = 0.0
        self.steps = 0

    def add(self, y: float) -> float:
        if math.isfinite(y):
            self.steps += 1
            self.value = self.weight * self.value + (1 - self.weight) * y
        return self.value / (1 - self.weight**self.steps) if self.steps else math.nan


class BandSeries:
    """A seed group's band, bounded: at the x positions all its runs logged, the lowest, mean and
    highest of their values. At most `max_points` positions are kept, every `stride`-th one (the
    stride doubles whenever they would not fit), so, like `MinMaxSeries`, the picture depends
    only on the sequence of points."""

    def __init__(self, max_points: int = 500) -> None:
        if max_points < 2:
            raise ValueError("max_points must be at least 2")
        self.max_points = max_points
        self.stride = 1
        self.count = 0
        self.points: list[tuple[float, float, float, float]] = []  # (x, low, mean, high)

    def add(self, x: float, values: list[float]) -> None:
        values = [v for v in values if math.isfinite(v)]
        if not values:
            return
        if self.count % self.stride == 0:
            self.points.append((x, min(values), math.fsum(values) / len(values), max(values)))
            if len(self.points) > self.max_points:
                self.points = self.points[::2]
                self.stride *= 2
        self.count += 1


class Aligned:
    """Points of several runs matched by x: `ready` gives each x that every run still going has
    logged, with their values. A run that ended takes no further part once its points are used."""

    def __init__(self, members: int) -> None:
        self.queues: list[list[Point]] = [[] for _ in range(members)]
        self.heads = [0] * members
        self.ended = [False] * members

    def add(self, member: int, x: float, y: float) -> None:
        self.queues[member].append((x, y))

    def end(self, member: int) -> None:
        self.ended[member] = True

    def ready(self) -> list[tuple[float, list[float]]]:
        out = []
        while True:
            active = [i for i in range(len(self.queues)) if self.heads[i] < len(self.queues[i]) or not self.ended[i]]
            if not active or any(self.heads[i] >= len(self.queues[i]) for i in active):
                break
            heads = {i: self.queues[i][self.heads[i]] for i in active}
            x = min(p[0] for p in heads.values())
            if all(p[0] == x for p in heads.values()):
                out.append((x, [p[1] for p in heads.values()]))
                for i in active:
                    self.heads[i] += 1
            else:  # an x only some runs logged: skipped
                for i, p in heads.items():
                    if p[0] == x:
                        self.heads[i] += 1
        for i, queue in enumerate(self.queues):  # drop what was used
            if self.heads[i] > 256:
                del queue[:self.heads[i]]
                self.heads[i] = 0
        return out
