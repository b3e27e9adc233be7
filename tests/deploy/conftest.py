"""The deployment's tests: the image's Python packages, installed here as its `packages` stage installs
them; and the integration tests' whole node (two daphne processes, a Celery worker with beat, Postgres,
Redis, anvil) with the proxy in front of it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.deploy import images
from tests.integration.conftest import (  # noqa: F401 - fixtures shared with the integration tests
    _flush_survives_a_running_node,
    live_node,
    live_node_settings,
    node_database_url,
)


@pytest.fixture(scope="session")
def image_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A virtualenv made by the Dockerfile's own RUN line of the `packages` stage, on exactly the files
    that stage copies in (requirements.txt, ./connext, the script): what the image ships, minus Docker."""
    packages = images.stage("packages")
    (run,) = packages.arguments("RUN")
    workdir = tmp_path_factory.mktemp("packages")
    images.copy_stage_context(packages, workdir)
    venv = workdir / ".venv"
    # The image's path (/app/.venv) becomes this directory's; everything else is the line as written.
    command = run.replace("/app/.venv", str(venv))
    env = {**os.environ, "PYTHON_BOOT": sys.executable}
    result = subprocess.run(
        ["sh", "-c", command], cwd=workdir, env=env, capture_output=True, text=True, timeout=900, check=False
    )
    assert result.returncode == 0, f"{command} failed:\n{result.stdout}\n{result.stderr}"
    return venv
