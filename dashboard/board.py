"""The env-wide views of a set of runs, drawn from their run logs as the logs grow.

The runs pane (every run's configuration, status and latest metrics), the training samples, the
disagreement window (sample test images on which the runs' latest predictions differ) and a
sweep's plots (its runs' settings against their final test accuracy) need all runs at once, which
no single worker has. The `Board` follows the run logs on disk, the source of truth, so the same
code serves a live launch (the launcher polls it) and a replay (the logs are already complete).
It also creates the shared compare windows first, so that the page keeps one order."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dashboard import legend, panels, panes, sweep, windows, yrange
from dashboard.connection import VisdomConnection
from dashboard.downsample import Aligned, BandSeries, Ema
from dashboard.launch.cluster import node_shown
from dashboard.protocol import MISSING_WINDOW
from dashboard.runlog import LogFollower, RunRecord
from dashboard.sender import Sender
from trainers.reporting import PREDICTIONS, TEST_ACC, RunState

RUNS_PANE_WIDTH = windows.FULL_WIDTH  # a row of its own
DISAGREE_SIZE = (windows.UNIT, windows.PANE_HEIGHT)
DISAGREE_SHOWN = 12  # three rows of four images at that size, with three runs' answers each


def run_label(record: RunRecord, fallback: str) -> str:
    return str(record.meta.get("label") or record.config.get("label") or fallback)


def run_colour(record: RunRecord, label: str) -> int:
    """The colour index the run was drawn with live (or the default for its label)."""
    return int(record.meta.get("colour", windows.default_colour_index(label)))


def summary(record: RunRecord, label: str, node: str = "") -> panes.RunSummary:
    last = record.states[-1] if record.states else {}
    return panes.RunSummary(
        label=label, colour_index=run_colour(record, label),
        config=record.in_force(),  # an lr changed from the page shows as the lr
        status=last.get("state", RunState.STARTING), reason=last.get("reason", ""),
        x=record.x, latest=dict(record.latest), started=record.started, updated=record.updated,
        parent=panes.forked_from(record.meta), node=node)


class SeedGroup:
    """Runs that differ only by seed, drawn as one mean line with a min-max band per compare
    window, in the group's colour (its first run's). Per-batch bands are of the runs' smoothed
    values when smoothing is on (a band of raw per-batch noise is a smear), per-epoch ones of
    the logged values themselves."""

    def __init__(self, label: str, colour_index: int, smoothing: float | None, max_points: int) -> None:
        self.label, self.colour_index = label, colour_index
        self.smoothing = smoothing
        self.max_points = max_points
        self.members: list[Path] = []
        self.aligned: dict[str, Aligned] = {}
        self.emas: dict[tuple[int, str], Ema] = {}
        self.bands = {w.metric: BandSeries(max_points // 2) for w in windows.COMPARE_WINDOWS}
        self.versions = {w.metric: 0 for w in windows.COMPARE_WINDOWS}

    def take(self, member: int, row: dict[str, Any]) -> None:
        """One logged scalars row of member `member`."""
        for metric, y in row.items():
            window = windows.COMPARE_BY_METRIC.get(metric)
            if window is None or y is None:
                continue
            if metric not in self.aligned:
                self.aligned[metric] = Aligned(len(self.members))
            y = float(y)
            if window.per_batch and self.smoothing:
                y = self.emas.setdefault((member, metric), Ema(self.smoothing)).add(y)
            self.aligned[metric].add(member, float(row["x"]), y)

    def end(self, member: int) -> None:
        for aligned in self.aligned.values():
            aligned.end(member)

    def fold(self) -> bool:
        """Move the points every run has into the bands; True when a band changed."""
        changed = False
        for metric, aligned in self.aligned.items():
            for x, values in aligned.ready():
                self.bands[metric].add(x, values)
                self.versions[metric] += 1
                changed = True
        return changed


class Board:
    """Follows run logs; draws the runs pane and the disagreement window through `sender` (if any)."""

    def __init__(self, sender: Sender | None, draw: windows.DrawOptions,
                 after_runs: Sequence[tuple[str, Any]] = ()) -> None:
        """`after_runs`: (sender key, send) of panes placed right after the runs table (a live
        launch's Control pane)."""
        self.sender = sender
        self.env = draw.env
        self.smoothing = draw.smoothing  # the runs' (for the style of the traces the board creates)
        self.run_windows = draw.run_windows  # whether to place each run's gallery and matrix
        self.followers: dict[Path, LogFollower] = {}
        self.labels: dict[Path, str | None] = {}  # None: the label in the run's log
        self._planned: dict[Path, dict[str, Any]] = {}  # the config each run will log, when known up front
        self._placed: list[tuple[str, int, bool]] = []  # (label, colour, in a seed group) of the runs added with a label
        self._uris: dict[str, list[str]] = {}  # per data set: the sample images as data URIs
        self._lock = threading.Lock()  # poll (the caller's thread) against drawing (the sender's)
        self._panes = windows.SentPanes(self.env)  # the runs pane and disagreement as last sent
        self._drawn: dict[str, Any] = {}  # per board window drawn only when it changes: what was drawn
        self.groups: dict[str, SeedGroup] = {}
        self._member_of: dict[Path, tuple[SeedGroup, int]] = {}
        self._bands_drawn: dict[tuple[str, str], tuple[int, int]] = {}  # (group, metric) -> (outages, version)
        self.max_points = draw.max_points
        self.scatter = draw.scatter
        self.ranges = {win: yrange.LossRange(metrics) for win, metrics in yrange.LOSS_WINDOWS.items()}
        self._views = {win: yrange.View(None, {}) for win in self.ranges}  # as last computed
        self._markers: dict[str, set[str]] = {win: set() for win in self.ranges}  # marker traces drawn
        if sender is not None:
            # the runs pane is written whole, so it also creates the env; then the compare windows
            sender.register(windows.RUNS_WIN, self._send_runs)
            for key, send in after_runs:
                sender.register(key, send)
            for pane in windows.COMPARE_PANES:
                sender.register("frame:" + pane.win, self._frame_sender(pane.win))
            sender.register("loss-ranges", self._send_ranges, changed=False)  # after the frames it fixes
            sender.register(windows.SAMPLES_WIN, self._send_samples)
            sender.register(windows.DISAGREE_WIN, self._send_disagreement)
            sender.register(windows.PARCOORDS_WIN, self._send_sweep)
            sender.register("groups", self._send_groups, changed=False)
            sender.add_check(self._check)  # their sender keys are their window ids

    def add(self, run_dir: Path, label: str | None = None, colour_index: int | None = None,
            group: str | None = None, config: dict[str, Any] | None = None,
            follower: LogFollower | None = None) -> None:
        """Follow one more run (its log may not exist yet; `follower`: one already made for it).
        With its label known, its own windows are placed now, in the order runs are added (see
        `windows.run_placeholders`), and so are its (empty) traces in the compare windows, so that
        every legend lists the runs in that order. A run may join while the board draws (a fork)."""
        with self._lock:
            self._add(run_dir, label, colour_index, group, config, follower)

    def _add(self, run_dir: Path, label: str | None, colour_index: int | None, group: str | None,
             config: dict[str, Any] | None, follower: LogFollower | None) -> None:
        if run_dir not in self.followers:
            self.followers[run_dir] = follower or LogFollower(run_dir, keep_scalars=False)
            self.labels[run_dir] = label
            self._planned[run_dir] = dict(config or {})
            colour = windows.default_colour_index(label or "") if colour_index is None else colour_index
            if group is not None:
                seeds = self.groups.get(group)
                if seeds is None:
                    seeds = self.groups[group] = SeedGroup(group, colour, self.smoothing, self.max_points)
                member = len(seeds.members)
                seeds.members.append(run_dir)
                self._member_of[run_dir] = (seeds, member)
            self.followers[run_dir].record.on_scalars = self._taker(run_dir)
            if label is not None:
                self._placed.append((label, colour, group is not None))
            if label is not None and self.sender is not None and self.run_windows:
                self.sender.register(f"placeholders:{run_dir}", self._placeholder_sender(label))

    def _taker(self, run_dir: Path) -> Any:
        """What takes each scalars row the run's log gains: the loss windows' ranges, its seed group."""
        ranges = list(self.ranges.values())
        member = self._member_of.get(run_dir)

        def take(row: dict[str, Any]) -> None:
            for loss_range in ranges:
                loss_range.take(run_dir, row)
            if member is not None:
                member[0].take(member[1], row)
        return take

    def _placeholder_sender(self, label: str) -> Any:
        placed = False

        def send(connection: VisdomConnection) -> None:
            nonlocal placed
            if placed:  # once: sent again after an outage, it would wipe what the worker drew
                return
            for message in panels.run_placeholders(self.env, label):
                # only where the run's own window is not there yet (the board may reach a server
                # that was down at the start only after the worker drew it)
                if connection.post("win_exists", {"eid": self.env, "win": message["win"]}) != "true":
                    connection.post("events", message)
            placed = True
        return send

    def poll(self) -> bool:
        """Read what the logs gained; redraw what changed. True when anything did."""
        changed = predictions = bands = False
        with self._lock:
            for run_dir, follower in self.followers.items():
                before = follower.record.counts[PREDICTIONS]
                if follower.poll():
                    changed = True
                    predictions |= follower.record.counts[PREDICTIONS] != before
                    if run_dir in self._member_of and RunState(follower.record.status).final:
                        group, member = self._member_of[run_dir]
                        group.end(member)
            for group in self.groups.values():
                bands |= group.fold()
            views = {win: loss_range.view() for win, loss_range in self.ranges.items()} if changed else self._views
            ranged, self._views = views != self._views, views
        if ranged and self.sender is not None:
            self.sender.mark("loss-ranges")
        if bands and self.sender is not None:
            self.sender.mark("groups")
        if changed and self.sender is not None:
            self.sender.mark(windows.RUNS_WIN)
            self.sender.mark(windows.SAMPLES_WIN)  # these two draw only what changed
            self.sender.mark(windows.PARCOORDS_WIN)
            if predictions:
                self.sender.mark(windows.DISAGREE_WIN)
        return changed

    def label(self, run_dir: Path) -> str:
        return self.labels[run_dir] or run_label(self.followers[run_dir].record, run_dir.name)

    def group_summaries(self) -> list[panes.GroupSummary]:
        """Each seed group with the final test accuracies of its finished runs."""
        out = []
        for group in self.groups.values():
            records = [self.followers[d].record for d in group.members]
            accuracies = [r.latest[TEST_ACC] for r in records if r.status == RunState.FINISHED and TEST_ACC in r.latest]
            out.append(panes.GroupSummary(group.label, group.colour_index, len(records), accuracies))
        return out

    def summaries(self) -> list[panes.RunSummary]:
        return [summary(f.record, self.label(d), node_shown(d)) for d, f in self.followers.items()]

    def disagreement(self) -> tuple[list[str], list[int], list[str], list[panes.RunPredictions]]:
        """(image URIs, true classes, class names, each run's latest predictions) for the runs on the
        data set most runs use."""
        ready = [(d, f.record) for d, f in self.followers.items()
                 if f.record.predictions and f.record.gallery is not None]
        if not ready:
            return [], [], [], []
        dataset = Counter(r.config.get("dataset") for _, r in ready).most_common(1)[0][0]
        ready = [(d, r) for d, r in ready if r.config.get("dataset") == dataset]
        first = ready[0][1]
        if dataset not in self._uris:
            self._uris[dataset] = panes.data_uris(first.gallery)
        groups = {d: (seeds.label, seeds.colour_index) for d, (seeds, _) in self._member_of.items()}
        runs = [panes.RunPredictions(self.label(d), run_colour(r, self.label(d)), r.predictions[-1]["x"],
                                     r.predictions[-1]["predicted"], groups.get(d)) for d, r in ready]
        return self._uris[dataset], first.predictions[-1]["true"], first.classes, runs

    # ---- drawing (sender thread) ----
    def _send_runs(self, connection: VisdomConnection) -> None:
        with self._lock:
            summaries = self.summaries()
            content = panes.runs_html(summaries) + panes.groups_html(self.group_summaries())
            height = panes.runs_height(len(self.followers), summaries) + 18 * len(self.groups)
        self._panes.post(connection, windows.text_message(self.env, windows.RUNS_WIN, "Runs", content,
                                                         RUNS_PANE_WIDTH, height))

    def _frame_sender(self, win: str) -> Any:
        parts = windows.COMPARE_PARTS[win]

        def send(connection: VisdomConnection) -> None:
            connection.post("update", windows.placeholder_message(self.env, parts[0]))
            entries = [label for label, _, member in self._placed if not member] + list(self.groups)
            connection.post("update", legend.message(self.env, win, entries))
            for label, colour, member in list(self._placed):
                # empty traces in the run's style (the worker's: see `windows.run_traces`), which
                # its worker fills; numbered 0, so they never replace what it drew
                for window in parts:
                    smoothed = bool(self.smoothing) and window.per_batch
                    for trace in windows.run_traces(window, label, colour, ([], []), ([], []) if smoothed else None,
                                                    member):
                        connection.post("update", windows.trace_message(self.env, window, trace, create=True, seq=0))
            for group in list(self.groups.values()):  # then each seed group's band and mean, empty
                for window in parts:
                    for trace in windows.group_traces(window, group.label, group.colour_index, []):
                        connection.post("update", windows.trace_message(self.env, window, trace, create=True, seq=0))
        return send

    def _send_ranges(self, connection: VisdomConnection) -> None:
        """Each loss window's y range (see `dashboard.yrange`), and a marker per diverged run."""
        for win in self.ranges:
            with self._lock:
                view = self._views[win]
                shown = {d: (self.label(d), run_colour(self.followers[d].record, self.label(d)),
                             d not in self._member_of) for d in view.off_scale}  # a group's runs: no entry
            connection.post("update", yrange.layout_message(self.env, win, view))
            names = set()
            for run_dir, (x, top, high) in view.off_scale.items():
                label, colour, entry = shown[run_dir]
                trace = yrange.marker_trace(label, colour, x, top, high, entry)
                names.add(trace["name"])
                connection.post("update", windows.trace_message(self.env, windows.COMPARE_BY_METRIC[
                    self.ranges[win].metrics[0]], trace, create=False, seq=windows.new_seq()))
            for name in self._markers[win] - names:
                connection.post("update", {"eid": self.env, "win": win, "name": name, "delete": True, "data": [{}]})
            self._markers[win] = names

    def _send_groups(self, connection: VisdomConnection) -> None:
        """Each seed group's band and mean in every compare window where they changed (all of
        them after an outage)."""
        for group in list(self.groups.values()):
            for window in windows.COMPARE_WINDOWS:
                with self._lock:
                    version, points = group.versions[window.metric], list(group.bands[window.metric].points)
                key = (group.label, window.metric)
                if not points or self._bands_drawn.get(key) == (connection.outages, version):
                    continue
                seq = windows.new_seq()
                for trace in windows.group_traces(window, group.label, group.colour_index, points):
                    message = windows.trace_message(self.env, window, trace, create=False, seq=seq)
                    if connection.post("update", message) == MISSING_WINDOW:
                        connection.post("update", windows.trace_message(self.env, window, trace, create=True, seq=seq))
                self._bands_drawn[key] = (connection.outages, version)

    def _post_changed(self, connection: VisdomConnection, message: dict[str, Any], what: Any) -> None:
        """Post a whole-pane message unless `what` it shows was last drawn, since the last outage."""
        key = (connection.outages, what)
        if self._drawn.get(message["win"]) != key:
            self._panes.post(connection, message)
            self._drawn[message["win"]] = key

    def _check(self, connection: VisdomConnection) -> list[str]:
        """The board's panes whose content on the server differs from what was sent, as sender
        keys (the scatter is drawn by the parallel coordinates' item)."""
        differing = self._panes.differing(connection)
        for win in differing:
            self._drawn.pop(win, None)  # drawn again, whatever it shows
        return list(dict.fromkeys(windows.PARCOORDS_WIN if win == windows.SCATTER_WIN else win for win in differing))

    def samples(self) -> tuple[str, Any] | None:
        """(data set, samples) of the first run on the data set most runs use that logged its
        training samples."""
        with self._lock:
            logged = [f.record for f in self.followers.values() if f.record.samples is not None]
            if not logged:
                return None
            dataset = Counter(r.config.get("dataset") for r in logged).most_common(1)[0][0]
            return str(dataset), next(r.samples for r in logged if r.config.get("dataset") == dataset)

    def _send_samples(self, connection: VisdomConnection) -> None:
        found = self.samples()
        if found is None:
            self._post_changed(connection, windows.samples_message(self.env, "", windows.SAMPLES_WAITING), None)
            return
        dataset, samples = found
        if self._drawn.get(windows.SAMPLES_WIN) == (connection.outages, dataset):
            return
        content = panes.samples_html(panes.data_uris(samples.images), samples.labels, samples.classes, dataset)
        self._post_changed(connection, windows.samples_message(self.env, dataset, content), dataset)

    def sweep_runs(self) -> list[sweep.SweepRun]:
        """Every run with a config, and its final test accuracy once it finished."""
        with self._lock:
            return [sweep.SweepRun(self.label(d), run_colour(f.record, self.label(d)),
                                   f.record.config or self._planned[d],
                                   f.record.latest.get(TEST_ACC) if f.record.status == RunState.FINISHED else None)
                    for d, f in self.followers.items() if f.record.config or self._planned[d]]

    def _send_sweep(self, connection: VisdomConnection) -> None:
        """The sweep's parallel coordinates and its setting-against-accuracy scatter, for runs
        that make a sweep (`sweep.Plan.is_sweep`; placeholders until one finishes); each redrawn
        when a run finishes."""
        if len(self.followers) < 2:
            return
        runs = self.sweep_runs()
        plan = sweep.Plan.of(runs, self.scatter)
        if len(runs) < len(self.followers) or not sweep.Plan.is_sweep(runs):
            # not yet known (runs added without their configs), or no sweep: different models
            # alone, or seeds alone (their groups' bands show those)
            return
        done = [r for r in runs if r.accuracy is not None]
        if not done or not plan.settings:
            for win, title in ((windows.PARCOORDS_WIN, windows.PARCOORDS_TITLE),
                               (windows.SCATTER_WIN, windows.scatter_title(plan.scatter or "a setting"))):
                message = windows.text_message(self.env, win, title, windows.SWEEP_WAITING, windows.UNIT,
                                               windows.PANE_HEIGHT, seq=0)  # older than any figure
                self._post_changed(connection, message, None)
            return
        self._post_changed(connection, windows.parcoords_message(self.env, plan.dimensions(done),
                                                                 [r.accuracy for r in done]), plan.key(done))
        if plan.scatter is not None:
            points = [(sweep.axis_value(r.config.get(plan.scatter)), r.accuracy, r.label, r.colour_index)
                      for r in done]
            self._post_changed(connection, windows.scatter_message(self.env, plan.scatter, points, plan.log_x),
                               plan.key(done))

    def _send_disagreement(self, connection: VisdomConnection) -> None:
        with self._lock:
            content = panes.disagreement_html(*self.disagreement(), limit=DISAGREE_SHOWN)
        self._panes.post(connection, windows.text_message(self.env, windows.DISAGREE_WIN,
                                                         "Where the runs disagree (sample test images)",
                                                         content, *DISAGREE_SIZE))
