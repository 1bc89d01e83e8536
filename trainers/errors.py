"""`LivetrainError`: the base of every error a user meets, a one-line reason with its exit code.

Each module raises its own kind (`ConfigError`, `DataError`, `ServerError`, ...), and the command
line turns any of them into one line, `Error: <reason>`, and the kind's exit code: 2 for a
usage error (the command line asks for something impossible), 1 for what the machine, the files
or the server refuse. So an error travels up unchanged, never re-wrapped to change its code."""

from __future__ import annotations

from typing import TypeVar

Self = TypeVar("Self", bound="LivetrainError")
# a worker's (and the launcher's) exit code when a run failed, its disk filled, or it was interrupted
EXIT_FAILED, EXIT_DISK_FULL, EXIT_INTERRUPTED = 1, 3, 130


class LivetrainError(Exception):
    """A one-line reason a command cannot go on, saying what to do (exit code 1)."""

    exit_code = 1

    def about(self: Self, subject: str) -> Self:
        """The same error, of the same kind, said about `subject` (e.g. "run 'mlp'")."""
        return type(self)(f"{subject}: {self}")


class UsageError(LivetrainError):
    """The command line asks for something impossible (exit code 2, as click's own)."""

    exit_code = 2
