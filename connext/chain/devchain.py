"""The local development chain: an anvil process on 127.0.0.1.

Used by `make up` and by the test suite. anvil comes from the npm package
`@foundry-rs/anvil-linux-amd64` (installed by `make`); `ANVIL_BIN` overrides where it is looked up.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

# anvil's default mnemonic ("test test ... junk"): well known, development only.
DEV_MNEMONIC = "test test test test test test test test test test test junk"
DEV_PRIVATE_KEYS = (
    "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80",
    "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d",
    "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a",
    "0x7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6",
    "0x47e179ec197488593b187f80a00eb0da91f1b9d0b13f8733639f19c30a34926a",
    "0x8b3a350cf5c34c9194ca85829a2df0ec3153be0318b5e2d3348e872092edffba",
    "0x92db14e403b83dfe3df233f83dfa3a0d7096f21ca9b0d6d6b8d88b2b4ec1564e",
    "0x4bbbf85ce3377467afe5d46f804f221813b2bb87f24d81f60f1fcdbf7cbf4356",
    "0xdbda1821b80551c9d65939329250298aa3472ba22feea921c0cf5d620ea67b97",
    "0x2a871d0798f97d79848a013d4936a73bf4cc922c825d33c1cf7073dff6d409c6",
)
DEV_CHAIN_ID = 31337
DEV_ACCOUNT_BALANCE_ETH = 10_000


class DevChainError(RuntimeError):
    """anvil could not be found, started or reached."""


def find_anvil() -> str:
    """The anvil executable: $ANVIL_BIN, the repository's node_modules, or PATH."""
    explicit = os.environ.get("ANVIL_BIN")
    if explicit:
        return explicit
    here = Path(__file__).resolve()
    for parent in here.parents:
        candidate = parent / "node_modules" / ".bin" / "anvil"
        if candidate.exists():
            return str(candidate)
    found = shutil.which("anvil")
    if found:
        return found
    raise DevChainError("anvil not found: run `make install` (npm ci) or set ANVIL_BIN")


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def rpc_call(url: str, method: str, params: list[Any] | None = None, *, timeout: float = 5.0) -> Any:
    """One JSON-RPC call with the standard library (no web3 needed to manage the chain)."""
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params or []}).encode()
    if not url.startswith(("http://", "https://")):
        raise DevChainError(f"not an http(s) RPC URL: {url}")
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})  # noqa: S310
    with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - scheme checked above
        reply = json.loads(response.read())
    if "error" in reply:
        raise DevChainError(f"{method} failed: {reply['error']}")
    return reply["result"]


class Anvil:
    """An anvil process: `start()` returns its RPC URL once it answers; `stop()` ends it."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        chain_id: int = DEV_CHAIN_ID,
        state_path: str | os.PathLike[str] | None = None,
        log_path: str | os.PathLike[str] | None = None,
        block_time: int | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.chain_id = chain_id
        self.state_path = state_path
        self.log_path = log_path
        self.block_time = block_time  # seconds between blocks; None mines one block per transaction
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, *, timeout: float = 20.0) -> str:
        if self._process is not None:
            return self.url
        if self.port is None:
            self.port = free_port(self.host)
        command = [
            find_anvil(),
            "--host", self.host,
            "--port", str(self.port),
            "--chain-id", str(self.chain_id),
            "--mnemonic", DEV_MNEMONIC,
            "--balance", str(DEV_ACCOUNT_BALANCE_ETH),
        ]  # fmt: skip
        if self.state_path is not None:
            command += ["--state", str(self.state_path)]
        if self.block_time is not None:
            command += ["--block-time", str(self.block_time)]
        log = open(self.log_path, "ab") if self.log_path else None  # noqa: SIM115 - closed below
        try:
            self._process = subprocess.Popen(  # noqa: S603 - our own fixed argument list
                command, stdout=log or subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True
            )
        finally:
            if log is not None:
                log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise DevChainError(f"anvil exited with code {self._process.returncode} on port {self.port}")
            try:
                chain_id = int(rpc_call(self.url, "eth_chainId", timeout=1.0), 16)
            except (OSError, urllib.error.URLError, DevChainError):
                time.sleep(0.05)
                continue
            if chain_id != self.chain_id:
                self.stop()
                raise DevChainError(f"port {self.port} answers with chain id {chain_id}, not anvil's")
            return self.url
        self.stop()
        raise DevChainError(f"anvil did not answer on {self.url} within {timeout:.0f}s")

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()  # anvil writes --state on SIGTERM
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def __enter__(self) -> Anvil:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def snapshot(url: str) -> str:
    result: str = rpc_call(url, "evm_snapshot")
    return result


def revert(url: str, snapshot_id: str) -> None:
    if not rpc_call(url, "evm_revert", [snapshot_id]):
        raise DevChainError(f"evm_revert to {snapshot_id} refused")


def increase_time(url: str, seconds: int) -> None:
    """Move the chain's clock forward and mine a block, so the new time is on chain."""
    rpc_call(url, "evm_increaseTime", [seconds])
    rpc_call(url, "evm_mine")
