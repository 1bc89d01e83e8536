"""A process's view of what it holds, for tests that start it from a launch's fork server: this
module imports nothing of the launcher's, so what it reports came from the server."""

from __future__ import annotations

from typing import Any

from trainers import data


def cached_data_sets(answers: Any) -> None:
    """The data sets already in this process's memory (data.load's cache)."""
    answers.put(sorted(data._cache))
