"""git and DVC, as their command lines (stable across versions), with errors users can read."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from ..plumbing.errors import GanaugError


class VersioningError(GanaugError):
    """git or DVC refused, or the repository is not in a state to version into."""


class CommandFailed(VersioningError):
    """A git or DVC command exited non-zero (its own words in the message). May be a remote
    or network hiccup, so it is worth another try."""

    transient = True


def git(repo: Path, *args: str, check: bool = True) -> str:
    return _run(["git", *args], repo, check)


def dvc(repo: Path, *args: str, check: bool = True) -> str:
    return _run([sys.executable, "-m", "dvc", *args], repo, check)


def _run(cmd: list[str], cwd: Path, check: bool = True) -> str:
    try:
        done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    except OSError as e:  # git missing, or cwd gone: no second try will help
        raise VersioningError(f"cannot run {cmd[0] if cmd[0] != sys.executable else 'dvc'} in {cwd}: "
                              f"{e.strerror or e}") from None
    if check and done.returncode:
        shown = "dvc" if cmd[0] == sys.executable else cmd[0]
        raise CommandFailed(f"`{shown} {' '.join(cmd[3 if shown == 'dvc' else 1:])}` failed in {cwd}: "
                              f"{(done.stderr or done.stdout).strip()[-800:]}")
    return done.stdout

