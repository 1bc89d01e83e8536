"""`LivetrainError`: the base of every error a user meets, a one-line reason with its exit code.

Each module raises its own kind (`ConfigError`, `DataError`, `ServerError`, ...), and the command
line turns any of them into one line, `Error: <reason>`, and the kind's exit code: 2 for a
usage error (the command line asks for something impossible), 1 for what the machine, the files
or the server refuse. So an error travels up unchanged, never re-wrapped to change its code."""

from __future__ import annotations

from typing import Iterable, TypeVar

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


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """" (did you mean 'hidden'?)" when `word` is a near miss of one of `choices`, else "": the one
    choice it begins (opt: optimizer), or one a typo away (a letter dropped, added, changed or two
    swapped; two such in a word of 8 letters or more), ignoring case, hyphens and underscores."""

    def plain(text: str) -> str:
        return text.lower().replace("-", "_")

    by_plain: dict[str, str] = {}
    for choice in choices:
        by_plain.setdefault(plain(choice), choice)  # the first of two that differ in case only
    typed = plain(word)
    begun = [choice for choice in by_plain if len(typed) >= 2 and choice.startswith(typed)]
    if len(begun) == 1:
        return f" (did you mean {by_plain[begun[0]]!r}?)"
    allowed = 2 if len(typed) >= 8 else 1
    near = sorted((_typos(typed, choice), choice) for choice in by_plain if choice != typed)
    return f" (did you mean {by_plain[near[0][1]]!r}?)" if near and near[0][0] <= allowed else ""


def _typos(a: str, b: str) -> int:
    """The fewest letters dropped, added, changed or swapped with the next that make `a` into `b`."""
    rows = [list(range(len(b) + 1))]
    for i in range(1, len(a) + 1):
        row = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            row[j] = min(rows[-1][j] + 1, row[j - 1] + 1, rows[-1][j - 1] + (a[i - 1] != b[j - 1]))
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                row[j] = min(row[j], rows[-2][j - 2] + 1)
        rows.append(row)
    return rows[-1][-1]
