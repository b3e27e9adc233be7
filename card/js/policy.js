// What the card signs for the node: the user's side of validation, a mirror of connext/client/policy.py.
//
// A node proposal is countersigned only when (1) the core re-derives the new state from the card's own
// latest state and the update and the node's signature is over exactly that state, and (2) the policy
// accepts what the update does to the user's money: no asset's user balance goes down, and only updates
// this client understands are signed (a deposit credit, the node's own withdraw, an incoming Linked,
// HashLock or Signed payment whose meta hashes to its `metaHash`, the node's resolve of the user's own
// transfer, a resume that follows the card's own reading of the chain; never a swap: the user initiates
// swaps, the node never moves the user's funds by proposal). Every transfer the node creates
// leaves the user at least `minWindow` seconds to answer on chain. Anything else is a ValidationError
// and nothing is signed.

import { ProtocolError } from './errors.js';
import { decodeHashLockState } from './definitions.js';
import { metaHash } from './meta.js';
import { DefinitionKind, assetIndex, findTransfer } from './types.js';
import { validateUpdate } from './validation.js';

export const PAYMENT_KINDS = Object.freeze([DefinitionKind.LINKED, DefinitionKind.HASHLOCK, DefinitionKind.SIGNED]);

// How fast the card's watcher answers on chain, by default.
export const DEFAULT_POLL_SECONDS = 5;
export const DEFAULT_CONFIRMATIONS = 3;
export const DEFAULT_BLOCK_SECONDS = 12;
export const DEFAULT_MARGIN_SECONDS = 300;

/** A state the client refuses to sign (the protocol rules or the client's policy reject it). */
export class ValidationError extends Error {
  constructor(code, message, { field = null } = {}) {
    super(message);
    this.name = 'ValidationError';
    this.code = code;
    this.field = field;
  }

  toString() {
    return `${this.code}: ${this.message}`;
  }
}

/** The shortest on-chain window (seconds, BigInt) the card signs: the time its watcher needs to notice a
 * dispute, have its answer mined and confirmed, with a margin. */
export function minWindow({
  pollSeconds = DEFAULT_POLL_SECONDS,
  confirmations = DEFAULT_CONFIRMATIONS,
  blockSeconds = DEFAULT_BLOCK_SECONDS,
  marginSeconds = DEFAULT_MARGIN_SECONDS,
} = {}) {
  return BigInt(Math.ceil(pollSeconds + confirmations * blockSeconds + marginSeconds));
}

export const DEFAULT_MIN_WINDOW = minWindow(); // 5 + 3 × 12 + 300 = 341 s

const fromProtocol = (error) => new ValidationError(error.code, error.message, { field: error.field });

/** The state to countersign for the node's `update` (with the `meta` its proposal carried), or a
 * ValidationError. */
export function checkNodeProposal(previous, update, nodeSignature, context, { meta = null, minWindow: window = DEFAULT_MIN_WINDOW } = {}) {
  if (update.initiator !== previous.node) {
    throw new ValidationError('unauthorized', 'a node proposal must be initiated by the node', { field: 'initiator' });
  }
  if (update.type === 'setup') throw new ValidationError('invalid_update', 'the channel is already set up');
  if (update.type === 'swap') {
    throw new ValidationError('unsupported_update', 'the user initiates swaps: this client signs no swap the node proposes', { field: 'type' });
  }
  const deposits = context.chainDeposits instanceof Map ? context.chainDeposits : new Map(Object.entries(context.chainDeposits ?? {}));
  if (update.type === 'deposit' && !deposits.has(update.assetId)) {
    throw new ValidationError('no_chain_reading', "a deposit credit needs the client's own reading of the chain");
  }
  if (update.type === 'resume' && !context.dispute) {
    throw new ValidationError('no_chain_reading', "a resume needs the client's own reading of the dispute on chain");
  }
  let next;
  try {
    next = validateUpdate(previous, update, nodeSignature, context);
  } catch (error) {
    if (error instanceof ProtocolError) throw fromProtocol(error);
    throw error;
  }
  const definitions = context.definitions instanceof Map ? context.definitions : new Map(Object.entries(context.definitions));
  if (update.type === 'create') {
    checkWindow('transferTimeout', update.transferTimeout, window);
    const kind = definitions.get(update.transferDefinition);
    if (PAYMENT_KINDS.includes(kind)) {
      checkIncomingPayment(update, kind, meta ?? {}, { now: context.now, minWindow: window });
    } else if (kind !== DefinitionKind.WITHDRAW) {
      throw new ValidationError('unsupported_transfer', `this client does not accept ${kind ?? update.transferDefinition}`);
    }
  } else if (update.type === 'resolve') {
    const kind = definitions.get(findTransfer(previous, update.transferId).transferDefinition);
    // The core ran the definition's resolve with the node's resolver: what remains pays as the condition says.
    if (kind !== DefinitionKind.WITHDRAW && !PAYMENT_KINDS.includes(kind)) {
      throw new ValidationError('unsupported_transfer', `this client does not let the node resolve ${kind}`);
    }
  }
  if (meta && Object.keys(meta).length && update.type !== 'create') {
    throw new ValidationError('bad_meta', "only a transfer's creation carries meta");
  }
  if (update.type !== 'resume') checkUserNotDebited(previous, next); // a resume zeroes what the chain paid out
  return next;
}

/** An on-chain window (a transfer's `transferTimeout`, the channel's dispute `timeout`) the card's
 * watcher can answer in. */
export function checkWindow(field, seconds, window = DEFAULT_MIN_WINDOW) {
  if (seconds < window) {
    throw new ValidationError('window_too_short', `${field} is ${seconds}s: shorter than the ${window}s this client needs to answer on chain`, { field });
  }
}

/** No node-initiated update may lower the user's balance or processed deposits in any asset. */
export function checkUserNotDebited(previous, next) {
  previous.assetIds.forEach((assetId, index) => {
    const nextIndex = assetIndex(next, assetId);
    if (nextIndex === null) throw new ValidationError('asset_removed', `the update drops asset ${assetId} from the channel`);
    if (next.balances[nextIndex][1] < previous.balances[index][1]) {
      throw new ValidationError(
        'user_debited',
        `the update lowers the user's ${assetId} balance from ${previous.balances[index][1]} to ${next.balances[nextIndex][1]}`,
      );
    }
    if (next.processedDeposits[nextIndex][1] < previous.processedDeposits[index][1]) {
      throw new ValidationError('user_debited', `the update lowers the user's processed ${assetId} deposits`);
    }
  });
}

/** The node's transfer to the user for a payment: its meta is the one it committed to, and a HashLock
 * lives long enough for the user to resolve it on chain. */
export function checkIncomingPayment(update, kind, meta, { now, minWindow: window = DEFAULT_MIN_WINDOW }) {
  let matches;
  try {
    matches = metaHash(meta) === update.metaHash;
  } catch (error) {
    if (error instanceof ProtocolError) throw fromProtocol(error);
    throw error;
  }
  if (!matches) throw new ValidationError('bad_meta', "the proposal's meta does not hash to the transfer's metaHash", { field: 'meta' });
  const paymentId = meta.paymentId;
  if (paymentId !== undefined && paymentId !== null && paymentId !== update.paymentId) {
    throw new ValidationError('bad_meta', 'the meta names another payment than the transfer', { field: 'meta' });
  }
  if (kind === DefinitionKind.HASHLOCK) {
    const { expiry } = decodeHashLockState(update.encodedState);
    if (expiry < now + window) {
      throw new ValidationError('expiring', `the hashlock expires at ${expiry}, less than ${window}s from now (${now})`, {
        field: 'encodedState',
      });
    }
  }
}
