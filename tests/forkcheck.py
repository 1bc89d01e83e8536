"""A process's view of what it holds, for tests that start it from a launch's fork server: this
module imports nothing of the launcher's, so what it reports came from the server."""

from __future__ import annotations

import signal
from typing import Any

from trainers import data


def cached_data_sets(answers: Any) -> None:
    """The data sets already in this process's memory (data.load's cache)."""
    answers.put(sorted(data._cache))


def signals(answers: Any) -> None:
    """How a worker takes SIGINT once it has set up its signals: "ignored" (and not blocked)."""
    from dashboard.launch.worker import take_signals

    take_signals()
    ignored = signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    blocked = signal.SIGINT in signal.pthread_sigmask(signal.SIG_BLOCK, set())
    answers.put("ignored" if ignored and not blocked else f"ignored={ignored} blocked={blocked}")
