"""The image's packages with the deployment's settings: what `manage.py check --deploy` says of them,
and the commands compose.yaml runs. Each runs in the image's virtualenv (conftest.image_venv) with the
environment a node container gets: the image's ENV, compose's, deploy/node.env.example and the secrets
as files, the container's absolute paths laid under a temporary directory."""

from __future__ import annotations

import os
import secrets
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest

from tests.deploy import images
from tests.deploy.images import ROOT

pytestmark = pytest.mark.slow

SECRET_VALUES = {
    "django_secret_key": lambda: secrets.token_urlsafe(38)[:50],
    "node_private_key": lambda: "0x" + secrets.token_hex(32),
    "metrics_token": lambda: secrets.token_urlsafe(32),
    "postgres_password": lambda: secrets.token_urlsafe(24),
}


def container_environment(root: Path, venv: Path, service: str = "node1") -> dict[str, str]:
    """What a `service` container's processes see, with its absolute paths under `root`."""
    image_env = images.final_stage().env()
    image_env.pop("PATH")
    compose_env = images.compose()["services"][service]["environment"]
    # Compose's precedence: the image's ENV, then env_file, then environment.
    environment = {**image_env, **images.env_example(), **compose_env}
    for name, value in environment.items():
        if value.startswith("/"):
            environment[name] = str(root / value.lstrip("/"))
    for name, value in compose_env.items():
        if name.endswith("_FILE") and value.startswith("/run/secrets/"):
            secret = Path(environment[name])
            secret.parent.mkdir(parents=True, exist_ok=True)
            secret.write_text(SECRET_VALUES[secret.name]() + "\n")
    Path(environment["NODE_VAR_DIR"]).mkdir(parents=True, exist_ok=True)
    return {
        **environment,
        "PATH": f"{venv / 'bin'}:{os.environ['PATH']}",
        "HOME": str(root),
        "LANG": "C.UTF-8",
    }


def run_in_image(venv: Path, command: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=180, check=False
    )


def check_deploy(venv: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    python = str(venv / "bin" / "python")
    return run_in_image(venv, [python, "manage.py", "check", "--deploy", "--fail-level", "WARNING"], env)


def test_the_deployment_settings_pass_check_deploy(image_venv, tmp_path):
    env = container_environment(tmp_path, image_venv)

    result = check_deploy(image_venv, env)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues (2 silenced)." in result.stdout


def test_check_deploy_fails_without_hsts(image_venv, tmp_path):
    env = container_environment(tmp_path, image_venv)
    env["SECURE_HSTS_SECONDS"] = ""
    env["SECURE_HSTS_INCLUDE_SUBDOMAINS"] = ""

    result = check_deploy(image_venv, env)

    assert result.returncode != 0
    assert "security.W004" in result.stderr


def test_without_a_proxy_in_front_check_deploy_wants_the_redirect_to_https(image_venv, tmp_path):
    env = container_environment(tmp_path, image_venv)
    env["TRUSTED_PROXY_COUNT"] = "0"

    result = check_deploy(image_venv, env)

    assert result.returncode != 0
    assert "security.W008" in result.stderr


def test_the_images_collectstatic_gathers_the_bundles_and_the_admin(image_venv, tmp_path):
    (run,) = [run for run in images.final_stage().arguments("RUN") if "collectstatic" in run]
    env = container_environment(tmp_path, image_venv)
    static_root = Path(env["STATIC_ROOT"])

    result = run_in_image(image_venv, ["sh", "-c", run], env)

    assert result.returncode == 0, result.stdout + result.stderr
    for collected in ("card/build/card.js", "dashboard/build/charts.js", "admin/css/base.css"):
        assert (static_root / collected).is_file(), f"{collected} (is `make assets` built?)"


@pytest.mark.parametrize("service", ["worker", "beat"])
def test_the_celery_commands_compose_runs_load_the_node(image_venv, tmp_path, service):
    command = images.compose()["services"][service]["command"]
    env = container_environment(tmp_path, image_venv, service)
    # The command as compose runs it, asked for its help instead of started: it loads the app.
    celery, app_flag, app, subcommand = command[:4]

    result = run_in_image(image_venv, [celery, app_flag, app, subcommand, "--help"], env)

    assert result.returncode == 0, result.stdout + result.stderr
    assert f"celery {subcommand}" in result.stdout


def test_the_migrate_service_migrates_a_new_database_and_fills_the_static_volume(image_venv, tmp_path):
    command = images.compose()["services"]["migrate"]["command"]
    env = container_environment(tmp_path, image_venv, "migrate")
    server = urlsplit(os.environ["DATABASE_URL"])
    name = f"connext_deploy_{secrets.token_hex(4)}"
    # This machine's Postgres in place of the postgres service; the password file stays (trust auth).
    env["DATABASE_URL"] = server._replace(path=f"/{name}").geturl()
    maintenance = server._replace(path="/postgres").geturl()
    with psycopg.connect(maintenance, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    try:
        result = run_in_image(image_venv, command, env)

        assert result.returncode == 0, result.stdout + result.stderr
        with psycopg.connect(env["DATABASE_URL"]) as connection:
            applied = connection.execute("SELECT count(*) FROM django_migrations").fetchone()
        assert applied is not None
        assert applied[0] > 0
        assert (Path(env["STATIC_ROOT"]) / "card/build/card.js").is_file()
    finally:
        with psycopg.connect(maintenance, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
