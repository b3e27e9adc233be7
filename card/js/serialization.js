// JSON forms of the protocol's values, as connext/protocol/serialization.py writes and parses them:
// camelCase keys; every uint256 a canonical decimal string ("0", "1500"; no sign, no leading zeros, no
// exponent) parsed to a BigInt; addresses EIP-55 checksummed (single-case hex is accepted and normalised);
// bytes 0x-prefixed lowercase hex (either case accepted).
//
// Parsing is strict: a missing, unknown or ill-typed key is `malformed` naming the field
// (`transfers[0].balance[1]`); derived fields that are present (a transfer's `transferId` and
// `initialStateHash`, a state's `merkleRoot`) must match what the core derives; a parsed channel state
// must pass `checkState`.

import { MAX_UINT256, normalizeHex } from './bytes.js';
import { normalizeAddress } from './address.js';
import { MalformedError } from './errors.js';
import { initialStateHashOf, merkleRootOf, transferIdOf } from './encoding.js';
import { checkState } from './invariants.js';
import {
  DEFINITION_KINDS,
  makeChainDispute,
  makeChannelState,
  makeTransferState,
  makeUpdateContext,
  makeWithdrawCommitment,
} from './types.js';
import { UPDATE_FIELDS } from './updates.js';

const DECIMAL = /^(?:0|[1-9][0-9]{0,77})$/;

const path = (prefix, name) => (prefix ? `${prefix}.${name}` : name);

function isObject(value) {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

function object(value, field, keys) {
  if (!isObject(value)) throw new MalformedError('must be a JSON object', { field: field || null });
  const unknown = Object.keys(value).filter((key) => !keys.includes(key));
  if (unknown.length) throw new MalformedError(`unknown keys ${JSON.stringify(unknown.sort())}`, { field: field || null });
  const missing = keys.filter((key) => !Object.hasOwn(value, key)).sort();
  if (missing.length) throw new MalformedError('is missing', { field: path(field, missing[0]) });
  return value;
}

/** A uint256 (BigInt) from its canonical decimal string. */
export function parseUint(value, { field = null } = {}) {
  if (typeof value !== 'string' || !DECIMAL.test(value)) {
    throw new MalformedError('must be a uint256 as a canonical decimal string', { field });
  }
  const number = BigInt(value);
  if (number > MAX_UINT256) throw new MalformedError('is above 2**256 - 1', { field });
  return number;
}

/** Bytes (lowercase 0x-hex) from 0x-hex of either case; `length` fixes the size. */
export function parseBytes(value, { field = null, length = null } = {}) {
  return normalizeHex(value, { field, length });
}

export function parseAddress(value, { field = null } = {}) {
  return normalizeAddress(value, { field });
}

function list(value, field) {
  if (!Array.isArray(value)) throw new MalformedError('must be a JSON array', { field });
  return value;
}

function pair(value, field) {
  const items = list(value, field);
  if (items.length !== 2) throw new MalformedError('must be a pair [a, b]', { field });
  return [parseUint(items[0], { field: `${field}[0]` }), parseUint(items[1], { field: `${field}[1]` })];
}

const pairJson = (p) => [p[0].toString(), p[1].toString()];

// -- transfers -------------------------------------------------------------------------------------

const TRANSFER_KEYS = [
  'channelAddress', 'transferId', 'paymentId', 'createNonce', 'transferDefinition', 'initiator', 'responder',
  'assetId', 'balance', 'transferTimeout', 'encodedState', 'initialStateHash', 'metaHash',
];

export function transferStateToJson(t) {
  return {
    channelAddress: t.channelAddress,
    transferId: transferIdOf(t),
    paymentId: t.paymentId,
    createNonce: t.createNonce.toString(),
    transferDefinition: t.transferDefinition,
    initiator: t.initiator,
    responder: t.responder,
    assetId: t.assetId,
    balance: pairJson(t.balance),
    transferTimeout: t.transferTimeout.toString(),
    encodedState: t.encodedState,
    initialStateHash: initialStateHashOf(t),
    metaHash: t.metaHash,
  };
}

export function transferStateFromJson(value, { field = '' } = {}) {
  const obj = object(value, field, TRANSFER_KEYS);
  const f = (name) => ({ field: path(field, name) });
  const transfer = makeTransferState({
    channelAddress: parseAddress(obj.channelAddress, f('channelAddress')),
    paymentId: parseBytes(obj.paymentId, { ...f('paymentId'), length: 32 }),
    createNonce: parseUint(obj.createNonce, f('createNonce')),
    transferDefinition: parseAddress(obj.transferDefinition, f('transferDefinition')),
    initiator: parseAddress(obj.initiator, f('initiator')),
    responder: parseAddress(obj.responder, f('responder')),
    assetId: parseAddress(obj.assetId, f('assetId')),
    balance: pair(obj.balance, path(field, 'balance')),
    transferTimeout: parseUint(obj.transferTimeout, f('transferTimeout')),
    encodedState: parseBytes(obj.encodedState, f('encodedState')),
    metaHash: parseBytes(obj.metaHash, { ...f('metaHash'), length: 32 }),
  });
  if (parseBytes(obj.transferId, { ...f('transferId'), length: 32 }) !== transferIdOf(transfer)) {
    throw new MalformedError('does not match keccak256(TRANSFER_ID_TAG, channel, paymentId, createNonce)', f('transferId'));
  }
  if (parseBytes(obj.initialStateHash, { ...f('initialStateHash'), length: 32 }) !== initialStateHashOf(transfer)) {
    throw new MalformedError('does not match keccak256(encodedState)', f('initialStateHash'));
  }
  return transfer;
}

// -- channel state ---------------------------------------------------------------------------------

const STATE_KEYS = [
  'channelAddress', 'chainId', 'node', 'user', 'assetIds', 'balances', 'processedDeposits', 'defundNonces',
  'timeout', 'nonce', 'merkleRoot', 'transfers',
];

/** The state's struct fields plus its active transfers (`transfers`, not part of the hash). */
export function channelStateToJson(state) {
  return {
    channelAddress: state.channelAddress,
    chainId: state.chainId.toString(),
    node: state.node,
    user: state.user,
    assetIds: [...state.assetIds],
    balances: state.balances.map(pairJson),
    processedDeposits: state.processedDeposits.map(pairJson),
    defundNonces: state.defundNonces.map((n) => n.toString()),
    timeout: state.timeout.toString(),
    nonce: state.nonce.toString(),
    merkleRoot: merkleRootOf(state),
    transfers: state.transfers.map(transferStateToJson),
  };
}

export function channelStateFromJson(value) {
  const obj = object(value, '', STATE_KEYS);
  const state = makeChannelState({
    channelAddress: parseAddress(obj.channelAddress, { field: 'channelAddress' }),
    chainId: parseUint(obj.chainId, { field: 'chainId' }),
    node: parseAddress(obj.node, { field: 'node' }),
    user: parseAddress(obj.user, { field: 'user' }),
    assetIds: list(obj.assetIds, 'assetIds').map((a, i) => parseAddress(a, { field: `assetIds[${i}]` })),
    balances: list(obj.balances, 'balances').map((p, i) => pair(p, `balances[${i}]`)),
    processedDeposits: list(obj.processedDeposits, 'processedDeposits').map((p, i) => pair(p, `processedDeposits[${i}]`)),
    defundNonces: list(obj.defundNonces, 'defundNonces').map((n, i) => parseUint(n, { field: `defundNonces[${i}]` })),
    timeout: parseUint(obj.timeout, { field: 'timeout' }),
    nonce: parseUint(obj.nonce, { field: 'nonce' }),
    transfers: list(obj.transfers, 'transfers').map((t, i) => transferStateFromJson(t, { field: `transfers[${i}]` })),
  });
  if (parseBytes(obj.merkleRoot, { field: 'merkleRoot', length: 32 }) !== merkleRootOf(state)) {
    throw new MalformedError('does not match the root of the active transfers', { field: 'merkleRoot' });
  }
  checkState(state);
  return state;
}

// -- updates ---------------------------------------------------------------------------------------

const DEFUND_KEYS = ['assetId', 'defundNonce', 'toNode', 'toUser'];

export function assetDefundToJson(d) {
  return { assetId: d.assetId, defundNonce: d.defundNonce.toString(), toNode: d.payout[0].toString(), toUser: d.payout[1].toString() };
}

export function assetDefundFromJson(value, { field }) {
  const obj = object(value, field, DEFUND_KEYS);
  return Object.freeze({
    assetId: parseAddress(obj.assetId, { field: path(field, 'assetId') }),
    defundNonce: parseUint(obj.defundNonce, { field: path(field, 'defundNonce') }),
    payout: Object.freeze([
      parseUint(obj.toNode, { field: path(field, 'toNode') }),
      parseUint(obj.toUser, { field: path(field, 'toUser') }),
    ]),
  });
}

function bytes32List(value, field) {
  return list(value, field).map((item, i) => parseBytes(item, { field: `${field}[${i}]`, length: 32 }));
}

const UINT_UPDATE_FIELDS = new Set([
  'nonce', 'chainId', 'timeout', 'amount', 'transferTimeout', 'totalDepositsNode', 'totalDepositsUser', 'giveAmount', 'takeAmount',
]);

export function updateToJson(update) {
  const out = {};
  for (const name of UPDATE_FIELDS[update.type]) {
    const value = update[name];
    if (name === 'defunds') out.defunds = value.map(assetDefundToJson);
    else if (name === 'droppedTransferIds') out.droppedTransferIds = [...value];
    else out[name] = UINT_UPDATE_FIELDS.has(name) ? value.toString() : value;
  }
  return out;
}

export function updateFromJson(value) {
  if (!isObject(value)) throw new MalformedError('an update must be a JSON object');
  const kind = value.type;
  if (typeof kind !== 'string' || !Object.hasOwn(UPDATE_FIELDS, kind)) {
    throw new MalformedError(`must be one of ${JSON.stringify(Object.keys(UPDATE_FIELDS).sort())}`, { field: 'type' });
  }
  const obj = object(value, '', UPDATE_FIELDS[kind]);
  const common = {
    type: kind,
    channelAddress: parseAddress(obj.channelAddress, { field: 'channelAddress' }),
    nonce: parseUint(obj.nonce, { field: 'nonce' }),
    initiator: parseAddress(obj.initiator, { field: 'initiator' }),
  };
  let update;
  if (kind === 'setup') {
    update = {
      ...common,
      chainId: parseUint(obj.chainId, { field: 'chainId' }),
      node: parseAddress(obj.node, { field: 'node' }),
      user: parseAddress(obj.user, { field: 'user' }),
      timeout: parseUint(obj.timeout, { field: 'timeout' }),
    };
  } else if (kind === 'deposit') {
    update = {
      ...common,
      assetId: parseAddress(obj.assetId, { field: 'assetId' }),
      totalDepositsNode: parseUint(obj.totalDepositsNode, { field: 'totalDepositsNode' }),
      totalDepositsUser: parseUint(obj.totalDepositsUser, { field: 'totalDepositsUser' }),
    };
  } else if (kind === 'create') {
    update = {
      ...common,
      assetId: parseAddress(obj.assetId, { field: 'assetId' }),
      amount: parseUint(obj.amount, { field: 'amount' }),
      transferDefinition: parseAddress(obj.transferDefinition, { field: 'transferDefinition' }),
      paymentId: parseBytes(obj.paymentId, { field: 'paymentId', length: 32 }),
      encodedState: parseBytes(obj.encodedState, { field: 'encodedState' }),
      transferTimeout: parseUint(obj.transferTimeout, { field: 'transferTimeout' }),
      metaHash: parseBytes(obj.metaHash, { field: 'metaHash', length: 32 }),
    };
  } else if (kind === 'resume') {
    update = {
      ...common,
      defunds: list(obj.defunds, 'defunds').map((d, i) => assetDefundFromJson(d, { field: `defunds[${i}]` })),
      droppedTransferIds: bytes32List(obj.droppedTransferIds, 'droppedTransferIds'),
    };
  } else if (kind === 'swap') {
    update = {
      ...common,
      giveAssetId: parseAddress(obj.giveAssetId, { field: 'giveAssetId' }),
      giveAmount: parseUint(obj.giveAmount, { field: 'giveAmount' }),
      takeAssetId: parseAddress(obj.takeAssetId, { field: 'takeAssetId' }),
      takeAmount: parseUint(obj.takeAmount, { field: 'takeAmount' }),
    };
  } else {
    update = {
      ...common,
      transferId: parseBytes(obj.transferId, { field: 'transferId', length: 32 }),
      encodedResolver: parseBytes(obj.encodedResolver, { field: 'encodedResolver' }),
    };
  }
  return Object.freeze(update);
}

// -- withdraw commitment, context ------------------------------------------------------------------

const COMMITMENT_KEYS = ['chainId', 'channelAddress', 'assetId', 'recipient', 'amount', 'nonce'];

export function withdrawCommitmentToJson(c) {
  return {
    chainId: c.chainId.toString(),
    channelAddress: c.channelAddress,
    assetId: c.assetId,
    recipient: c.recipient,
    amount: c.amount.toString(),
    nonce: c.nonce.toString(),
  };
}

export function withdrawCommitmentFromJson(value) {
  const obj = object(value, '', COMMITMENT_KEYS);
  return makeWithdrawCommitment({
    chainId: parseUint(obj.chainId, { field: 'chainId' }),
    channelAddress: parseAddress(obj.channelAddress, { field: 'channelAddress' }),
    assetId: parseAddress(obj.assetId, { field: 'assetId' }),
    recipient: parseAddress(obj.recipient, { field: 'recipient' }),
    amount: parseUint(obj.amount, { field: 'amount' }),
    nonce: parseUint(obj.nonce, { field: 'nonce' }),
  });
}

const CONTEXT_KEYS = ['now', 'definitions', 'chainDeposits'];
const DISPUTE_KEYS = ['stateHash', 'defundExpiry', 'chainTime', 'defunds', 'disputedTransfers', 'defundedTransfers'];

export function chainDisputeToJson(d) {
  return {
    stateHash: d.stateHash,
    defundExpiry: d.defundExpiry.toString(),
    chainTime: d.chainTime.toString(),
    defunds: [...d.defunds.values()].map(assetDefundToJson),
    disputedTransfers: [...d.disputedTransfers].sort(),
    defundedTransfers: [...d.defundedTransfers].sort(),
  };
}

export function chainDisputeFromJson(value, { field = 'chainDispute' } = {}) {
  const obj = object(value, field, DISPUTE_KEYS);
  const defunds = new Map();
  list(obj.defunds, `${field}.defunds`).forEach((item, i) => {
    const defund = assetDefundFromJson(item, { field: `${field}.defunds[${i}]` });
    if (defunds.has(defund.assetId)) throw new MalformedError('each asset appears once', { field: `${field}.defunds[${i}].assetId` });
    defunds.set(defund.assetId, defund);
  });
  return makeChainDispute({
    stateHash: parseBytes(obj.stateHash, { field: `${field}.stateHash`, length: 32 }),
    defundExpiry: parseUint(obj.defundExpiry, { field: `${field}.defundExpiry` }),
    chainTime: parseUint(obj.chainTime, { field: `${field}.chainTime` }),
    defunds,
    disputedTransfers: bytes32List(obj.disputedTransfers, `${field}.disputedTransfers`),
    defundedTransfers: bytes32List(obj.defundedTransfers, `${field}.defundedTransfers`),
  });
}

/** `chainDispute` is present only when the context carries one. */
export function updateContextToJson(context) {
  const out = {
    now: context.now.toString(),
    definitions: Object.fromEntries(context.definitions),
    chainDeposits: Object.fromEntries([...context.chainDeposits].map(([asset, totals]) => [asset, pairJson(totals)])),
  };
  if (context.dispute) out.chainDispute = chainDisputeToJson(context.dispute);
  return out;
}

export function updateContextFromJson(value) {
  const withDispute = isObject(value) && Object.hasOwn(value, 'chainDispute');
  const obj = object(value, '', withDispute ? [...CONTEXT_KEYS, 'chainDispute'] : CONTEXT_KEYS);
  if (!isObject(obj.definitions)) throw new MalformedError('must be a JSON object', { field: 'definitions' });
  if (!isObject(obj.chainDeposits)) throw new MalformedError('must be a JSON object', { field: 'chainDeposits' });
  const definitions = new Map();
  for (const [address, kind] of Object.entries(obj.definitions)) {
    if (typeof kind !== 'string' || !DEFINITION_KINDS.has(kind)) {
      throw new MalformedError(`must be one of ${JSON.stringify([...DEFINITION_KINDS].sort())}`, { field: `definitions.${address}` });
    }
    definitions.set(parseAddress(address, { field: 'definitions' }), kind);
  }
  const chainDeposits = new Map();
  for (const [asset, totals] of Object.entries(obj.chainDeposits)) {
    chainDeposits.set(parseAddress(asset, { field: 'chainDeposits' }), pair(totals, `chainDeposits.${asset}`));
  }
  return makeUpdateContext({
    now: parseUint(obj.now, { field: 'now' }),
    definitions,
    chainDeposits,
    dispute: withDispute ? chainDisputeFromJson(obj.chainDispute) : null,
  });
}
