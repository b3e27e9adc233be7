"""`pip install ./connext` alone, in a fresh venv with nothing of the repository importable, gives a
package whose every module imports (no Django, no node app) and whose CLI and `Client` pay through a
live node (daphne and a Celery worker on Postgres, Redis and the session's anvil)."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from web3 import HTTPProvider, Web3

from connext.chain import devchain
from tests.integration.conftest import node_database_url  # noqa: F401 - the test database, shared
from tests.support import background
from tests.support.client_wallets import Funder
from tests.support.processes import ROOT, NodeProcess, module_live_node

pytestmark = [pytest.mark.chain, pytest.mark.slow, pytest.mark.django_db]

NODE_KEY = devchain.DEV_PRIVATE_KEYS[2]
FUNDER_KEY = devchain.DEV_PRIVATE_KEYS[8]
MILLI = 10**15
INSTALL_TIMEOUT = 600  # a cold install downloads web3 and its dependencies
COMMAND_TIMEOUT = 180

# Run by the venv's interpreter: imports every module of the installed package and reports where
# they came from and whether anything of the node (or Django) was loaded on the way.
IMPORT_EVERY_MODULE = """
import importlib, importlib.util, json, pkgutil, sys
import connext
from connext.chain.artifacts import load_artifact
names = ["connext"] + [m.name for m in pkgutil.walk_packages(connext.__path__, "connext.")]
for name in names:
    importlib.import_module(name)
print(json.dumps({
    "modules": names,
    "files": sorted({sys.modules[n].__file__ for n in names if getattr(sys.modules[n], "__file__", None)}),
    "node_modules_loaded": sorted(
        n for n in sys.modules if n.split(".")[0] in ("django", "channels", "channels_app", "connext_site")
    ),
    "django_installed": importlib.util.find_spec("django") is not None,
    "channel_abi_entries": len(load_artifact("Channel").abi),
}))
"""

# Run by the venv's interpreter: the SDK itself, both users online. Alice's payment to Bob completes on
# her side; Bob pays 1 milli back; both sides of that one complete.
PAY_BACK_WITH_THE_CLIENT = """
import json, sys
from connext import ETH, Client
node_url, alice_key, alice_store, bob_key, bob_store, first_payment = sys.argv[1:7]
with Client.connect(node_url, alice_key, store_path=alice_store) as alice, \\
        Client.connect(node_url, bob_key, store_path=bob_store) as bob:
    first = alice.wait_for_transfer(first_payment, timeout=120)["status"]
    back = bob.transfer(alice.address, 10**15)
    statuses = [client.wait_for_transfer(back, timeout=120)["status"] for client in (bob, alice)]
    print(json.dumps({"first": first, "back": back, "back_statuses": statuses,
                      "alice": alice.get_free_balance(ETH)["user"], "bob": bob.get_free_balance(ETH)["user"]}))
"""


@pytest.fixture(scope="module")
def node(
    node_database_url: str,  # noqa: F811
    anvil_url: str,
    deployments: dict[str, str],
    tmp_path_factory: pytest.TempPathFactory,
    django_db_blocker: Any,
) -> Iterator[NodeProcess]:
    with module_live_node(
        "standalone-install",
        node_key=NODE_KEY,
        database_url=node_database_url,
        chain_url=anvil_url,
        deployments_book=deployments["book"],
        tmp_path_factory=tmp_path_factory,
        django_db_blocker=django_db_blocker,
    ) as daphne:
        yield daphne


def outside_env() -> dict[str, str]:
    """This environment less whatever could make the repository or its venv importable (pip's own
    settings and cache stay: they make the install quick)."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("PYTHON", "VIRTUAL_ENV", "DJANGO", "CONNEXT_"))
    }
    env["PATH"] = os.defpath  # every program is named by its path in the new venv
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


def copy_package_source(destination: Path) -> Path:
    """./connext as it is in the checkout, less build leftovers (the build writes into its source)."""
    target = destination / "connext"
    shutil.copytree(
        ROOT / "connext",
        target,
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "build", "*.egg-info"),
    )
    return target


def run(command: list[str], *, env: dict[str, str], cwd: Path, timeout: float = COMMAND_TIMEOUT) -> str:
    finished = subprocess.run(
        command, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert finished.returncode == 0, (
        f"{command} exited {finished.returncode}\nstdout:\n{finished.stdout}\nstderr:\n{finished.stderr}"
    )
    return finished.stdout


@background.recipe("standalone_venv")
def _standalone_venv_build(workdir: Path) -> tuple[str, dict[str, str]]:
    """A new venv and `pip install ./connext` into it (then `pip check`), run from a directory where
    nothing of the repository is."""
    (workdir / "outside").mkdir()
    source = copy_package_source(workdir / "src")
    python = workdir / "venv" / "bin" / "python"
    command = (
        f"cd outside && {shlex.quote(sys.executable)} -m venv ../venv"
        f" && {python} -m pip install --quiet {shlex.quote(str(source))} && {python} -m pip check"
    )
    return command, outside_env()


@pytest.fixture(scope="module")
def standalone_venv() -> Path:
    """The venv with the package alone in it (built in the background from the start of the session)."""
    workdir, finished = background.wait("standalone_venv", timeout=INSTALL_TIMEOUT)
    assert finished.returncode == 0, f"the install failed:\n{finished.output}"
    return workdir


def test_the_package_installed_alone_imports_without_the_node_and_its_cli_and_client_pay(
    node, anvil_url, standalone_venv, tmp_path
):
    outside = standalone_venv / "outside"  # the working directory of everything run from the venv
    env = outside_env()
    venv = standalone_venv / "venv"
    python, connext_cli = venv / "bin" / "python", venv / "bin" / "connext"

    imported = json.loads(run([str(python), "-I", "-c", IMPORT_EVERY_MODULE], env=env, cwd=outside))
    site_packages = str(venv / "lib")
    assert {"connext.protocol.encoding", "connext.client.cli", "connext.chain.deploy"} <= set(
        imported["modules"]
    )
    assert imported["files"], "no module file reported"
    assert all(path.startswith(site_packages) for path in imported["files"]), imported["files"]
    assert imported["node_modules_loaded"] == []
    assert imported["django_installed"] is False
    assert imported["channel_abi_entries"] > 0  # the contract artifacts ship as package data

    funder = Funder(Web3(HTTPProvider(anvil_url)), FUNDER_KEY)
    wallets: dict[str, dict[str, str]] = {}
    for name in ("alice", "bob"):
        key = funder.new_key()
        (outside / f"{name}.key").write_text(key + "\n")
        wallets[name] = {
            "key": key,
            "key_file": str(outside / f"{name}.key"),
            "store": str(outside / f"{name}.db"),
        }

    def cli(name: str, *command: str) -> str:
        wallet = wallets[name]
        argv = [
            str(connext_cli),
            "--node",
            node.url,
            "--key-file",
            wallet["key_file"],
            "--store",
            wallet["store"],
        ]
        return run([*argv, *command], env=env, cwd=outside)

    alice_info = cli("alice", "info")
    bob_info = cli("bob", "info")
    bob_address = re.search(r"^address: (0x[0-9a-fA-F]{40})$", bob_info, re.MULTILINE)
    alice_address = re.search(r"^address: (0x[0-9a-fA-F]{40})$", alice_info, re.MULTILINE)
    assert alice_address, alice_info
    assert bob_address, bob_info
    assert re.search(r"^channel: 0x[0-9a-fA-F]{40} \(chain 31337, nonce \d+\)$", alice_info, re.MULTILINE)

    deposited = cli("alice", "deposit", "20000000000000000")
    assert f"ETH: you 0.02 eth ({20 * MILLI} wei)" in deposited, deposited

    sent = cli("alice", "send", bob_address[1], "3000000000000000")
    payment = re.search(r"payment (0x[0-9a-f]{64})$", sent.strip())
    assert payment, sent
    bob_balance = cli("bob", "balance", "--wait", "60")
    assert f"ETH: you 0.003 eth ({3 * MILLI} wei)" in bob_balance, bob_balance
    alice_history = cli("alice", "history")
    assert re.search(
        rf"^{payment[1]} linked to {bob_address[1]}: {3 * MILLI} wei, completed$", alice_history, re.MULTILINE
    ), alice_history

    script = outside / "pay_back.py"
    script.write_text(PAY_BACK_WITH_THE_CLIENT)
    alice, bob = wallets["alice"], wallets["bob"]
    arguments = [node.url, alice["key"], alice["store"], bob["key"], bob["store"], payment[1]]
    paid = json.loads(run([str(python), "-I", str(script), *arguments], env=env, cwd=outside))
    assert paid["first"] == "completed"
    assert paid["back_statuses"] == ["completed", "completed"]
    assert (paid["alice"], paid["bob"]) == (18 * MILLI, 2 * MILLI)

    alice_history = cli("alice", "history")
    for payment_id, line in (
        (payment[1], f"to {bob_address[1]}: {3 * MILLI}"),
        (paid["back"], f"from {bob_address[1]}: {MILLI}"),
    ):
        assert re.search(rf"^{payment_id} linked {line} wei, completed$", alice_history, re.MULTILINE), (
            alice_history
        )
    assert f"ETH: you 0.018 eth ({18 * MILLI} wei)" in cli("alice", "balance")


def test_the_package_declares_every_third_party_package_it_imports():
    """Each top-level import under connext/ is the standard library, connext itself, or a declared
    dependency (distribution names mapped to the modules they provide, from this venv's metadata)."""
    import ast
    import tomllib
    from importlib.metadata import packages_distributions

    from packaging.requirements import Requirement

    declared = {
        Requirement(line).name.lower().replace("_", "-")
        for line in tomllib.loads((ROOT / "connext" / "pyproject.toml").read_text())["project"][
            "dependencies"
        ]
    }
    providers = packages_distributions()
    undeclared: dict[str, str] = {}
    for path in (ROOT / "connext").rglob("*.py"):
        if "build" in path.relative_to(ROOT / "connext").parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top in sys.stdlib_module_names or top == "connext":
                    continue
                distributions = {d.lower().replace("_", "-") for d in providers.get(top, [])}
                if not distributions & declared:
                    undeclared[top] = str(path.relative_to(ROOT))
    assert undeclared == {}
