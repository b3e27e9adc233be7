"""Compiled contract artifacts (ABI and bytecode), written by `contracts/compile.js` and shipped as
package data so nothing here needs Node or solc."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

ARTIFACTS_PACKAGE = "connext.chain"
ARTIFACTS_DIR = "artifacts"


class ArtifactError(LookupError):
    """No artifact with that name ships with this package."""


@dataclass(frozen=True)
class Artifact:
    name: str
    abi: list[dict[str, Any]]
    bytecode: bytes
    deployed_bytecode: bytes
    # (start, length) byte ranges of the runtime code that the constructor fills with immutables
    immutable_ranges: tuple[tuple[int, int], ...]

    def runtime_code_matches(self, code: bytes) -> bool:
        """True when `code` (read from chain) is this contract's runtime code, immutables aside."""
        if len(code) != len(self.deployed_bytecode):
            return False
        return _mask(code, self.immutable_ranges) == _mask(self.deployed_bytecode, self.immutable_ranges)


def _mask(code: bytes, ranges: tuple[tuple[int, int], ...]) -> bytes:
    masked = bytearray(code)
    for start, length in ranges:
        masked[start : start + length] = bytes(length)
    return bytes(masked)


@cache
def load_artifact(name: str) -> Artifact:
    path = resources.files(ARTIFACTS_PACKAGE).joinpath(ARTIFACTS_DIR, f"{name}.json")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ArtifactError(f"no artifact {name!r}: run `make compile`") from None
    ranges = tuple(
        sorted(
            (int(ref["start"]), int(ref["length"]))
            for refs in raw["immutableReferences"].values()
            for ref in refs
        )
    )
    return Artifact(
        name=raw["contractName"],
        abi=raw["abi"],
        bytecode=bytes.fromhex(raw["bytecode"].removeprefix("0x")),
        deployed_bytecode=bytes.fromhex(raw["deployedBytecode"].removeprefix("0x")),
        immutable_ranges=ranges,
    )
