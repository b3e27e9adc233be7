"""Builds the suite starts as soon as it knows a selected test needs them (a fresh virtualenv's pip
install takes about a minute), so that they run on the machine's other core while the tests before
their first user run. A fixture then waits for its build's result; a build nobody waits for is
stopped at the end of the session.

Only the wait moves: the build runs the same command, in the same place, as if the fixture ran it."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Finished:
    returncode: int
    output: str  # stdout and stderr, interleaved


class Build:
    def __init__(self, command: str, *, cwd: Path, env: Mapping[str, str]) -> None:
        self.command = command
        self._log = cwd / ".background-build.log"
        with self._log.open("wb") as log:
            # Niced: the tests running meanwhile come first.
            self._process = subprocess.Popen(
                ["nice", "-n", "10", "sh", "-c", command],
                cwd=cwd,
                env=dict(env),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def result(self, timeout: float) -> Finished:
        try:
            returncode = self._process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            raise AssertionError(f"{self.command!r} did not finish within {timeout}s") from None
        return Finished(returncode, self._log.read_text(errors="replace"))

    def stop(self) -> None:
        if self._process.poll() is None:
            os.killpg(self._process.pid, signal.SIGKILL)
            self._process.wait()


# Lays out a build's directory and returns its command and environment.
Recipe = Callable[[Path], tuple[str, Mapping[str, str]]]

_root: Path | None = None
_builds: dict[str, Build] = {}
_recipes: dict[str, Recipe] = {}


def recipe(name: str) -> Callable[[Recipe], Recipe]:
    """Register how to prepare build `name` (its fixture's module does, when it is collected)."""

    def register(prepare: Recipe) -> Recipe:
        _recipes[name] = prepare
        return prepare

    return register


def wanted_by(fixture_names: list[str]) -> list[str]:
    """The registered builds whose fixture (named like the build) a test requests."""
    return [name for name in _recipes if name in fixture_names]


def directory(name: str) -> Path:
    global _root
    if _root is None:
        _root = Path(tempfile.mkdtemp(prefix="connext-builds-"))
    return _root / name


def start(name: str) -> None:
    """Start build `name` now, unless it is already started."""
    if name in _builds:
        return
    workdir = directory(name)
    workdir.mkdir(parents=True)
    command, env = _recipes[name](workdir)
    _builds[name] = Build(command, cwd=workdir, env=env)


def wait(name: str, timeout: float) -> tuple[Path, Finished]:
    """Build `name`'s directory and result (started now when nothing started it earlier)."""
    start(name)
    return directory(name), _builds[name].result(timeout)


def stop_all() -> None:
    for build in _builds.values():
        build.stop()
    _builds.clear()
    if _root is not None:
        shutil.rmtree(_root, ignore_errors=True)
