"""The Dockerfile and compose.yaml: linted, valid, and built with the same steps as the host."""

from __future__ import annotations

import importlib.resources
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

from connext_site import config
from tests.deploy import images
from tests.deploy.images import ROOT

NODE_SERVICES = ("node1", "node2", "worker", "beat", "migrate")
DAPHNE_SERVICES = ("node1", "node2")


def hadolint(dockerfile: Path) -> subprocess.CompletedProcess[str]:
    executable = Path(sys.executable).parent / "hadolint"
    return subprocess.run(
        [str(executable), "--config", str(ROOT / ".hadolint.yaml"), "--no-color", str(dockerfile)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def compose_schema() -> dict:
    vendored = importlib.resources.files("check_jsonschema.builtin_schemas.vendor")
    return json.loads((vendored / "compose-spec.json").read_text())


def compose_errors(document: dict) -> list[str]:
    schema = compose_schema()
    validator_class = jsonschema.validators.validator_for(schema)
    validator_class.check_schema(schema)
    validator = validator_class(schema)
    return [
        f"{'/'.join(map(str, error.absolute_path))}: {error.message}"
        for error in validator.iter_errors(document)
    ]


# --- Lint --------------------------------------------------------------------------------------------


def test_the_dockerfile_passes_hadolint():
    result = hadolint(ROOT / "Dockerfile")

    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == ""


def test_hadolint_fails_on_a_warning(tmp_path):
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text("FROM python:3.11-slim-bookworm\nRUN pip install requests\n")

    result = hadolint(dockerfile)

    assert result.returncode != 0
    assert "DL3013" in result.stdout  # pin versions in pip install: a warning


def test_compose_yaml_follows_the_compose_specification():
    assert compose_errors(images.compose()) == []


def test_the_compose_specification_refuses_what_compose_would():
    document = images.compose()
    document["services"]["node1"]["depends_on"]["migrate"]["condition"] = "service_finished"
    document["services"]["redis"]["healthcheck"]["tests"] = ["CMD", "true"]

    errors = compose_errors(document)

    assert any("services/node1" in error for error in errors)
    assert any("services/redis" in error for error in errors)


# --- One set of steps: the host's and the image's ------------------------------------------------


def test_the_image_installs_with_the_scripts_the_makefile_runs():
    recipes = images.makefile_recipes()
    assert "VENV=$(VENV) PYTHON_BOOT=$(PYTHON_BOOT) scripts/install.sh dev" in recipes["$(STAMP)"]
    assert "scripts/install.sh js" in recipes["node_modules/.installed"]
    assert recipes["$(DASHBOARD_BUILD)/charts.js"] == ["scripts/assets.sh dashboard"]
    assert recipes["$(CARD_BUILD)/card.js"] == ["scripts/assets.sh card"]
    assert recipes["$(CARD_BUILD)/dapp.js"] == ["scripts/assets.sh dapp"]

    assert images.stage("assets").arguments("RUN") == ["scripts/install.sh js", "scripts/assets.sh"]
    assert images.stage("packages").arguments("RUN") == ["VENV=/app/.venv scripts/install.sh runtime"]


def test_no_install_or_bundle_step_is_written_out_beside_the_scripts():
    direct = re.compile(r"pip install|npm (ci|install)|esbuild|-m venv")
    makefile_lines = [line for recipe in images.makefile_recipes().values() for line in recipe]
    dockerfile_runs = [run for each in images.stages() for run in each.arguments("RUN")]

    assert [line for line in makefile_lines + dockerfile_runs if direct.search(line)] == []


def test_the_assets_stage_builds_the_bundles_from_the_files_it_copies(tmp_path):
    assets = images.stage("assets")
    images.copy_stage_context(assets, tmp_path)
    # What `scripts/install.sh js` makes from the same package-lock.json (make install ran it here).
    (tmp_path / "node_modules").symlink_to(ROOT / "node_modules")
    (run_install, run_bundles) = assets.arguments("RUN")
    assert run_install == "scripts/install.sh js"

    result = subprocess.run(
        ["sh", "-c", run_bundles], cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False
    )

    assert result.returncode == 0, result.stdout + result.stderr
    for bundle in (
        "dashboard/static/dashboard/build/charts.js",
        "card/static/card/build/card.js",
        "card/static/card/build/card.css",
        "card/static/card/build/dapp.js",
    ):
        assert (tmp_path / bundle).stat().st_size > 0, bundle
    assert list((tmp_path / "card/static/card/build/chunks").glob("scan-*.js"))
    # The final stage copies exactly these directories out of this stage.
    copied = [
        arguments.split()[1]
        for arguments in images.final_stage().arguments("COPY")
        if "--from=assets" in arguments
    ]
    assert copied == ["/src/dashboard/static/dashboard/build", "/src/card/static/card/build"]


@pytest.mark.slow
def test_the_image_venv_has_the_pinned_runtime_packages_and_nothing_else(image_venv):
    listed = subprocess.run(
        [str(image_venv / "bin/python"), "-m", "pip", "list", "--format=json", "--exclude", "pip"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    pinned = [
        line
        for line in (ROOT / "requirements.txt").read_text().splitlines()
        if line and not line.startswith("#")
    ]

    def normalized(name: str, version: str) -> str:
        return f"{re.sub(r'[-_.]+', '-', name).lower()}=={version}"

    installed = [normalized(package["name"], package["version"]) for package in json.loads(listed)]
    expected = [normalized(*line.split("==")) for line in pinned] + ["connext==0.1.0"]
    assert sorted(installed) == sorted(expected)


# --- The image ---------------------------------------------------------------------------------------


def test_the_image_runs_as_an_unprivileged_user_on_pinned_bases():
    final = images.final_stage()

    assert final.arguments("USER") == ["10001:10001"]
    assert [each.base for each in images.stages()] == [
        "node:20-slim",
        "python:3.11-slim-bookworm",
        "python:3.11-slim-bookworm",
    ]
    assert final.env()["DJANGO_DEBUG"] == "false"


def test_the_health_check_asks_daphne_for_the_health_endpoint_on_its_port():
    final = images.final_stage()
    (healthcheck,) = final.arguments("HEALTHCHECK")
    (command,) = final.arguments("CMD")
    daphne = json.loads(command)

    port = daphne[daphne.index("-p") + 1]
    assert f"http://127.0.0.1:{port}/api/health" in healthcheck
    assert final.arguments("EXPOSE") == [port]
    # The health check's Host is 127.0.0.1: the example's hosts must let it in.
    assert "127.0.0.1" in images.env_example()["DJANGO_ALLOWED_HOSTS"].split(",")


def test_the_build_context_leaves_out_local_state_and_secrets():
    ignored = set((ROOT / ".dockerignore").read_text().split())

    assert {".git", ".env", ".venv", "node_modules", "var", "deploy", "tests"} <= ignored


# --- compose.yaml ------------------------------------------------------------------------------------


def test_every_node_process_runs_the_one_image_with_its_own_command():
    services = images.compose()["services"]
    final = images.final_stage()

    assert {services[name]["image"] for name in NODE_SERVICES} == {"connext-node:latest"}
    assert {services[name]["build"] for name in NODE_SERVICES} == {"."}
    for name in DAPHNE_SERVICES:
        assert services[name]["command"] == json.loads(final.arguments("CMD")[0])
    assert services["worker"]["command"][:4] == ["celery", "-A", "connext_site", "worker"]
    assert services["beat"]["command"][:4] == ["celery", "-A", "connext_site", "beat"]
    # Beat writes its schedule where the node's user may write, not into the code's directory.
    schedule = services["beat"]["command"][services["beat"]["command"].index("-s") + 1]
    assert schedule.startswith(final.env()["NODE_VAR_DIR"] + "/")


def test_backups_run_manage_py_with_a_pg_dump_of_the_servers_major_version():
    """`manage.py backup` in the node's image: its pg_dump must be of the stack's Postgres major."""
    services = images.compose()["services"]
    server_major = services["postgres"]["image"].split(":")[1]
    client = re.search(r"postgresql-client-(\d+)='(\d+)\.\*'", (ROOT / "Dockerfile").read_text())

    assert client is not None
    assert client.group(1) == client.group(2) == server_major
    assert services["backup"]["command"][:3] == ["python", "manage.py", "backup"]
    assert "backups:/backups" in services["backup"]["volumes"]


def test_services_start_once_what_they_need_is_healthy():
    services = images.compose()["services"]

    assert services["postgres"]["image"] == "postgres:15"
    assert "pg_isready" in services["postgres"]["healthcheck"]["test"]
    assert services["redis"]["image"] == "redis:7"
    assert "ping" in services["redis"]["healthcheck"]["test"]
    assert services["migrate"]["depends_on"]["postgres"] == {"condition": "service_healthy"}
    for name in ("node1", "node2", "worker", "beat"):
        assert services[name]["depends_on"] == {
            "migrate": {"condition": "service_completed_successfully"},
            "postgres": {"condition": "service_healthy"},
            "redis": {"condition": "service_healthy"},
        }
    assert services["proxy"]["depends_on"] == {
        name: {"condition": "service_healthy"} for name in DAPHNE_SERVICES
    }
    # The worker and beat serve no HTTP: the image's check on port 8000 is replaced or off.
    assert "inspect ping" in " ".join(services["worker"]["healthcheck"]["test"])
    assert services["beat"]["healthcheck"] == {"disable": True}
    assert services["migrate"]["healthcheck"] == {"disable": True}


def test_the_proxy_balances_every_daphne_and_serves_the_collected_static_files():
    services = images.compose()["services"]
    proxy = services["proxy"]

    assert proxy["image"] == "nginx:1.27"
    upstreams = re.findall(r"server (\S+) ", proxy["environment"]["CONNEXT_UPSTREAMS"])
    assert upstreams == [f"{name}:8000" for name in DAPHNE_SERVICES]
    # Each daphne's own socket route (NODE_SOCKET_URL) reaches that daphne through the proxy.
    routes = dict(
        re.findall(
            r"upstream connext_process_(\w+) \{ server (\S+); \}",
            proxy["environment"]["CONNEXT_PROCESS_UPSTREAMS"],
        )
    )
    assert routes == {
        services[name]["environment"]["NODE_SOCKET_URL"].removeprefix("/ws/v1/"): f"{name}:8000"
        for name in DAPHNE_SERVICES
    }
    assert "./proxy/nginx.conf.template:/etc/nginx/templates/default.conf.template:ro" in proxy["volumes"]
    # Every variable the template names is given (envsubst would leave the others as they are).
    named = set(re.findall(r"\$\{(CONNEXT_[A-Z_]+)\}", (ROOT / "proxy/nginx.conf.template").read_text()))
    assert named
    assert named <= set(proxy["environment"])
    pages = proxy["environment"]["CONNEXT_PAGES_ROOT"]
    assert f"./proxy:{pages}:ro" in proxy["volumes"]
    assert proxy["environment"]["CONNEXT_STATIC_ROOT"] + ":ro" in [
        v.split(":", 1)[1] for v in proxy["volumes"]
    ]
    assert "static:/srv/static:ro" in proxy["volumes"]
    # migrate collects into the volume, at the image's STATIC_ROOT.
    static_root = images.final_stage().env()["STATIC_ROOT"]
    assert services["migrate"]["volumes"] == [f"static:{static_root}"]
    assert "collectstatic" in " ".join(services["migrate"]["command"])
    assert set(images.compose()["volumes"]) == {"pgdata", "static", "backups"}


def test_each_node_process_has_its_own_empty_metrics_directory_and_trusts_one_proxy():
    services = images.compose()["services"]
    for name in NODE_SERVICES:
        environment = services[name]["environment"]
        metrics_dir = environment["PROMETHEUS_MULTIPROC_DIR"]
        assert any(mount.split(":")[0] == metrics_dir for mount in services[name]["tmpfs"]), name
        assert environment["TRUSTED_PROXY_COUNT"] == "1"
        assert environment["REDIS_URL"].startswith("redis://redis:")
        assert "@postgres:" in environment["DATABASE_URL"]


def test_secrets_reach_the_node_as_files_kept_out_of_git():
    document = images.compose()
    environment = document["services"]["node1"]["environment"]
    granted = set(document["services"]["node1"]["secrets"])

    for variable in ("DJANGO_SECRET_KEY", "NODE_PRIVATE_KEY", "METRICS_TOKEN", "DATABASE_PASSWORD"):
        path = environment[f"{variable}_FILE"]
        assert path.startswith("/run/secrets/")
        assert path.removeprefix("/run/secrets/") in granted
        assert variable not in environment
    files = [secret["file"] for secret in document["secrets"].values()]
    assert all(file.startswith("deploy/secrets/") for file in files)
    ignored = subprocess.run(
        ["git", "check-ignore", *files, "deploy/node.env", "deploy/deployments.json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert ignored.stdout.split() == [*files, "deploy/node.env", "deploy/deployments.json"]
    assert (
        document["services"]["postgres"]["environment"]["POSTGRES_PASSWORD_FILE"]
        == (environment["DATABASE_PASSWORD_FILE"])
    )


# --- deploy/node.env.example -------------------------------------------------------------------------


class RecordingEnvironment(dict[str, str]):
    """An empty environment that remembers every variable asked for."""

    def __init__(self) -> None:
        super().__init__()
        self.asked: set[str] = set()

    def get(self, name, default=None):  # type: ignore[override]
        self.asked.add(name)
        return super().get(name, default)


def variables_the_node_reads() -> set[str]:
    environment = RecordingEnvironment()
    config.load(environment)
    config.load_edge_limits(environment)
    settings_source = (ROOT / "connext_site" / "settings.py").read_text()
    names = set(re.findall(r'os\.environ(?:\.get\(|\[)"([A-Z0-9_]+)"', settings_source))
    for helper, name in re.findall(r'config\.(_\w+)\(\s*os\.environ,\s*"([A-Z0-9_]+)"', settings_source):
        names |= {f"{name}_ETH", f"{name}_TOKEN"} if helper == "_per_asset" else {name}
        if helper == "_secret":
            names.add(f"{name}_FILE")
    return environment.asked | names


def test_the_example_environment_documents_every_variable_the_node_reads():
    read = variables_the_node_reads()
    assert {
        "DJANGO_SECRET_KEY_FILE",
        "SECURE_HSTS_SECONDS",
        "METRICS_TOKEN_FILE",
        "CARD_LINK_MAX_WEI",
    } <= read

    # A secret is given as its _FILE form only; the example says to leave the plain form unset.
    plain_secrets = {name for name in read if f"{name}_FILE" in read}
    mentioned = images.env_example_mentions()

    assert sorted(read - plain_secrets - mentioned) == []
    assert sorted(mentioned - read) == []
    assert not plain_secrets & mentioned


def test_the_example_environment_is_for_production_and_holds_no_secret():
    example = images.env_example()
    compose_environment = images.compose()["services"]["node1"]["environment"]

    assert example["DJANGO_DEBUG"] == "false"
    assert not {"DJANGO_SECRET_KEY", "NODE_PRIVATE_KEY", "METRICS_TOKEN", "DATABASE_PASSWORD"} & set(example)
    # What compose.yaml sets wins over the file: the example must not pretend to set it.
    assert not set(compose_environment) & set(example)
    assert images.compose()["x-node"]["env_file"] == "deploy/node.env"


def test_the_scripts_are_executable():
    for script in ("scripts/install.sh", "scripts/assets.sh"):
        assert os.access(ROOT / script, os.X_OK), script
    assert shutil.which("sh")
