"""Micro-benchmark of the protocol core: the cryptographic floor the node's throughput is compared against.

    .venv/bin/python bench/protocol_bench.py [--runs N]     (or: make bench-protocol)

Prints the median time per operation (µs) over many timed batches, and operations per second on one core.
Not a test: numbers depend on the machine. "routed payment floor" is what docs call the floor: the node
signs four states and verifies four signatures per routed payment (plus the state hashes); "routed
payment, node's protocol work" adds everything else the core does for those four updates (applying the
rules, transfer ids and hashes, merkle roots, invariants).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from connext.protocol import definitions, encoding, signing
from connext.protocol.types import (
    ChannelState,
    CreateUpdate,
    DefinitionKind,
    DepositUpdate,
    ResolveUpdate,
    SetupUpdate,
    UpdateContext,
)
from connext.protocol.updates import apply_update
from connext.protocol.validation import countersign, initiate_update, validate_update

NODE = signing.Signer(encoding.keccak256(b"bench/node"))
ALICE = signing.Signer(encoding.keccak256(b"bench/alice"))
BOB = signing.Signer(encoding.keccak256(b"bench/bob"))
LINKED = encoding.checksum_address(encoding.keccak256(b"bench/Linked")[12:])
ETH = encoding.ZERO_ADDRESS
NOW = 1_767_225_600
ONE = 10**18


def channel(user: signing.Signer, *, active_transfers: int) -> tuple[ChannelState, UpdateContext]:
    address = encoding.checksum_address(encoding.keccak256(user.address.encode())[12:])
    context = UpdateContext(
        now=NOW, definitions={LINKED: DefinitionKind.LINKED}, chain_deposits={ETH: (ONE, ONE)}
    )
    state = apply_update(
        None,
        SetupUpdate(
            channel_address=address,
            nonce=1,
            initiator=NODE.address,
            chain_id=31337,
            node=NODE.address,
            user=user.address,
            timeout=86_400,
        ),
        context=context,
    )
    state = apply_update(
        state,
        DepositUpdate(
            channel_address=address,
            nonce=2,
            initiator=NODE.address,
            asset_id=ETH,
            total_deposits_node=ONE,
            total_deposits_user=ONE,
        ),
        context=context,
    )
    for i in range(active_transfers):
        state = apply_update(state, create(state, user, f"background/{i}"), context=context)
    return state, context


def create(
    state: ChannelState, payer: signing.Signer, label: str, preimage: bytes | None = None
) -> CreateUpdate:
    preimage = preimage or encoding.keccak256(label.encode())
    return CreateUpdate(
        channel_address=state.channel_address,
        nonce=state.nonce + 1,
        initiator=payer.address,
        asset_id=ETH,
        amount=1000,
        definition=LINKED,
        payment_id=encoding.keccak256(b"payment/" + label.encode()),
        encoded_state=definitions.LinkedState(encoding.keccak256(preimage)).encode(),
        transfer_timeout=3_600,
    )


def resolve(state: ChannelState, responder: signing.Signer, preimage: bytes) -> ResolveUpdate:
    return ResolveUpdate(
        channel_address=state.channel_address,
        nonce=state.nonce + 1,
        initiator=responder.address,
        transfer_id=state.transfers[-1].transfer_id,
        encoded_resolver=preimage,
    )


def measure(operation: Callable[[], object], *, runs: int, batch: int) -> float:
    """Median µs per call over `runs` timed batches of `batch` calls (after a warm-up batch)."""
    for _ in range(batch):
        operation()
    samples = []
    for _ in range(runs):
        start = time.perf_counter_ns()
        for _ in range(batch):
            operation()
        samples.append((time.perf_counter_ns() - start) / batch / 1000)
    return statistics.median(samples)


def cases(active: int) -> list[tuple[str, Callable[[], object], int]]:
    """(name, operation, calls per timed batch) for every measured operation."""
    alice_state, context = channel(ALICE, active_transfers=active)
    bob_state, _ = channel(BOB, active_transfers=active)
    digest = alice_state.state_hash
    signature = signing.sign_hash(digest, ALICE)
    preimage = encoding.keccak256(b"bench/secret")

    create_a = create(alice_state, ALICE, "a", preimage)
    created_a, create_a_signature = initiate_update(alice_state, create_a, ALICE, context=context)
    resolve_a = resolve(created_a, NODE, preimage)
    # For the resolve benchmark: the node (responder of Alice's transfer) resolves; Alice validates.
    _, resolve_a_signature = initiate_update(created_a, resolve_a, NODE, context=context)

    def state_hash() -> bytes:
        return encoding.channel_state_hash(alice_state)

    def sign() -> bytes:
        return signing.sign_hash(digest, NODE)

    def recover() -> str:
        return signing.recover_hash(digest, signature)

    def validate_create() -> ChannelState:
        return validate_update(alice_state, create_a, create_a_signature, context=context)

    def validate_resolve() -> ChannelState:
        return validate_update(created_a, resolve_a, resolve_a_signature, context=context)

    states = [alice_state, bob_state, created_a, alice_state]

    def routed_floor() -> None:
        for state in states:
            signing.recover_hash(signing.sign_hash(encoding.channel_state_hash(state), NODE), signature)

    def routed_node_work() -> None:
        # 1. Alice -> node create: validate Alice's signature, countersign.
        a1, _ = countersign(alice_state, create_a, create_a_signature, NODE, context=context)
        # 2. node -> Bob create: apply, sign; verify Bob's countersignature.
        create_b = create(bob_state, NODE, "b", preimage)
        b1, _ = initiate_update(bob_state, create_b, NODE, context=context)
        signing.recover_signer(b1, signature)
        # 3. Bob resolves: validate Bob's signature, countersign (Bob's signature: stand-in, recover cost).
        resolve_b = resolve(b1, BOB, preimage)
        b2 = apply_update(b1, resolve_b, context=context)
        signing.recover_signer(b2, signature)
        signing.sign_state(b2, NODE)
        # 4. node resolves Alice's side: apply, sign; verify Alice's countersignature.
        a2, _ = initiate_update(a1, resolve(a1, NODE, preimage), NODE, context=context)
        signing.recover_signer(a2, signature)

    return [
        ("state hash (encode + keccak)", state_hash, 200),
        ("sign (EIP-191 over a hash)", sign, 100),
        ("recover (EIP-191, low-s checks)", recover, 100),
        ("validate a create (Linked)", validate_create, 20),
        ("validate a resolve (Linked)", validate_resolve, 20),
        (FLOOR, routed_floor, 5),
        (NODE_WORK, routed_node_work, 5),
    ]


FLOOR = "routed payment floor (4 sign + 4 recover + 4 hashes)"
NODE_WORK = "routed payment, node's protocol work"


def measure_named(names: tuple[str, ...], *, runs: int = 100, active: int = 4) -> dict[str, float]:
    """Median µs of the named operations (the routing benchmark measures the floor in its own run)."""
    return {name: measure(op, runs=runs, batch=batch) for name, op, batch in cases(active) if name in names}


def main() -> None:
    parser = argparse.ArgumentParser(description="protocol core micro-benchmark")
    parser.add_argument("--runs", type=int, default=200, help="timed batches per operation (default 200)")
    parser.add_argument("--active", type=int, default=4, help="active transfers already in each channel")
    args = parser.parse_args()

    print(f"connext protocol core benchmark: Python {platform.python_version()} on {platform.machine()}")
    print(f"median of {args.runs} batches; channels hold {args.active} active transfers")
    print(f"{'operation':<56}{'µs':>10}{'ops/s':>12}")
    for name, operation, batch in cases(args.active):
        micros = measure(operation, runs=args.runs, batch=batch)
        print(f"{name:<56}{micros:>10.1f}{1e6 / micros:>12,.0f}")


if __name__ == "__main__":
    main()
