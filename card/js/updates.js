// The update rules: `applyUpdate(previous, update, context) -> next state`, pure; a mirror of
// connext/protocol/updates.py (its docstring says who may initiate what). Every update names its channel
// and the nonce of the state it produces (previous nonce + 1). A rejection throws a ProtocolError with
// the same code Python gives; the values being frozen, the caller's state is untouched. Every new state
// passes `checkTransition` before it is returned.

import { MAX_UINT256, ZERO_ADDRESS, isCanonicalHex } from './bytes.js';
import { isChecksumAddress } from './address.js';
import {
  AmountOutOfRangeError,
  BadDepositError,
  BadResolverError,
  BadTimeoutError,
  ChannelExistsError,
  DepositExceedsChainError,
  DisputeMismatchError,
  DisputeNotOverError,
  DuplicateTransferError,
  InsufficientBalanceError,
  InvalidSetupError,
  MalformedError,
  NoChannelError,
  NonceGapError,
  NoNewDepositError,
  SameAssetError,
  StaleNonceError,
  UnauthorizedError,
  UnknownAssetError,
  UnknownDefinitionError,
  UnknownTransferError,
  WrongChannelError,
} from './errors.js';
import * as definitions from './definitions.js';
import { channelStateHash, transferHash, transferIdOf } from './encoding.js';
import { checkTransition } from './invariants.js';
import {
  assetIndex,
  counterparty,
  findTransfer,
  lockedOfTransfer,
  makeChainDispute,
  makeChannelState,
  makeTransferState,
  makeUpdateContext,
  partyOf,
  replaceState,
} from './types.js';

// Upper bound for the dispute timeout and transfer timeouts, in seconds (about 136 years): Channel.sol
// stores `now + 2·timeout` and `now + transferTimeout` as uint64, so a larger one could never be disputed.
export const MAX_TIMEOUT = 2n ** 32n - 1n;

const COMMON_FIELDS = ['type', 'channelAddress', 'nonce', 'initiator'];
export const UPDATE_FIELDS = Object.freeze({
  setup: [...COMMON_FIELDS, 'chainId', 'node', 'user', 'timeout'],
  deposit: [...COMMON_FIELDS, 'assetId', 'totalDepositsNode', 'totalDepositsUser'],
  create: [
    ...COMMON_FIELDS, 'assetId', 'amount', 'transferDefinition', 'paymentId', 'encodedState', 'transferTimeout',
    'metaHash',
  ],
  resolve: [...COMMON_FIELDS, 'transferId', 'encodedResolver'],
  resume: [...COMMON_FIELDS, 'defunds', 'droppedTransferIds'],
  swap: [...COMMON_FIELDS, 'giveAssetId', 'giveAmount', 'takeAssetId', 'takeAmount'],
});

// In the order Python checks them, so the first bad field gives the same code.
const ADDRESS_FIELDS = ['channelAddress', 'initiator', 'node', 'user', 'assetId', 'transferDefinition', 'giveAssetId', 'takeAssetId'];
const BYTES32_FIELDS = ['paymentId', 'metaHash', 'transferId'];
const BYTES_FIELDS = ['encodedState', 'encodedResolver'];
const UINT_FIELDS = ['nonce', 'chainId', 'timeout', 'transferTimeout'];
const AMOUNT_FIELDS = ['amount', 'totalDepositsNode', 'totalDepositsUser', 'giveAmount', 'takeAmount'];

const isUint = (value) => typeof value === 'bigint' && value >= 0n && value <= MAX_UINT256;

/** Throw `malformed` / `amount_out_of_range` for any ill-typed field (names the field). */
export function checkUpdateFields(update) {
  if (!update || typeof update !== 'object') throw new MalformedError('an update must be an object');
  const fields = UPDATE_FIELDS[update.type];
  if (!fields) throw new MalformedError(`must be one of ${Object.keys(UPDATE_FIELDS).join(', ')}`, { field: 'type' });
  for (const name of Object.keys(update)) {
    if (!fields.includes(name)) throw new MalformedError('is not a field of this update', { field: name });
  }
  for (const name of fields) {
    if (update[name] === undefined) throw new MalformedError('is missing', { field: name });
  }
  if (update.type === 'resume') checkResumeFields(update);
  for (const name of ADDRESS_FIELDS) {
    if (name in update && !isChecksumAddress(update[name])) throw new MalformedError('must be a checksummed address', { field: name });
  }
  for (const name of BYTES32_FIELDS) {
    if (name in update && !isCanonicalHex(update[name], 32)) throw new MalformedError('must be 32 bytes of lowercase 0x-hex', { field: name });
  }
  for (const name of BYTES_FIELDS) {
    if (name in update && !isCanonicalHex(update[name])) throw new MalformedError('must be bytes as lowercase 0x-hex', { field: name });
  }
  for (const name of UINT_FIELDS) {
    if (name in update && !isUint(update[name])) throw new MalformedError('must be an integer (BigInt) in uint256', { field: name });
  }
  for (const name of AMOUNT_FIELDS) {
    if (name in update && !isUint(update[name])) {
      throw new AmountOutOfRangeError('an amount must be an integer (BigInt) in [0, 2**256 - 1]', { field: name });
    }
  }
}

function checkResumeFields(update) {
  if (!Array.isArray(update.defunds) || !Array.isArray(update.droppedTransferIds)) {
    throw new MalformedError('defunds and dropped transfer ids must be arrays');
  }
  update.defunds.forEach((defund, i) => {
    const where = `defunds[${i}]`;
    if (!defund || typeof defund !== 'object' || !isChecksumAddress(defund.assetId)) {
      throw new MalformedError('must be an asset defund with a checksummed asset id', { field: where });
    }
    if (typeof defund.defundNonce !== 'bigint' || !(defund.defundNonce >= 1n && defund.defundNonce < MAX_UINT256)) {
      throw new MalformedError('must be a defund nonce in [1, 2**256 - 2]', { field: `${where}.defundNonce` });
    }
    const { payout } = defund;
    if (!Array.isArray(payout) || payout.length !== 2) throw new MalformedError('must be a pair (to node, to user)', { field: `${where}.payout` });
    if (!payout.every(isUint)) {
      throw new AmountOutOfRangeError('a payout must be an integer in [0, 2**256 - 1]', { field: `${where}.payout` });
    }
  });
  if (new Set(update.defunds.map((d) => d.assetId)).size !== update.defunds.length) {
    throw new MalformedError('each asset is defunded once', { field: 'defunds' });
  }
  update.droppedTransferIds.forEach((id, i) => {
    if (!isCanonicalHex(id, 32)) throw new MalformedError('must be 32 bytes', { field: `droppedTransferIds[${i}]` });
  });
  if (new Set(update.droppedTransferIds).size !== update.droppedTransferIds.length) {
    throw new MalformedError('each transfer is dropped once', { field: 'droppedTransferIds' });
  }
}

function checkTimeout(value, field) {
  if (!(value > 0n && value <= MAX_TIMEOUT)) throw new BadTimeoutError(`must be in [1, ${MAX_TIMEOUT}] seconds`, { field });
}

function partyIndex(state, address) {
  const party = partyOf(state, address);
  if (party === null) throw new UnauthorizedError(`${address} is neither the node nor the user`);
  return party;
}

function setPair(pairs, index, value) {
  return pairs.map((pair, i) => (i === index ? value : pair));
}

/** The context with Maps and Sets (plain objects are accepted for `definitions`, `chainDeposits` and the
 * dispute's `defunds`); `now` must be a BigInt (unix seconds). */
function asContext(context) {
  if (!context || typeof context.now !== 'bigint') throw new MalformedError('the context needs `now` as a BigInt', { field: 'now' });
  const dispute = context.dispute;
  const ready =
    context.definitions instanceof Map && context.chainDeposits instanceof Map &&
    (!dispute || (dispute.defunds instanceof Map && dispute.disputedTransfers instanceof Set && dispute.defundedTransfers instanceof Set));
  if (ready) return context;
  return makeUpdateContext({ ...context, dispute: dispute ? makeChainDispute(dispute) : null });
}

/** The state `update` produces from `previous` (null before setup), or a ProtocolError. */
export function applyUpdate(previous, update, context) {
  checkUpdateFields(update);
  context = asContext(context);
  if (update.type === 'setup') {
    if (previous !== null && previous !== undefined) throw new ChannelExistsError('the channel already has a state');
    const next = setup(update);
    checkTransition(null, next, update);
    return next;
  }
  if (previous === null || previous === undefined) throw new NoChannelError('the channel has no state yet: set it up first');
  if (update.channelAddress !== previous.channelAddress) {
    throw new WrongChannelError(`the update is for ${update.channelAddress}, not ${previous.channelAddress}`);
  }
  if (update.nonce <= previous.nonce) throw new StaleNonceError(`nonce ${update.nonce} is not above the current ${previous.nonce}`);
  if (update.nonce > previous.nonce + 1n) throw new NonceGapError(`nonce ${update.nonce} skips ahead of the current ${previous.nonce}`);
  if (partyOf(previous, update.initiator) === null) {
    throw new UnauthorizedError('the initiator is neither the node nor the user', { field: 'initiator' });
  }
  let next;
  let kind = null;
  if (update.type === 'deposit') next = deposit(previous, update, context);
  else if (update.type === 'create') next = create(previous, update, context);
  else if (update.type === 'resume') next = resume(previous, update, context);
  else if (update.type === 'swap') next = swap(previous, update);
  else [next, kind] = resolve(previous, update, context);
  checkTransition(previous, next, update, { definitionKind: kind });
  return next;
}

function setup(update) {
  if (update.nonce !== 1n) {
    const ErrorClass = update.nonce < 1n ? StaleNonceError : NonceGapError;
    throw new ErrorClass('the setup state has nonce 1', { field: 'nonce' });
  }
  if (update.node === update.user || update.node === ZERO_ADDRESS || update.user === ZERO_ADDRESS) {
    throw new InvalidSetupError('node and user must be two different non-zero addresses');
  }
  if (update.chainId === 0n || update.channelAddress === ZERO_ADDRESS) {
    throw new InvalidSetupError('the chain id and channel address must be set');
  }
  if (update.initiator !== update.node && update.initiator !== update.user) {
    throw new UnauthorizedError('only the node or the user may set up the channel', { field: 'initiator' });
  }
  checkTimeout(update.timeout, 'timeout');
  return makeChannelState({
    channelAddress: update.channelAddress,
    chainId: update.chainId,
    node: update.node,
    user: update.user,
    timeout: update.timeout,
    nonce: 1n,
  });
}

function deposit(state, update, context) {
  const index = assetIndex(state, update.assetId);
  const oldProcessed = index !== null ? state.processedDeposits[index] : [0n, 0n];
  const oldBalances = index !== null ? state.balances[index] : [0n, 0n];
  const totals = [update.totalDepositsNode, update.totalDepositsUser];
  if (totals[0] < oldProcessed[0] || totals[1] < oldProcessed[1]) {
    throw new BadDepositError(`deposit totals ${totals} are below the processed ${oldProcessed}`);
  }
  if (totals[0] === oldProcessed[0] && totals[1] === oldProcessed[1]) {
    throw new NoNewDepositError('the deposit totals equal what is already processed');
  }
  const onChain = context.chainDeposits.get(update.assetId) ?? [0n, 0n];
  if (totals[0] > onChain[0] || totals[1] > onChain[1]) {
    throw new DepositExceedsChainError(`deposit totals ${totals} exceed the chain's ${onChain}`);
  }
  const balances = [oldBalances[0] + totals[0] - oldProcessed[0], oldBalances[1] + totals[1] - oldProcessed[1]];
  if (balances[0] > MAX_UINT256 || balances[1] > MAX_UINT256) {
    throw new AmountOutOfRangeError('the credited balance would exceed 2**256 - 1');
  }
  if (index === null) {
    return replaceState(state, {
      nonce: update.nonce,
      assetIds: [...state.assetIds, update.assetId],
      balances: [...state.balances, balances],
      processedDeposits: [...state.processedDeposits, totals],
      defundNonces: [...state.defundNonces, 1n],
    });
  }
  return replaceState(state, {
    nonce: update.nonce,
    balances: setPair(state.balances, index, balances),
    processedDeposits: setPair(state.processedDeposits, index, totals),
  });
}

function create(state, update, context) {
  if (update.amount === 0n) throw new AmountOutOfRangeError('a transfer locks more than zero', { field: 'amount' });
  const kind = context.definitions.get(update.transferDefinition);
  if (kind === undefined) throw new UnknownDefinitionError(`${update.transferDefinition} is not a known transfer definition`);
  const index = assetIndex(state, update.assetId);
  if (index === null) throw new UnknownAssetError(`the channel holds no ${update.assetId}`);
  checkTimeout(update.transferTimeout, 'transferTimeout');
  const payer = partyIndex(state, update.initiator);
  const balance = state.balances[index];
  if (balance[payer] < update.amount) {
    throw new InsufficientBalanceError(`balance ${balance[payer]} is below the amount ${update.amount}`);
  }
  const transfer = makeTransferState({
    channelAddress: state.channelAddress,
    paymentId: update.paymentId,
    createNonce: update.nonce,
    transferDefinition: update.transferDefinition,
    initiator: update.initiator,
    responder: counterparty(state, update.initiator),
    assetId: update.assetId,
    balance: [update.amount, 0n],
    transferTimeout: update.transferTimeout,
    encodedState: update.encodedState,
    metaHash: update.metaHash,
  });
  if (findTransfer(state, transferIdOf(transfer)) !== null) {
    throw new DuplicateTransferError('a transfer with this id is already active');
  }
  definitions.accept(kind, transfer, { chainId: state.chainId, now: context.now });
  const newBalance = [...balance];
  newBalance[payer] -= update.amount;
  return replaceState(state, {
    nonce: update.nonce,
    balances: setPair(state.balances, index, newBalance),
    transfers: [...state.transfers, transfer],
  });
}

function resolve(state, update, context) {
  const transfer = findTransfer(state, update.transferId);
  if (transfer === null) throw new UnknownTransferError(`no active transfer ${update.transferId}`);
  if (update.initiator !== transfer.responder) {
    throw new UnauthorizedError("only the transfer's responder may resolve it", { field: 'initiator' });
  }
  if (context.dispute && context.dispute.disputedTransfers.has(transferHash(transfer))) {
    throw new DisputeMismatchError('the transfer is disputed on chain: it settles there only');
  }
  const kind = context.definitions.get(transfer.transferDefinition);
  if (kind === undefined) throw new UnknownDefinitionError(`${transfer.transferDefinition} is not a known transfer definition`);
  const [toInitiator, toResponder] = definitions.resolve(kind, transfer.balance, transfer.encodedState, update.encodedResolver, {
    chainId: state.chainId,
    definition: transfer.transferDefinition,
    now: context.now,
  });
  if (toInitiator < 0n || toResponder < 0n || toInitiator + toResponder > lockedOfTransfer(transfer)) {
    throw new BadResolverError('the definition paid out more than the transfer holds');
  }
  const index = state.assetIds.indexOf(transfer.assetId);
  const newBalance = [...state.balances[index]];
  newBalance[partyIndex(state, transfer.initiator)] += toInitiator;
  newBalance[partyIndex(state, transfer.responder)] += toResponder;
  if (newBalance[0] > MAX_UINT256 || newBalance[1] > MAX_UINT256) {
    throw new AmountOutOfRangeError('the resolved balance would exceed 2**256 - 1');
  }
  const next = replaceState(state, {
    nonce: update.nonce,
    balances: setPair(state.balances, index, newBalance),
    transfers: state.transfers.filter((t) => t !== transfer),
  });
  return [next, kind];
}

function swap(state, update) {
  if (update.giveAmount === 0n) throw new AmountOutOfRangeError('a swap gives more than zero', { field: 'giveAmount' });
  if (update.takeAmount === 0n) throw new AmountOutOfRangeError('a swap takes more than zero', { field: 'takeAmount' });
  if (update.giveAssetId === update.takeAssetId) throw new SameAssetError('a swap exchanges two different assets', { field: 'takeAssetId' });
  const giveIndex = assetIndex(state, update.giveAssetId);
  if (giveIndex === null) throw new UnknownAssetError(`the channel holds no ${update.giveAssetId}`, { field: 'giveAssetId' });
  const takeIndex = assetIndex(state, update.takeAssetId);
  if (takeIndex === null) throw new UnknownAssetError(`the channel holds no ${update.takeAssetId}`, { field: 'takeAssetId' });
  const initiator = partyIndex(state, update.initiator);
  const responder = 1 - initiator;
  const give = [...state.balances[giveIndex]];
  const take = [...state.balances[takeIndex]];
  if (give[initiator] < update.giveAmount) {
    throw new InsufficientBalanceError(`the initiator's balance ${give[initiator]} is below the amount it gives ${update.giveAmount}`, {
      field: 'giveAmount',
    });
  }
  if (take[responder] < update.takeAmount) {
    throw new InsufficientBalanceError(`the responder's balance ${take[responder]} is below the amount it gives ${update.takeAmount}`, {
      field: 'takeAmount',
    });
  }
  give[initiator] -= update.giveAmount;
  give[responder] += update.giveAmount;
  take[responder] -= update.takeAmount;
  take[initiator] += update.takeAmount;
  if ([...give, ...take].some((amount) => amount > MAX_UINT256)) {
    throw new AmountOutOfRangeError('the swapped balance would exceed 2**256 - 1');
  }
  return replaceState(state, {
    nonce: update.nonce,
    balances: setPair(setPair(state.balances, giveIndex, give), takeIndex, take),
  });
}

function resume(state, update, context) {
  const { dispute } = context;
  if (!dispute) throw new DisputeNotOverError('the chain shows no dispute of this channel');
  if (dispute.chainTime < dispute.defundExpiry) {
    throw new DisputeNotOverError(`the defund window runs until ${dispute.defundExpiry}; the chain's time is ${dispute.chainTime}`);
  }
  const given = new Map(update.defunds.map((d) => [d.assetId, d]));
  const assetIds = [...state.assetIds];
  const balances = [...state.balances];
  const processed = [...state.processedDeposits];
  const defundNonces = [...state.defundNonces];
  // New assets are appended in the update's (signed) order, so both sides derive the same state.
  const candidates = [...state.assetIds, ...[...given.keys()].filter((a) => !state.assetIds.includes(a))];
  for (const asset of dispute.defunds.keys()) if (!candidates.includes(asset)) candidates.push(asset);
  for (const assetId of candidates) {
    const index = assetIndex(state, assetId);
    const defundNonce = index !== null ? state.defundNonces[index] : 1n;
    const onChain = dispute.defunds.get(assetId);
    const proposed = given.get(assetId);
    if (onChain === undefined || onChain.defundNonce < defundNonce) {
      if (proposed !== undefined) {
        throw new DisputeMismatchError(`the chain did not defund ${assetId} at defund nonce ${defundNonce}`, { field: 'defunds' });
      }
      continue;
    }
    if (onChain.defundNonce > defundNonce) {
      throw new DisputeMismatchError(
        `the chain defunded ${assetId} at defund nonce ${onChain.defundNonce}, above this state's ${defundNonce}`,
        { field: 'defunds' },
      );
    }
    if (proposed === undefined) {
      throw new DisputeMismatchError(`the chain defunded ${assetId}: the update must include it`, { field: 'defunds' });
    }
    if (proposed.defundNonce !== onChain.defundNonce) {
      throw new DisputeMismatchError(`${assetId} was defunded at defund nonce ${onChain.defundNonce}, not ${proposed.defundNonce}`, { field: 'defunds' });
    }
    if (proposed.payout[0] !== onChain.payout[0] || proposed.payout[1] !== onChain.payout[1]) {
      throw new DisputeMismatchError(`the chain paid ${onChain.payout} of ${assetId}, not ${proposed.payout}`, { field: 'defunds' });
    }
    if (dispute.stateHash !== channelStateHash(state)) {
      throw new DisputeMismatchError("the chain's disputed state is not this channel's latest state");
    }
    const oldBalance = index !== null ? balances[index] : [0n, 0n];
    const oldProcessed = index !== null ? processed[index] : [0n, 0n];
    const { payout } = onChain;
    if (payout[0] < oldBalance[0] || payout[1] < oldBalance[1]) {
      throw new DisputeMismatchError(`the chain paid ${payout} of ${assetId}, below the balances ${oldBalance}`);
    }
    const newProcessed = [oldProcessed[0] + payout[0] - oldBalance[0], oldProcessed[1] + payout[1] - oldBalance[1]];
    if (newProcessed[0] > MAX_UINT256 || newProcessed[1] > MAX_UINT256) {
      throw new AmountOutOfRangeError('the processed deposits would exceed 2**256 - 1');
    }
    if (index === null) {
      assetIds.push(assetId);
      balances.push([0n, 0n]);
      processed.push(newProcessed);
      defundNonces.push(defundNonce + 1n);
    } else {
      balances[index] = [0n, 0n];
      processed[index] = newProcessed;
      defundNonces[index] = defundNonce + 1n;
    }
  }
  const dropped = new Set(update.droppedTransferIds);
  update.droppedTransferIds.forEach((transferId, i) => {
    const transfer = findTransfer(state, transferId);
    if (transfer === null) {
      throw new UnknownTransferError(`no active transfer ${transferId}`, { field: `droppedTransferIds[${i}]` });
    }
    if (!dispute.defundedTransfers.has(transferHash(transfer))) {
      throw new DisputeMismatchError(`the chain did not pay out transfer ${transferId}: it stays`, { field: `droppedTransferIds[${i}]` });
    }
  });
  for (const transfer of state.transfers) {
    if (dispute.defundedTransfers.has(transferHash(transfer)) && !dropped.has(transferIdOf(transfer))) {
      throw new DisputeMismatchError(`the chain paid out transfer ${transferIdOf(transfer)}: the update must drop it`, {
        field: 'droppedTransferIds',
      });
    }
  }
  if (!update.defunds.length && !dropped.size) throw new DisputeMismatchError('the chain shows nothing to follow up off chain');
  return replaceState(state, {
    nonce: update.nonce,
    assetIds,
    balances,
    processedDeposits: processed,
    defundNonces,
    transfers: state.transfers.filter((t) => !dropped.has(transferIdOf(t))),
  });
}
