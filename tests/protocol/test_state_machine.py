"""Random sequences of valid and invalid updates, checked against an independent model of the channel.

Each step goes through both sides: the initiator applies and signs (`initiate_update`), the responder
re-derives and checks (`validate_update`). A valid update must be accepted with exactly the model's
result; an invalid one must raise the expected code and leave the state untouched. After every step the
state must equal the model and satisfy every invariant.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from connext.protocol import definitions, invariants, merkle, signing
from connext.protocol.encoding import ZERO_BYTES32, keccak256
from connext.protocol.errors import ProtocolError
from connext.protocol.serialization import channel_state_to_json
from connext.protocol.types import ChannelState, DefinitionKind, Update, UpdateContext
from connext.protocol.validation import initiate_update, validate_update
from tests.protocol import protocol_helpers as h
from tests.protocol.strategies import PROTOCOL_SETTINGS

ASSETS = (h.ETH, h.TOKEN)
PARTIES = (h.NODE, h.USER)
# About one amount in ten is zero (always invalid for a transfer); the rest are small or huge.
amounts = st.tuples(st.integers(0, 9), st.one_of(st.integers(1, 10**6), st.integers(0, 10**20))).map(
    lambda pair: pair[1] if pair[0] else 0
)
KIND_ADDRESS = {kind: address for address, kind in h.DEFINITIONS.items()}


class ChannelMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.state: ChannelState
        self.now = h.NOW
        self.chain = {asset: [0, 0] for asset in ASSETS}
        self.balances: dict[str, list[int]] = {}
        self.processed: dict[str, list[int]] = {}
        self.withdrawn: dict[str, int] = {}
        # transfer id -> (kind, secret: the preimage or the payment id, asset, amount, initiator index)
        self.transfers: dict[bytes, tuple[DefinitionKind, bytes, str, int, int]] = {}
        self.counter = 0

    # -- plumbing ----------------------------------------------------------------------------------

    def context(self) -> UpdateContext:
        return h.context(now=self.now, deposits={asset: (n, u) for asset, (n, u) in self.chain.items()})

    def accept(self, update: Update) -> ChannelState:
        signer = h.SIGNERS[update.initiator]
        expected, signature = initiate_update(self.state, update, signer, context=self.context())
        new = validate_update(self.state, update, signature, context=self.context())
        assert new == expected
        self.state = new
        return new

    def reject(self, update: Update, code: str, *, signer: signing.Signer | None = None) -> None:
        before = channel_state_to_json(self.state)
        signature = signing.sign_state(self.state, signer or h.SIGNERS.get(update.initiator, h.STRANGER))
        with pytest.raises(ProtocolError) as raised:
            validate_update(self.state, update, signature, context=self.context())
        assert raised.value.code == code, raised.value
        assert channel_state_to_json(self.state) == before

    def fresh(self, label: str) -> bytes:
        self.counter += 1
        return keccak256(f"{label}/{self.counter}".encode())

    # -- rules -------------------------------------------------------------------------------------

    @initialize(
        initiator=st.sampled_from(PARTIES),
        funding=st.lists(st.integers(0, 10**19), min_size=4, max_size=4),
    )
    def setup(self, initiator: signing.Signer, funding: list[int]) -> None:
        """Open the channel; most runs then credit deposits, so transfers have something to move."""
        update = h.setup_update(initiator=initiator.address)
        _, signature = initiate_update(None, update, initiator, context=self.context())
        self.state = validate_update(None, update, signature, context=self.context())
        for index, asset in enumerate(ASSETS):
            self.chain[asset] = [funding[2 * index], funding[2 * index + 1]]
            if funding[2 * index] or funding[2 * index + 1]:
                self.deposit(asset, initiator, 4, 4)

    @rule(asset=st.sampled_from(ASSETS), party=st.sampled_from((0, 1)), amount=amounts)
    def deposit_on_chain(self, asset: str, party: int, amount: int) -> None:
        self.chain[asset][party] += amount

    @rule(
        asset=st.sampled_from(ASSETS),
        initiator=st.sampled_from(PARTIES),
        node_share=st.integers(0, 4),
        user_share=st.integers(0, 4),
    )
    def deposit(self, asset: str, initiator: signing.Signer, node_share: int, user_share: int) -> None:
        processed = self.processed.get(asset, [0, 0])
        chain = self.chain[asset]
        totals = [
            processed[i] + (chain[i] - processed[i]) * share // 4
            for i, share in enumerate((node_share, user_share))
        ]
        update = h.deposit_update(
            self.state, asset=asset, node=totals[0], user=totals[1], initiator=initiator.address
        )
        if totals == processed:
            self.reject(update, "no_new_deposit")
            return
        self.accept(update)
        balances = self.balances.setdefault(asset, [0, 0])
        for i in (0, 1):
            balances[i] += totals[i] - processed[i]
        self.processed[asset] = totals
        self.withdrawn.setdefault(asset, 0)

    @rule(
        kind=st.sampled_from(list(DefinitionKind)),
        initiator=st.sampled_from(PARTIES),
        asset=st.sampled_from(ASSETS),
        amount=amounts,
        expiry_delta=st.integers(-100, 1_000),
    )
    def create(
        self, kind: DefinitionKind, initiator: signing.Signer, asset: str, amount: int, expiry_delta: int
    ) -> None:
        payer = PARTIES.index(initiator)
        secret = self.fresh("secret")
        payment_id = self.fresh("payment")
        if kind is DefinitionKind.LINKED:
            encoded = h.linked_state(secret)
        elif kind is DefinitionKind.HASHLOCK:
            encoded = h.hashlock_state(secret, self.now + expiry_delta)
        elif kind is DefinitionKind.SIGNED:
            encoded, secret = h.signed_state(payment_id), payment_id
        else:
            encoded = h.withdraw_state(self.state, initiator=initiator, amount=amount, asset=asset)
        update = h.create_update(
            self.state,
            initiator=initiator.address,
            definition=KIND_ADDRESS[kind],
            encoded_state=encoded,
            amount=amount,
            asset=asset,
            payment_id=payment_id,
        )
        if amount == 0:
            self.reject(update, "amount_out_of_range")
        elif asset not in self.balances:
            self.reject(update, "unknown_asset")
        elif self.balances[asset][payer] < amount:
            self.reject(update, "insufficient_balance")
        elif kind is DefinitionKind.HASHLOCK and expiry_delta <= 0:
            self.reject(update, "expired")
        else:
            new = self.accept(update)
            self.balances[asset][payer] -= amount
            self.transfers[new.transfers[-1].transfer_id] = (kind, secret, asset, amount, payer)

    @precondition(lambda self: bool(self.transfers))
    @rule(pick=st.integers(0, 1_000), mode=st.sampled_from(["claim", "cancel"]))
    def resolve(self, pick: int, mode: str) -> None:
        self._resolve(pick, mode)

    @precondition(lambda self: bool(self.transfers))
    @rule(pick=st.integers(0, 1_000), mode=st.sampled_from(["claim", "wrong", "by_initiator"]))
    def resolve_maybe_wrongly(self, pick: int, mode: str) -> None:
        self._resolve(pick, mode)

    def _resolve(self, pick: int, mode: str) -> None:
        transfer_id = sorted(self.transfers)[pick % len(self.transfers)]
        kind, secret, asset, amount, payer = self.transfers[transfer_id]
        responder = PARTIES[1 - payer]
        resolver = self._resolver(transfer_id, kind, secret, mode)
        initiator = PARTIES[payer] if mode == "by_initiator" else responder
        update = h.resolve_update(
            self.state, transfer_id=transfer_id, initiator=initiator.address, resolver=resolver
        )
        expiry = (
            definitions.HashLockState.decode(self.state.transfer(transfer_id).encoded_state).expiry
            if (kind is DefinitionKind.HASHLOCK)
            else None
        )
        if mode == "by_initiator":
            self.reject(update, "unauthorized")
            return
        if mode != "cancel" and expiry is not None and self.now >= expiry:
            self.reject(update, "expired")
            return
        if mode == "wrong":
            self.reject(update, "bad_resolver")
            return
        self.accept(update)
        del self.transfers[transfer_id]
        if mode == "cancel":
            self.balances[asset][payer] += amount
        elif kind is DefinitionKind.WITHDRAW:
            self.withdrawn[asset] += amount
        else:
            self.balances[asset][1 - payer] += amount

    def _resolver(self, transfer_id: bytes, kind: DefinitionKind, secret: bytes, mode: str) -> bytes:
        if kind in (DefinitionKind.LINKED, DefinitionKind.HASHLOCK):
            return {"cancel": ZERO_BYTES32, "wrong": keccak256(secret)}.get(mode, secret)
        if kind is DefinitionKind.SIGNED:
            if mode == "cancel":
                return definitions.SignedResolver(ZERO_BYTES32, b"").encode()
            signer = h.STRANGER if mode == "wrong" else h.RECEIPT_SIGNER
            return h.receipt_resolver(secret, keccak256(b"data" + secret), signer)
        if mode == "cancel":
            return definitions.WithdrawResolver(b"").encode()
        transfer = self.state.transfer(transfer_id)
        assert transfer is not None
        by = transfer.initiator if mode == "wrong" else transfer.responder
        return h.withdraw_resolver(self.state, transfer_id, h.SIGNERS[by])

    @rule(
        initiator=st.sampled_from(PARTIES),
        give_asset=st.sampled_from(ASSETS),
        take_asset=st.sampled_from(ASSETS),
        give_amount=amounts,
        take_amount=amounts,
    )
    def swap(
        self, initiator: signing.Signer, give_asset: str, take_asset: str, give_amount: int, take_amount: int
    ) -> None:
        payer = PARTIES.index(initiator)
        update = h.swap_update(
            self.state,
            initiator=initiator.address,
            give_asset=give_asset,
            give_amount=give_amount,
            take_asset=take_asset,
            take_amount=take_amount,
        )
        if give_amount == 0 or take_amount == 0:
            self.reject(update, "amount_out_of_range")
        elif give_asset == take_asset:
            self.reject(update, "same_asset")
        elif give_asset not in self.balances or take_asset not in self.balances:
            self.reject(update, "unknown_asset")
        elif (
            self.balances[give_asset][payer] < give_amount
            or self.balances[take_asset][1 - payer] < take_amount
        ):
            self.reject(update, "insufficient_balance")
        else:
            self.accept(update)
            self.balances[give_asset][payer] -= give_amount
            self.balances[give_asset][1 - payer] += give_amount
            self.balances[take_asset][1 - payer] -= take_amount
            self.balances[take_asset][payer] += take_amount

    @rule(seconds=st.integers(0, 600))
    def time_passes(self, seconds: int) -> None:
        self.now += seconds

    @rule(
        flaw=st.sampled_from(
            [
                "stale",
                "replay",
                "gap",
                "other_channel",
                "stranger",
                "unknown_transfer",
                "beyond_chain",
                "below",
            ]
        ),
        secret=st.binary(min_size=32, max_size=32),
        asset=st.sampled_from(ASSETS),
    )
    def invalid_update(self, flaw: str, secret: bytes, asset: str) -> None:
        update: Update = h.deposit_update(self.state, node=1)
        code = {"stale": "stale_nonce", "replay": "stale_nonce", "gap": "nonce_gap"}.get(flaw, "")
        processed = self.processed.get(asset, [0, 0])
        if flaw == "below" and processed[1] > 0:
            update = h.deposit_update(self.state, asset=asset, node=processed[0], user=processed[1] - 1)
            code = "bad_deposit"
        elif flaw in ("beyond_chain", "below"):
            node, user = self.chain[asset]
            update = h.deposit_update(self.state, asset=asset, node=node, user=user + 1 + secret[0])
            code = "deposit_exceeds_chain"
        elif flaw in ("stale", "replay", "gap"):
            update = replace(update, nonce=self.state.nonce + {"stale": -1, "replay": 0, "gap": 2}[flaw])
        elif flaw == "other_channel":
            update, code = replace(update, channel_address=h.TOKEN), "wrong_channel"
        elif flaw == "stranger":
            update, code = replace(update, initiator=h.STRANGER.address), "unauthorized"
        else:
            update = h.resolve_update(
                self.state, transfer_id=keccak256(secret), initiator=h.NODE.address, resolver=secret
            )
            code = "unknown_transfer"
        self.reject(update, code)

    @precondition(lambda self: any(b[1] > 0 for b in self.balances.values()))
    @rule(data=st.data())
    def update_signed_by_the_wrong_party(self, data: st.DataObject) -> None:
        asset = data.draw(st.sampled_from([a for a, b in self.balances.items() if b[1] > 0]))
        update = h.linked_create(
            self.state, initiator=h.USER.address, amount=1, preimage=self.fresh("s"), asset=asset
        )
        new_state = h.apply_update(self.state, update, context=self.context())
        with pytest.raises(ProtocolError) as raised:
            validate_update(self.state, update, signing.sign_state(new_state, h.NODE), context=self.context())
        assert raised.value.code == "bad_signature"

    # -- invariants --------------------------------------------------------------------------------

    @invariant()
    def state_matches_the_model(self) -> None:
        state = self.state
        assert set(state.asset_ids) == set(self.balances)
        for index, asset in enumerate(state.asset_ids):
            assert list(state.balances[index]) == self.balances[asset]
            assert list(state.processed_deposits[index]) == self.processed[asset]
            assert state.withdrawn(asset) == self.withdrawn[asset]
            assert state.defund_nonces[index] == 1
            assert all(p <= c for p, c in zip(self.processed[asset], self.chain[asset], strict=True))
        assert {t.transfer_id for t in state.transfers} == set(self.transfers)

    @invariant()
    def money_is_conserved_per_asset(self) -> None:
        state = self.state
        for index, asset in enumerate(state.asset_ids):
            node, user = state.balances[index]
            assert (
                node + user + state.locked(asset)
                == sum(state.processed_deposits[index]) - self.withdrawn[asset]
            )

    @invariant()
    def merkle_root_matches_the_active_transfers(self) -> None:
        leaves = [t.transfer_hash for t in self.state.transfers]
        root = merkle.merkle_root(leaves)
        assert self.state.merkle_root == root
        for transfer in self.state.transfers:
            proof = self.state.merkle_proof(transfer.transfer_id)
            assert merkle.verify_merkle_proof(proof, root, transfer.transfer_hash)

    @invariant()
    def state_passes_its_own_checks(self) -> None:
        invariants.check_state(self.state)


ChannelMachine.TestCase.settings = settings(PROTOCOL_SETTINGS, max_examples=100, stateful_step_count=50)
TestChannelMachine = ChannelMachine.TestCase
