// The protocol's values as deep-frozen plain objects, mirroring connext/protocol/types.py with the
// JSON field names: addresses checksummed strings, bytes lowercase 0x-hex, every uint256 a BigInt.
//
//   ChannelState  {channelAddress, chainId, node, user, assetIds[], balances[[node, user]],
//                  processedDeposits[[node, user]], defundNonces[], timeout, nonce, transfers[]}
//   TransferState {channelAddress, paymentId, createNonce, transferDefinition, initiator, responder,
//                  assetId, balance[initiator, responder], transferTimeout, encodedState, metaHash}
//   updates       {type: 'setup' | 'deposit' | 'create' | 'resolve' | 'resume' | 'swap', channelAddress, nonce,
//                  initiator, ...the fields of that type}
//   UpdateContext {now, definitions: Map(address -> kind), chainDeposits: Map(asset -> [node, user]),
//                  dispute: null | ChainDispute}
//
// The merkle root, transfer ids and hashes and the state hash are derived (encoding.js), never stored,
// so they can never disagree with the fields. Withdrawn amounts are what the processed deposits no
// longer cover: withdrawn(asset) = processed(node + user) − balances(node + user) − locked(asset).

import { ZERO_BYTES32 } from './bytes.js';
import { merkleProof } from './merkle.js';
import { transferHash, transferIdOf } from './encoding.js';
import { UnknownTransferError } from './errors.js';

export const DefinitionKind = Object.freeze({
  LINKED: 'linked',
  HASHLOCK: 'hashlock',
  SIGNED: 'signed',
  WITHDRAW: 'withdraw',
});
export const DEFINITION_KINDS = Object.freeze(new Set(Object.values(DefinitionKind)));

/** Index of a party in a per-asset pair `[node, user]`. */
export const Party = Object.freeze({ NODE: 0, USER: 1 });

export function deepFreeze(value) {
  if (value && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const item of value instanceof Map || value instanceof Set ? value.values() : Object.values(value)) {
      deepFreeze(item);
    }
  }
  return value;
}

export function makeTransferState({
  channelAddress, paymentId, createNonce, transferDefinition, initiator, responder, assetId, balance,
  transferTimeout, encodedState, metaHash = ZERO_BYTES32,
}) {
  return deepFreeze({
    channelAddress, paymentId, createNonce, transferDefinition, initiator, responder, assetId,
    balance: [...balance], transferTimeout, encodedState, metaHash,
  });
}

export function makeChannelState({
  channelAddress, chainId, node, user, assetIds = [], balances = [], processedDeposits = [],
  defundNonces = [], timeout, nonce, transfers = [],
}) {
  return deepFreeze({
    channelAddress, chainId, node, user,
    assetIds: [...assetIds],
    balances: balances.map((pair) => [...pair]),
    processedDeposits: processedDeposits.map((pair) => [...pair]),
    defundNonces: [...defundNonces],
    timeout, nonce,
    transfers: transfers.map((t) => (Object.isFrozen(t) ? t : makeTransferState(t))),
  });
}

/** A copy of `state` with some fields replaced (a new frozen value; `state` is untouched). */
export function replaceState(state, changes) {
  return makeChannelState({ ...state, ...changes });
}

export function makeWithdrawCommitment({ chainId, channelAddress, assetId, recipient, amount, nonce }) {
  return deepFreeze({ chainId, channelAddress, assetId, recipient, amount, nonce });
}

export function makeUpdateContext({ now, definitions = new Map(), chainDeposits = new Map(), dispute = null }) {
  return deepFreeze({
    now,
    definitions: definitions instanceof Map ? new Map(definitions) : new Map(Object.entries(definitions)),
    chainDeposits: chainDeposits instanceof Map ? new Map(chainDeposits) : new Map(Object.entries(chainDeposits)),
    dispute,
  });
}

export function makeChainDispute({
  stateHash, defundExpiry, chainTime, defunds = new Map(), disputedTransfers = new Set(),
  defundedTransfers = new Set(),
}) {
  return deepFreeze({
    stateHash, defundExpiry, chainTime,
    defunds: defunds instanceof Map ? new Map(defunds) : new Map(Object.entries(defunds)),
    disputedTransfers: new Set(disputedTransfers),
    defundedTransfers: new Set(defundedTransfers),
  });
}

export function lockedOfTransfer(transfer) {
  return transfer.balance[0] + transfer.balance[1];
}

export function findTransfer(state, transferId) {
  return state.transfers.find((t) => transferIdOf(t) === transferId) ?? null;
}

export function assetIndex(state, assetId) {
  const index = state.assetIds.indexOf(assetId);
  return index < 0 ? null : index;
}

/** `Party.NODE`, `Party.USER` or null. */
export function partyOf(state, address) {
  if (address === state.node) return Party.NODE;
  if (address === state.user) return Party.USER;
  return null;
}

export function counterparty(state, address) {
  return address === state.node ? state.user : state.node;
}

/** Total locked in active transfers of `assetId`. */
export function lockedOf(state, assetId) {
  let locked = 0n;
  for (const t of state.transfers) if (t.assetId === assetId) locked += lockedOfTransfer(t);
  return locked;
}

/** Cumulative amount of `assetId` that left the channel through withdraw transfers. */
export function withdrawnOf(state, assetId) {
  const index = assetIndex(state, assetId);
  if (index === null) return 0n;
  const [processedNode, processedUser] = state.processedDeposits[index];
  const [nodeBalance, userBalance] = state.balances[index];
  return processedNode + processedUser - nodeBalance - userBalance - lockedOf(state, assetId);
}

/** Proof of an active transfer against the state's merkle root (for `disputeTransfer`). */
export function merkleProofOf(state, transferId) {
  const transfer = findTransfer(state, transferId);
  if (transfer === null) throw new UnknownTransferError(`no active transfer ${transferId}`);
  return merkleProof(state.transfers.map(transferHash), transferHash(transfer));
}
