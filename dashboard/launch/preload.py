"""What a launch's fork server loads before it forks any worker: besides the workers' modules,
the data sets its runs train on (named in PRELOAD_VAR by the launcher), so that every worker it
forks finds them in memory, shared with the server, instead of reading a copy of its own from
disk (Fashion-MNIST: 60 MB read and 55 MB held per worker; CIFAR-10: about 180 MB held).

The fork server imports its preload modules by name and nothing else, so this one does its work
when imported, in that process only: the launcher sets PRELOAD_VAR just while it starts the
server (`supervisor.worker_context`), and the import takes it out of the environment.

It is the server's first preload module, and first of all it makes the server ignore Ctrl-C
(the launcher decides what one means): before torch is imported, so that only a Ctrl-C in the
server's first milliseconds can end it (the launcher copes: `supervisor.Supervisor._start_next`)."""

from __future__ import annotations

import json
import os
import signal

PRELOAD_VAR = "LIVETRAIN_PRELOAD_DATA"
# taken from the environment, so that only the process that preloads acts on it (not a child
# of its that imports this module)
_value = os.environ.pop(PRELOAD_VAR, None)
if _value is not None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)

import torch  # noqa: E402 - once the fork server ignores Ctrl-C

from trainers import data  # noqa: E402


def data_sets(pairs: list[tuple[str, str | None]]) -> str:
    """The value of PRELOAD_VAR for these (data set, data dir) pairs."""
    return json.dumps(sorted({(name, folder or "") for name, folder in pairs}))


def _preload(value: str) -> None:
    # one torch thread, as in the launcher (plan.prepare_to_fork): a child forked from a process
    # with an OpenMP pool cannot use it, and hangs at its first parallel op
    torch.set_num_threads(1)
    # what torch's optimizers import as the first one is made (`torch._disable_dynamo`): 1.3 s
    # of each worker's start on 2 cores, which the workers now share
    import torch._dynamo as _dynamo  # noqa: F401
    for name, folder in json.loads(value):
        try:
            data.load(name, folder or None)
        except data.DataError:
            pass  # checked by the launcher already; a worker that still cannot load it says why


if _value:
    _preload(_value)
