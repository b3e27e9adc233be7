"""The deployment's tests: the image's Python packages, installed here as its `packages` stage installs
them; and the integration tests' whole node (two daphne processes, a Celery worker with beat, Postgres,
Redis, anvil) with the proxy in front of it."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from tests.deploy import images
from tests.integration.conftest import (  # noqa: F401 - fixtures shared with the integration tests
    _flush_survives_a_running_node,
    live_node,
    live_node_settings,
    live_node_socket_homes,
    node_database_url,
)
from tests.support import background


@background.recipe("image_venv")
def _image_venv_build(workdir: Path) -> tuple[str, dict[str, str]]:
    """The Dockerfile's own RUN line of the `packages` stage, on exactly the files that stage copies in
    (requirements.txt, ./connext, the script): what the image ships, minus Docker."""
    packages = images.stage("packages")
    (run,) = packages.arguments("RUN")
    images.copy_stage_context(packages, workdir)
    # The image's path (/app/.venv) becomes this directory's; everything else is the line as written.
    return run.replace("/app/.venv", str(workdir / ".venv")), {**os.environ, "PYTHON_BOOT": sys.executable}


@pytest.fixture(scope="session")
def image_venv() -> Path:
    """The image's virtualenv (built in the background from the start of the session)."""
    workdir, finished = background.wait("image_venv", timeout=900)
    assert finished.returncode == 0, f"the packages stage's RUN line failed:\n{finished.output}"
    return workdir / ".venv"
