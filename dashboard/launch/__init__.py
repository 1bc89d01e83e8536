"""The launch side: runs planned from a command line, started as worker processes, supervised
until each has ended, and reported.

- `grid`, `experiment`: the runs from the command line's words, or from an experiment file.
- `plan`: every check that can refuse a command before anything starts or is written
  (`PlanError`, `LaunchError`; every error a user meets is a `trainers.errors.LivetrainError`,
  carrying its exit code).
- `resume`: an earlier launch's runs to resume, its folder's lock, logs cut back to checkpoints.
- `servers`: the Visdom server a launch draws into, found or started.
- `supervisor`: one worker process per run; stop requests passed on; dead workers' logs sealed.
- `run`: one launch, start to end (`run` is what `launch.py run` and `demo` call).
- `history`: the table of past runs.
- `worker`: a worker process's entry, which joins one run (`trainers.loop.fit`) to its
  `Dashboard`.

`launch.py` only parses options, calls `grid.plan_runs` (or reads an experiment file), then
`run.run`. While runs train, the launcher draws the terminal view and (live) the env-wide panes
from the run logs (`Board`); workers draw their own traces. Ctrl-C asks every worker to stop
(each logs "interrupted" and closes within a few seconds); a second Ctrl-C kills them at once. A
worker that dies without a final status (kill -9, a crash) gets one appended to its log by the
launcher."""
