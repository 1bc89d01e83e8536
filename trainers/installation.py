"""How this livetrain was installed, and so what sets it up: `make setup` in a clone (the
Makefile beside the packages), `livetrain setup` where pip installed it (a wheel, a git URL).
Every message that tells a person to set something up names the one that fits."""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent  # a clone's root, or site-packages


def from_clone() -> bool:
    """Whether this livetrain runs from a clone of its repository (make is how it is set up)."""
    return (ROOT / "Makefile").is_file() and (ROOT / "launch.py").is_file() and (ROOT / "dashboard").is_dir()


def setup_command() -> str:
    return "make setup" if from_clone() else "livetrain setup"


def cache_dir() -> Path:
    """Where setup keeps what it fetched (npm tarballs): the clone's .cache, else the user's cache."""
    if from_clone():
        return ROOT / ".cache"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "livetrain"
