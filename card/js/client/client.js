// `CardClient`: the card's side of a channel with a connext-py node, in the browser (or Node), a mirror of
// connext/client/async_client.py (a facade over core, exchange, incoming, payments, funds and session).
//
// Invariants:
// - Every state the card signs is one it derived itself with the core (`initiateUpdate`, `applyUpdate`)
//   from its own latest doubly signed state; a node proposal is countersigned only after the policy's
//   `checkNodeProposal` (the core's validation plus what the update does to the user's money). A
//   refusal signs nothing: the node's proposal is refused with its code (`refused`), the user's own
//   update throws before any request is sent.
// - A state from the node is adopted only when both signatures on it verify and it names this channel,
//   this user, the node and the chain; the card never goes back to a lower nonce.
// - One update at a time: every exchange that signs runs under one lock; waits run outside it, so node
//   proposals keep being answered while the user waits.
// - The websocket reconnects with backoff; after every (re)connection the card syncs with the node
//   (latest state, open proposal, the update left unanswered, uncredited deposits, payments' news).

import { MAX_UINT256, ZERO_ADDRESS, ZERO_BYTES32, keccak256, toHex } from '../bytes.js';
import { normalizeAddress } from '../address.js';
import { channelAddress as computeChannelAddress } from '../channel.js';
import {
  decodeHashLockState,
  decodeLinkedState,
  decodeWithdrawState,
  encodeLinkedState,
  encodePreimageResolver,
  encodeWithdrawResolver,
  encodeWithdrawState,
  withdrawStateCommitment,
} from '../definitions.js';
import * as ecies from '../ecies.js';
import { channelStateHash, transferIdOf } from '../encoding.js';
import { InsufficientBalanceError, ProtocolError } from '../errors.js';
import { metaHash, canonicalMeta } from '../meta.js';
import { DEFAULT_MIN_WINDOW, PAYMENT_KINDS, ValidationError, checkNodeProposal, checkWindow } from '../policy.js';
import { channelStateFromJson, channelStateToJson, parseBytes, updateFromJson, updateToJson } from '../serialization.js';
import { addressOfPublicKey, recoverStateSigner, SECP256K1_N, signState, signWithdraw, verifyStateSignatures } from '../signing.js';
import { DefinitionKind, assetIndex, findTransfer, makeUpdateContext } from '../types.js';
import { initiateUpdate, validateUpdate } from '../validation.js';
import { ChainReader } from './chain.js';
import {
  ChainError,
  ClientError,
  ClientTimeoutError,
  InvalidArgumentError,
  NodeError,
  NodeUnavailableError,
} from './errors.js';
import { Emitter } from './events.js';
import { linkUrl, parseLink } from './links.js';
import { findRate, leastAccepted, parseSlippage, quoteTake, rateOf, takeMovedOffer } from './swap.js';
import { NodeApi, fetchLinkStatus, sleep, unbound } from './node_api.js';

export const ETH = ZERO_ADDRESS;
export const WITHDRAW_TRANSFER_TIMEOUT = 3n * 24n * 3600n;
export const PAYMENT_TRANSFER_TIMEOUT = 24n * 3600n; // how long a payment's transfer can be disputed on chain
export const LINK_LIFETIME_SECONDS = 7 * 24 * 3600; // an unredeemed link can be taken back after this
export const FINAL_STATUSES = Object.freeze(['completed', 'refunded', 'failed']);
export const DEFAULT_WAIT_MS = 180_000;
export const RECONNECT_BACKOFF_MS = Object.freeze([200, 500, 1000, 2000, 5000, 10_000]);
const MAX_UPDATE_ATTEMPTS = 8;
const POLL_MS = 3000; // a push may be lost with the connection: ask the node this often while waiting
const DEPOSIT_POLL_MS = 1000;
const COLLATERAL_HINT_MS = 300; // a payment the node has not forwarded this long after its send waits for collateral
const HISTORY_PAGE = 200;
const RECONCILE_WAIT_MS = 60_000; // a node reconciling after a restore first reads the chain of the time in between
const RENEWABLE = new Set(['invalid_token', 'token_expired']);

const isObject = (value) => value !== null && typeof value === 'object' && !Array.isArray(value);
const nowSeconds = () => BigInt(Math.floor(Date.now() / 1000));

/** Wei as a BigInt > 0 (a BigInt, or a decimal string of one), else `invalid_amount`. */
export function checkAmount(amount, { allowZero = false } = {}) {
  let value = amount;
  if (typeof value === 'string' && /^[0-9]+$/.test(value)) value = BigInt(value);
  if (typeof value !== 'bigint') throw new InvalidArgumentError('invalid_amount', `amounts are BigInt wei, not ${typeof amount}`);
  if (value < 0n) throw new InvalidArgumentError('invalid_amount', `amount ${value} is negative`);
  if (value === 0n && !allowZero) throw new InvalidArgumentError('invalid_amount', 'amount must be more than zero');
  if (value > MAX_UINT256) throw new InvalidArgumentError('invalid_amount', `amount ${value} is above 2**256 - 1`);
  return value;
}

/** A checksummed address, else `invalid_address` (naming `what`). */
export function checkAddress(value, what = 'address') {
  try {
    return normalizeAddress(value, { field: what });
  } catch {
    throw new InvalidArgumentError('invalid_address', `${what} ${JSON.stringify(value)} is not an address`);
  }
}

function bytes32Argument(value, what) {
  const text = String(value ?? '').toLowerCase();
  const hex = text.startsWith('0x') ? text : `0x${text}`;
  if (!/^0x[0-9a-f]{64}$/.test(hex)) throw new InvalidArgumentError('invalid_argument', `${what} is 32 bytes of hex`);
  return hex;
}

function fromProtocol(error) {
  return error instanceof ProtocolError ? new ValidationError(error.code, error.message, { field: error.field }) : error;
}

function defaultRandom(length) {
  const bytes = new Uint8Array(length);
  globalThis.crypto.getRandomValues(bytes);
  return bytes;
}

export class CardClient {
  /** Use `await CardClient.connect({...})`. */
  constructor({
    nodeUrl,
    privateKey,
    fetch = globalThis.fetch,
    WebSocket = globalThis.WebSocket,
    chainRpcUrl = null,
    linkOrigin = null,
    minWindow = DEFAULT_MIN_WINDOW,
    random = defaultRandom,
  }) {
    if (typeof fetch !== 'function') throw new TypeError('CardClient needs a fetch');
    this.api = new NodeApi(nodeUrl, privateKey, { fetch });
    this.events = new Emitter();
    this.nodeUrl = this.api.baseUrl;
    this.linkOrigin = (linkOrigin ?? this.nodeUrl).replace(/\/+$/, '');
    this.address = this.api.address;
    this.fetch = unbound(fetch);
    this.WebSocket = WebSocket ?? null;
    this.chainRpcUrl = chainRpcUrl;
    this.minWindow = BigInt(minWindow);
    this.random = random;
    this.closed = false;
    this.chain = null;
    this.signed = null; // {state, nodeSignature, userSignature}: the latest doubly signed state
    this.pending = null; // the user's update signed and sent, not yet answered: {update, signature}
    this.payments = new Map(); // payment id -> record (amounts BigInt)
    this.withdrawals = new Map(); // transfer id -> the node's latest news
    this.#privateKey = privateKey;
  }

  #privateKey;
  #lockTail = Promise.resolve();
  #inboxTail = Promise.resolve();
  #waiters = new Set();
  #socket = null;
  #reconnectTimer = null;
  #failures = 0;
  #publicKeys = new Map();

  // -- connecting ------------------------------------------------------------------------------------

  /** Read the node's config, log in, open the channel (or restore it from the node, both signatures
   * checked), start the websocket and sync. Resolves once the card's state matches the node's. */
  static async connect(options) {
    const client = new CardClient(options);
    try {
      await client.#start();
    } catch (error) {
      client.close();
      throw error;
    }
    return client;
  }

  async #start() {
    const config = await this.api.request('GET', '/api/config', { authenticated: false });
    this.config = config;
    this.chainId = BigInt(config.chainId);
    this.nodeAddress = normalizeAddress(config.nodeAddress);
    this.supportedAssets = (config.supportedAssets ?? []).map((a) => normalizeAddress(a));
    this.definitions = new Map(Object.entries(config.transferDefinitions ?? {}).map(([kind, address]) => [normalizeAddress(address), kind]));
    this.disputeTimeout = BigInt(config.disputeTimeout);
    this.api.setLimits(config.limits ?? {});
    this.api.expectLogin({ nodeAddress: this.nodeAddress, chainId: this.chainId });
    const rpcUrl = this.chainRpcUrl ?? config.chainRpcUrl ?? null;
    if (rpcUrl) {
      this.chain = new ChainReader(rpcUrl, { fetch: this.fetch });
      const served = await this.chain.chainId();
      if (served !== this.chainId) throw new ChainError('wrong_chain', `the RPC serves chain ${served}, the node chain ${this.chainId}`);
    }
    this.channelAddress = computeChannelAddress({
      factory: config.contracts.ChannelFactory,
      mastercopy: config.contracts.Channel,
      node: this.nodeAddress,
      user: this.address,
      chainId: this.chainId,
    });
    await this.api.logIn();
    await this.#locked(async () => {
      const channel = await this.#fetchChannel();
      if (channel === null) await this.#openLocked();
      else this.#adopt(this.#verified(channel), { restoring: true });
    });
    if (this.WebSocket) {
      const synced = this.events.next('connection', (e) => e.status === 'synced', 60_000);
      this.#connectSocket();
      await synced;
    } else {
      await this.sync();
    }
  }

  /** Stop the websocket and every timer; the card signs nothing more. */
  close() {
    this.closed = true;
    clearTimeout(this.#reconnectTimer);
    this.api.detachSocket();
    try {
      this.#socket?.close();
    } catch {
      // already closed
    }
    this.#socket = null;
    for (const wake of this.#waiters) wake(false);
    this.#waiters.clear();
  }

  /** Revoke the token at the node (its sockets close), then close. */
  async logout() {
    try {
      await this.api.logOut();
    } finally {
      this.close();
    }
  }

  // -- events ----------------------------------------------------------------------------------------

  /** 'payment', 'balance', 'progress', 'connection', 'refused', 'error', 'swap.completed', 'swap.rates';
   * returns a function that unsubscribes. */
  on(event, listener) {
    return this.events.on(event, listener);
  }

  once(event, listener) {
    return this.events.once(event, listener);
  }

  off(event, listener) {
    this.events.off(event, listener);
  }

  // -- reading the channel ---------------------------------------------------------------------------

  get state() {
    if (this.signed === null) throw new ClientError('not_connected', 'the card is not connected');
    return this.signed.state;
  }

  /** The channel's on-chain address: where the user sends ETH or tokens to deposit. */
  get depositAddress() {
    return this.channelAddress;
  }

  /** Per asset the node serves: the user's and the node's balance, and what is locked in payments still
   * pending to the user (`pendingIn`) and from the user (`pendingOut`), in the latest doubly signed state. */
  balances() {
    const out = {};
    for (const assetId of this.supportedAssets) out[assetId] = this.balance(assetId);
    return out;
  }

  balance(assetId = ETH) {
    const asset = this.#asset(assetId);
    const state = this.state;
    const index = assetIndex(state, asset);
    const [node, user] = index === null ? [0n, 0n] : state.balances[index];
    let pendingIn = 0n;
    let pendingOut = 0n;
    for (const t of state.transfers) {
      if (t.assetId !== asset || !PAYMENT_KINDS.includes(this.definitions.get(t.transferDefinition))) continue;
      const locked = t.balance[0] + t.balance[1];
      if (t.initiator === this.address) pendingOut += locked;
      else if (t.responder === this.address) pendingIn += locked;
    }
    return { user, node, pendingIn, pendingOut };
  }

  /** The latest doubly signed state as JSON-ready values, with both signatures. */
  get channel() {
    const { state, nodeSignature, userSignature } = this.signed;
    return { channelAddress: state.channelAddress, nonce: state.nonce, state, nodeSignature, userSignature };
  }

  // -- syncing ---------------------------------------------------------------------------------------

  /** Match the node now (what every (re)connection does): the latest state, its open proposal, the
   * update left unanswered, uncredited deposits, the payments' news. */
  async sync() {
    await this.#locked(() => this.#syncLocked({ creditDeposits: true }));
    await this.#refreshPayments();
    await this.#pollWithdrawals();
    this.events.emit('connection', { status: 'synced', nonce: this.state.nonce });
  }

  async #refreshPayments() {
    try {
      const page = await this.api.get('/api/transfers', { limit: '50' });
      for (const payment of page?.transfers ?? []) this.#notePaymentNews(payment);
    } catch (error) {
      if (!(error instanceof NodeUnavailableError)) throw error;
    }
  }

  // -- deposits --------------------------------------------------------------------------------------

  /** After the user sent `assetId` to `depositAddress`: wait until the chain shows more than the channel
   * credits (progress `waiting_for_chain`), have it credited in a doubly signed state (`crediting`,
   * then `credited`). Resolves with `{assetId, amount, totalDepositsUser}`. Mirrors the Python client's
   * `deposit` after its transaction: the user proposes the credit, the node checks it against the chain
   * at its confirmation depth (`deposit_exceeds_chain` until it sees it: tried again), or the node's
   * watcher reports the deposit and the card proposes it then. */
  async waitForDeposit({ assetId = ETH, amount = null, timeoutMs = DEFAULT_WAIT_MS } = {}) {
    const asset = this.#asset(assetId);
    const chain = this.#needChain();
    const before = this.#processedUser(this.state, asset);
    const target = amount === null ? null : before + checkAmount(amount);
    const deadline = Date.now() + timeoutMs;
    this.#progress('deposit', 'waiting_for_chain', { assetId: asset, depositAddress: this.channelAddress });
    let userTotal;
    for (;;) {
      [, userTotal] = await chain.depositTotals(this.channelAddress, asset);
      if (target === null ? userTotal > before : userTotal >= target) break;
      if (this.#processedUser(this.state, asset) > before && target === null) {
        userTotal = this.#processedUser(this.state, asset); // credited meanwhile (the node's watcher)
        break;
      }
      if (Date.now() > deadline) throw new ClientTimeoutError(`no deposit to ${this.channelAddress} within ${timeoutMs} ms`);
      await this.#nextChange(DEPOSIT_POLL_MS);
    }
    this.#progress('deposit', 'crediting', { assetId: asset, totalDepositsUser: userTotal });
    await this.#ensureCredited(asset, userTotal, Math.max(1000, deadline - Date.now()));
    const total = this.#processedUser(this.state, asset);
    return { assetId: asset, amount: total - before, totalDepositsUser: total };
  }

  async #ensureCredited(asset, userTotal, timeoutMs) {
    const deadline = Date.now() + timeoutMs;
    while (this.#processedUser(this.state, asset) < userTotal) {
      await this.#locked(async () => {
        try {
          await this.#creditDepositLocked(asset);
        } catch (error) {
          if (!(error instanceof NodeError) || error.code !== 'deposit_exceeds_chain') throw error;
        }
      });
      if (this.#processedUser(this.state, asset) >= userTotal) return;
      if (Date.now() > deadline) throw new ClientTimeoutError(`the node did not credit the ${asset} deposit within ${timeoutMs} ms`);
      await this.#nextChange(Math.min(2000, deadline - Date.now()));
    }
  }

  /** Propose crediting what the chain shows at `block` (default: latest) beyond what is processed. */
  async #creditDepositLocked(asset, block = null) {
    const chain = this.#needChain();
    const latest = await chain.blockNumber();
    const at = block === null || block > latest ? latest : block;
    const [nodeTotal, userTotal] = await chain.depositTotals(this.channelAddress, asset, at);
    await this.#proposeLocked((state) => {
      const index = assetIndex(state, asset);
      const processed = index === null ? [0n, 0n] : state.processedDeposits[index];
      if (userTotal <= processed[1]) return null;
      // The node's processed total is in a state both signed; the reading may predate it.
      const totals = [nodeTotal > processed[0] ? nodeTotal : processed[0], userTotal];
      const update = {
        type: 'deposit',
        channelAddress: state.channelAddress,
        nonce: state.nonce + 1n,
        initiator: this.address,
        assetId: asset,
        totalDepositsNode: totals[0],
        totalDepositsUser: totals[1],
      };
      return { update, chainDeposits: new Map([[asset, totals]]) };
    });
  }

  // -- payments --------------------------------------------------------------------------------------

  /** Pay `amount` (BigInt wei) of `assetId` to the user `recipient` through the node: a Linked transfer
   * whose preimage travels encrypted to the recipient's key (the node relays it, cannot read it; the
   * recipient's client resolves it). Checked before anything is signed: the amount (`invalid_amount`),
   * the address (`invalid_address`, `bad_recipient`), the asset, the balance (the core's
   * `insufficient_balance`). With `wait` (default) resolves once the payment completed, with progress
   * `sent`, `waiting_for_collateral` (the node is topping up the receiver's channel first, or the receiver
   * is offline: a wait, not a failure), `completed`; without, once the node countersigned the sender side. */
  async send(recipient, amount, { assetId = ETH, meta = {}, wait = true, timeoutMs = DEFAULT_WAIT_MS } = {}) {
    const to = checkAddress(recipient, 'recipient');
    const value = checkAmount(amount);
    const asset = this.#asset(assetId);
    if (to === this.address || to === this.nodeAddress) throw new InvalidArgumentError('bad_recipient', 'a payment goes to another user of the node');
    this.#checkBalance(asset, value);
    const publicKey = await this.#publicKeyOf(to);
    const preimage = toHex(this.random(32));
    const encryptedPreimage = ecies.encrypt(publicKey, preimage, { ephemeralKey: this.#freshKey(), nonce: toHex(this.random(16)) });
    const paymentId = await this.#sendPayment({
      kind: DefinitionKind.LINKED,
      amount: value,
      asset,
      recipient: to,
      encodedState: encodeLinkedState({ lockHash: keccak256(preimage) }),
      meta: { ...meta, encryptedPreimage, recipient: to },
      secret: preimage,
    });
    this.#progress('send', 'sent', { paymentId, recipient: to, amount: value, assetId: asset });
    if (!wait) return this.payments.get(paymentId);
    return this.#waitDelivered(paymentId, timeoutMs);
  }

  /** Until the payment is completed (or failed / refunded), saying so when it waits for collateral: the
   * node forwards a payment right after countersigning the sender side when it holds the collateral in
   * the receiver's channel, so one the node still calls `pending` a moment later waits for its deposit
   * there (or for a receiver that is offline). */
  async #waitDelivered(paymentId, timeoutMs) {
    const deadline = Date.now() + timeoutMs;
    const hintAt = Date.now() + COLLATERAL_HINT_MS;
    let hinted = false;
    let nextPoll = hintAt;
    for (;;) {
      const record = this.payments.get(paymentId);
      if (record && FINAL_STATUSES.includes(record.status)) {
        this.#progress('send', record.status, { paymentId });
        return record;
      }
      if (Date.now() > deadline) throw new ClientTimeoutError(`payment ${paymentId} not settled within ${timeoutMs} ms`);
      if (Date.now() >= nextPoll) {
        nextPoll = Date.now() + POLL_MS;
        await this.#pollPayment(paymentId);
        if (!hinted && this.payments.get(paymentId)?.status === 'pending') {
          this.#progress('send', 'waiting_for_collateral', {
            paymentId,
            message: "the node is moving collateral into the receiver's channel (or the receiver is offline); the payment waits",
          });
        }
        hinted = true;
        continue;
      }
      await this.#nextChange(Math.max(20, Math.min(nextPoll, deadline) - Date.now()));
    }
  }

  /** A link payment: whoever holds its URL redeems it into their channel. Resolves once the node
   * registered it (it can be redeemed at once) with `{paymentId, secret, url}`; the URL is the one the
   * node and the CLI print, `<origin>/redeem#paymentId=…&secret=…` (the secret in the fragment). */
  async createLink(amount, { assetId = ETH, expiresIn = LINK_LIFETIME_SECONDS } = {}) {
    const value = checkAmount(amount);
    const asset = this.#asset(assetId);
    this.#checkBalance(asset, value);
    const secret = toHex(this.random(32));
    const paymentId = toHex(this.random(32));
    await this.#sendPayment({
      kind: DefinitionKind.LINKED,
      amount: value,
      asset,
      recipient: null,
      encodedState: encodeLinkedState({ lockHash: keccak256(secret) }),
      meta: { expiresAt: Math.floor(Date.now() / 1000) + expiresIn },
      secret,
      paymentId,
    });
    await this.#waitRegistered(paymentId);
    const url = linkUrl(this.linkOrigin, paymentId, secret);
    this.#progress('link', 'created', { paymentId, url });
    return { paymentId, secret, url };
  }

  /** A link's status before redeeming it (`link`: its URL, or `{paymentId, secret}`): `{status,
   * payment}`, status `pending` (it can be redeemed), `expired`, `redeemed` / `completed` (somebody
   * claimed it), `refunded` / `failed` (back to its sender), or `unknown` (no link opens with this
   * secret). Asked with the secret, which any holder of the link has (`fetchLinkStatus`). */
  async linkStatus(link) {
    const parsed = typeof link === 'string' ? parseLink(link) : link;
    const paymentId = bytes32Argument(parsed?.paymentId, 'paymentId');
    const secret = bytes32Argument(parsed?.secret, 'secret');
    try {
      const payment = await fetchLinkStatus({ nodeUrl: this.nodeUrl, paymentId, secret, fetch: this.fetch });
      return { status: payment.status, payment };
    } catch (error) {
      if (error instanceof NodeError && error.code === 'unknown_payment') return { status: 'unknown', payment: null };
      throw error;
    }
  }

  /** Claim a link payment into this channel (`link`: its URL, or `{paymentId, secret}`). Resolves once
   * this card resolved the transfer the node made for it. The node's refusals keep their code
   * (`already_redeemed`, `link_closed`, `link_expired`, `bad_preimage`, `unknown_payment`). */
  async redeemLink(link, { timeoutMs = DEFAULT_WAIT_MS } = {}) {
    const parsed = typeof link === 'string' ? parseLink(link) : link;
    const paymentId = bytes32Argument(parsed?.paymentId, 'paymentId');
    const secret = bytes32Argument(parsed?.secret, 'secret');
    if (this.payments.get(paymentId)?.direction === 'outgoing') {
      throw new InvalidArgumentError('bad_recipient', 'this is your own link: take it back with cancelPayment after it expires');
    }
    const answer = await this.api.post(`/api/transfers/${paymentId}/redeem`, { preimage: secret });
    this.#notePaymentNews(answer, { direction: 'incoming', secret });
    this.#progress('redeem', 'redeemed', { paymentId });
    await this.#locked(() => this.#followUpLocked()); // its transfer may have arrived before the answer
    const record = await this.#waitPayment(paymentId, FINAL_STATUSES, timeoutMs);
    this.#progress('redeem', record.status, { paymentId });
    return record;
  }

  /** Take back a payment nobody received (a link after it expired, one the node could not deliver). */
  async cancelPayment(paymentId) {
    const id = bytes32Argument(paymentId, 'paymentId');
    return this.#notePaymentNews(await this.api.post(`/api/transfers/${id}/cancel`, {}));
  }

  /** One payment of this user, as the node knows it (the card's own record when the node is unreachable). */
  async payment(paymentId) {
    const id = bytes32Argument(paymentId, 'paymentId');
    try {
      return this.#notePaymentNews(await this.api.get(`/api/transfers/${id}`));
    } catch (error) {
      if (this.payments.has(id) && (error instanceof NodeUnavailableError || error.code === 'unknown_payment')) return this.payments.get(id);
      throw error;
    }
  }

  /** The payments this user sent or received, newest first, with their statuses (`pending`,
   * `forwarded`, `completed`, `failed`, `refunded`); `before` (a payment id) pages on. The card's own
   * records when the node cannot be reached. */
  async history({ limit = HISTORY_PAGE, before = null } = {}) {
    if (!Number.isInteger(limit) || limit < 1 || limit > 500) throw new InvalidArgumentError('invalid_argument', `limit is 1 to 500, not ${limit}`);
    const params = { limit: String(limit) };
    if (before !== null) params.before = bytes32Argument(before, 'before');
    try {
      const page = await this.api.get('/api/transfers', params);
      return (page?.transfers ?? []).map((payment) => this.#notePaymentNews(payment));
    } catch (error) {
      if (!(error instanceof NodeUnavailableError)) throw error;
      return [...this.payments.values()].reverse().slice(0, limit);
    }
  }

  /** Until the payment is completed, refunded or failed, as this card knows it. */
  waitForPayment(paymentId, { timeoutMs = DEFAULT_WAIT_MS } = {}) {
    return this.#waitPayment(bytes32Argument(paymentId, 'paymentId'), FINAL_STATUSES, timeoutMs);
  }

  async #waitRegistered(paymentId) {
    const deadline = Date.now() + DEFAULT_WAIT_MS;
    for (;;) {
      const known = this.payments.get(paymentId);
      if (known && known.registered) return;
      try {
        this.#notePaymentNews(await this.api.get(`/api/transfers/${paymentId}`));
        return;
      } catch (error) {
        if (!(error instanceof NodeError) || error.code !== 'unknown_payment') throw error;
      }
      if (Date.now() > deadline) throw new ClientTimeoutError(`the node did not register payment ${paymentId}`);
      await this.#nextChange(500);
    }
  }

  async #waitPayment(paymentId, statuses, timeoutMs) {
    const deadline = Date.now() + timeoutMs;
    let nextPoll = Date.now() + POLL_MS;
    for (;;) {
      const record = this.payments.get(paymentId);
      if (record && statuses.includes(record.status)) return record;
      if (Date.now() > deadline) throw new ClientTimeoutError(`payment ${paymentId} not settled within ${timeoutMs} ms`);
      if (Date.now() >= nextPoll) {
        nextPoll = Date.now() + POLL_MS;
        await this.#pollPayment(paymentId);
        continue;
      }
      await this.#nextChange(Math.max(50, Math.min(nextPoll, deadline) - Date.now()));
    }
  }

  async #pollPayment(paymentId) {
    try {
      this.#notePaymentNews(await this.api.get(`/api/transfers/${paymentId}`));
    } catch (error) {
      if (!(error instanceof NodeUnavailableError) && !(error instanceof NodeError && error.code === 'unknown_payment')) throw error;
    }
  }

  /** The recipient's public key from the node, checked to be that address's (a node handing out its
   * own key would read the preimage). */
  async #publicKeyOf(user) {
    if (this.#publicKeys.has(user)) return this.#publicKeys.get(user);
    const answer = await this.api.get(`/api/users/${user}/key`);
    let owner;
    try {
      owner = addressOfPublicKey(parseBytes(answer?.publicKey, { field: 'publicKey' }));
    } catch (error) {
      throw fromProtocol(error);
    }
    if (owner !== user) throw new ValidationError('bad_public_key', `the node's key for ${user} belongs to ${owner}`);
    this.#publicKeys.set(user, answer.publicKey);
    return answer.publicKey;
  }

  async #sendPayment({ kind, amount, asset, recipient, encodedState, meta, secret, paymentId = null }) {
    const id = paymentId ?? toHex(this.random(32));
    try {
      canonicalMeta(meta);
    } catch (error) {
      throw fromProtocol(error);
    }
    const record = {
      paymentId: id,
      direction: 'outgoing',
      kind,
      sender: this.address,
      recipient: recipient ?? null,
      assetId: asset,
      amount,
      status: 'sending',
      failure: null,
      meta,
      secret,
    };
    await this.#locked(async () => {
      this.payments.set(id, record);
      try {
        await this.#proposeLocked((state) => ({
          update: {
            type: 'create',
            channelAddress: state.channelAddress,
            nonce: state.nonce + 1n,
            initiator: this.address,
            assetId: asset,
            amount,
            transferDefinition: this.#definition(kind),
            paymentId: id,
            encodedState,
            transferTimeout: PAYMENT_TRANSFER_TIMEOUT,
            metaHash: metaHash(meta),
          },
          chainDeposits: new Map(),
        }), { meta });
      } catch (error) {
        const unanswered = this.pending?.update.type === 'create' && this.pending.update.paymentId === id;
        if (!unanswered) this.payments.delete(id); // refused: no signed create of it can still apply
        if (error instanceof NodeUnavailableError) error.paymentId = id;
        throw error;
      }
      const known = this.payments.get(id);
      if (known.status === 'sending') this.#savePayment({ ...known, status: 'pending' });
    });
    return id;
  }

  #checkBalance(asset, amount) {
    const { user } = this.balance(asset);
    if (amount > user) {
      throw new InsufficientBalanceError(`the channel holds ${user} of ${asset} for you, less than ${amount}`, { field: 'amount' });
    }
  }

  // -- swaps -----------------------------------------------------------------------------------------

  /** The node's swap offer (`GET /api/swap/rates`, public): per direction its `rate` (take base units
   * per give base unit, a fraction of decimal strings), mid price, spread and limits (`maxGive`), and
   * `stale`; the node pushes the same body as `swap.rates` when a price moves. */
  swapRates() {
    return this.api.request('GET', '/api/swap/rates', { authenticated: false });
  }

  /** Swap `amount` (BigInt base units) of the user's `fromAsset` for the node's `toAsset` at the node's
   * rate, in one doubly signed update; resolves the amount received (BigInt). The amount is the node's
   * offer when the call starts; when the rate moves before the swap lands (`rate_moved`) the card takes
   * the new offer if it is at most `maxSlippage` ("0.01": 1 %) below the first, else SlippageError
   * (`slippage_exceeded`). When the node holds too little `toAsset` in the channel the card asks it to
   * deposit first (`POST /api/swap/prepare`; progress `collateral`) and countersigns that credit. The
   * node's refusals keep their code (`swap_not_offered`, `stale_rate`, `below_tolerance`,
   * `insufficient_balance`; LimitError for `swap_over_limit`, `swap_daily_limit`, `exposure_limit`),
   * nothing moved. Emits `swap.completed` ({nonce, giveAssetId, giveAmount, takeAssetId, takeAmount}). */
  async swap(amount, fromAsset, toAsset, { maxSlippage = '0.01', timeoutMs = DEFAULT_WAIT_MS } = {}) {
    const give = checkAmount(amount);
    const giveAsset = this.#asset(fromAsset);
    const takeAsset = this.#asset(toAsset);
    if (giveAsset === takeAsset) throw new InvalidArgumentError('same_asset', 'a swap exchanges two different assets');
    const slippage = parseSlippage(maxSlippage);
    this.#checkBalance(giveAsset, give);
    const rate = rateOf(findRate(await this.swapRates(), giveAsset, takeAsset));
    const quoted = quoteTake(give, rate);
    if (quoted <= 0n) throw new InvalidArgumentError('amount_too_small', `${give} of ${giveAsset} buys nothing at the node's rate`);
    const least = leastAccepted(quoted, slippage);
    const deadline = Date.now() + timeoutMs;
    let take = quoted;
    this.#progress('swap', 'quoted', { giveAssetId: giveAsset, giveAmount: give, takeAssetId: takeAsset, takeAmount: take });
    for (let attempt = 0; attempt < MAX_UPDATE_ATTEMPTS; attempt++) {
      let next;
      try {
        // The node checks the amounts in the prepare as in the update: a moved rate is refused in both.
        if (this.balance(takeAsset).node < take) await this.#swapCollateral(giveAsset, give, takeAsset, take, deadline);
        next = await this.#locked(() =>
          this.#proposeLocked((state) => ({
            update: {
              type: 'swap',
              channelAddress: state.channelAddress,
              nonce: state.nonce + 1n,
              initiator: this.address,
              giveAssetId: giveAsset,
              giveAmount: give,
              takeAssetId: takeAsset,
              takeAmount: take,
            },
            chainDeposits: new Map(),
          })),
        );
      } catch (error) {
        const offered = String(error?.details?.offered ?? '');
        if (!(error instanceof NodeError) || error.code !== 'rate_moved' || !/^[0-9]+$/.test(offered)) throw error;
        take = takeMovedOffer({ quoted, offered: BigInt(offered), least });
        continue;
      }
      const done = { nonce: next.nonce, giveAssetId: giveAsset, giveAmount: give, takeAssetId: takeAsset, takeAmount: take };
      this.#progress('swap', 'completed', done);
      this.events.emit('swap.completed', done);
      return take;
    }
    throw new ClientError('update_contended', "the node's rate kept moving; try again");
  }

  /** Have the node deposit what the swap pays out (it checks the swap as the update would be first)
   * and wait until the channel credits it. */
  async #swapCollateral(giveAsset, give, takeAsset, take, deadline) {
    await this.api.post('/api/swap/prepare', {
      giveAssetId: giveAsset,
      giveAmount: give.toString(),
      takeAssetId: takeAsset,
      takeAmount: take.toString(),
    });
    this.#progress('swap', 'collateral', { takeAssetId: takeAsset, takeAmount: take });
    while (this.balance(takeAsset).node < take) {
      if (Date.now() > deadline) throw new ClientTimeoutError(`the node did not credit its ${takeAsset} for the swap in time`);
      // The credit comes as the node's proposal (a push); a lost push is made up by asking.
      if (!(await this.#nextChange(Math.min(POLL_MS, Math.max(0, deadline - Date.now()))))) {
        await this.#locked(() => this.#syncLocked());
      }
    }
  }

  // -- withdrawals -----------------------------------------------------------------------------------

  /** Cash out `amount` of `assetId` to `recipient` (default: the user's address); the node sends the
   * transaction and pays its gas. Progress: `requested` (the node countersigned the withdraw),
   * `submitted` (its transaction was sent: `transactionHash`), `mined` (the card read the receipt).
   * With `wait` (default) resolves `{transferId, transactionHash}` once mined; the node's limits raise
   * LimitError (`withdrawal_too_small`, `withdrawal_rate_limited`, `withdrawal_gas_limit`), nothing changed. */
  async withdraw(amount, { assetId = ETH, recipient = null, wait = true, timeoutMs = DEFAULT_WAIT_MS } = {}) {
    const value = checkAmount(amount);
    const asset = this.#asset(assetId);
    const to = recipient === null ? this.address : checkAddress(recipient, 'recipient');
    if (to === ZERO_ADDRESS || to === this.channelAddress) throw new InvalidArgumentError('invalid_address', 'withdraw to the channel or the zero address');
    this.#checkBalance(asset, value);
    const paymentId = toHex(this.random(32));
    const next = await this.#locked(() =>
      this.#proposeLocked((state) => {
        const nonce = state.nonce + 1n;
        const unsigned = {
          channelAddress: state.channelAddress,
          assetId: asset,
          recipient: to,
          amount: value,
          nonce,
          initiator: this.address,
          responder: state.node,
        };
        const initiatorSignature = signWithdraw(withdrawStateCommitment(unsigned, state.chainId), this.#privateKey);
        return {
          update: {
            type: 'create',
            channelAddress: state.channelAddress,
            nonce,
            initiator: this.address,
            assetId: asset,
            amount: value,
            transferDefinition: this.#definition(DefinitionKind.WITHDRAW),
            paymentId,
            encodedState: encodeWithdrawState({ ...unsigned, initiatorSignature }),
            transferTimeout: WITHDRAW_TRANSFER_TIMEOUT,
            metaHash: ZERO_BYTES32,
          },
          chainDeposits: new Map(),
        };
      }),
    );
    const transfer = next.transfers.find((t) => t.paymentId === paymentId);
    const transferId = transferIdOf(transfer);
    if (!this.withdrawals.has(transferId)) this.withdrawals.set(transferId, { transferId, status: 'requested' });
    this.#progress('withdraw', 'requested', { transferId, amount: value, assetId: asset, recipient: to });
    if (!wait) return { transferId, transactionHash: null };
    const news = await this.#waitWithdrawal(transferId, timeoutMs);
    if (news.status !== 'confirmed') throw new ChainError('withdrawal_failed', `withdrawal ${transferId} failed: ${news.error ?? ''}`);
    if (this.chain) {
      const receipt = await this.chain.receipt(news.transactionHash);
      if (!receipt || BigInt(receipt.status) !== 1n) throw new ChainError('withdrawal_failed', `the withdrawal's transaction ${news.transactionHash} is not mined as a success`);
    }
    this.#progress('withdraw', 'mined', { transferId, transactionHash: news.transactionHash });
    return { transferId, transactionHash: news.transactionHash };
  }

  async #waitWithdrawal(transferId, timeoutMs) {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const news = this.withdrawals.get(transferId);
      if (news && (news.status === 'failed' || (news.status === 'confirmed' && news.transactionHash))) return news;
      if (Date.now() > deadline) throw new ClientTimeoutError(`withdrawal ${transferId} not confirmed within ${timeoutMs} ms`);
      if (!(await this.#nextChange(Math.min(POLL_MS, deadline - Date.now())))) await this.#pollWithdrawals();
    }
  }

  async #pollWithdrawals() {
    const open = [...this.withdrawals.values()].filter((n) => !n.transactionHash && n.status !== 'failed');
    if (!open.length && ![...this.withdrawals.values()].some((n) => n.status !== 'confirmed' && n.status !== 'failed')) return;
    try {
      const listing = await this.api.get('/api/channel/withdrawals');
      for (const news of listing?.withdrawals ?? []) {
        const known = this.withdrawals.get(news.transferId);
        if (!known) continue;
        if (known.status !== news.status || (!known.transactionHash && news.transactionHash)) this.#noteWithdrawal(news, `withdrawal.${news.status}`);
      }
    } catch (error) {
      if (!(error instanceof NodeUnavailableError)) throw error;
    }
  }

  #noteWithdrawal(news, event) {
    const known = this.withdrawals.get(news.transferId) ?? {};
    const merged = { ...known, ...news, transactionHash: news.transactionHash || known.transactionHash || '' };
    this.withdrawals.set(news.transferId, merged);
    if (event === 'withdrawal.started' || event === 'withdrawal.submitted') {
      this.#progress('withdraw', 'submitted', { transferId: news.transferId, transactionHash: merged.transactionHash });
    } else if (event === 'withdrawal.failed') {
      this.#progress('withdraw', 'failed', { transferId: news.transferId, error: news.error ?? '' });
    }
    this.#signalChange();
  }

  // -- the update exchange (under the lock) ------------------------------------------------------------

  /** Sign and send the update `build(state)` makes from the latest state (`{update, chainDeposits}` or
   * null: nothing to do). When the node holds a proposal open, the card checks and countersigns it and
   * sends that answer with its own update built on top, in one request; on a stale state it syncs first.
   * Resolves the new state (null when `build` found nothing to do). */
  async #proposeLocked(build, { meta = null, withAnswer = null } = {}) {
    let prepared = withAnswer;
    for (let attempt = 0; attempt < MAX_UPDATE_ATTEMPTS; attempt++) {
      const base = prepared ? prepared.next : this.state;
      const built = build(base);
      if (built === null) {
        if (prepared) await this.#sendAnswerLocked(prepared);
        return null;
      }
      const { next, signature } = this.#signOwn(built.update, built.chainDeposits, base);
      const body = { update: updateToJson(built.update), signature };
      if (meta && Object.keys(meta).length) body.meta = meta;
      if (prepared) body.answer = { nonce: prepared.next.nonce.toString(), signature: prepared.signature };
      let answer;
      try {
        answer = await this.api.post('/api/channel/updates', body);
      } catch (error) {
        prepared = null;
        if (!(error instanceof NodeError)) throw error;
        if (error.code === 'update_pending' && error.details.proposal) {
          if (error.details.latest) this.#adoptIfNewer(this.#verified(error.details.latest));
          prepared = await this.#prepareAnswerLocked(error.details.proposal);
          if (prepared) continue;
        }
        if (!(await this.#recoverLocked(error))) {
          this.pending = null;
          throw error;
        }
        continue;
      }
      if (prepared) this.#adoptAnswered(prepared, prepared.nodeSignature);
      this.#acceptAnswer(answer, next, signature);
      if (prepared) this.#backgroundFollowUp();
      return next;
    }
    throw new ClientError('update_contended', 'the node kept proposing updates; try again');
  }

  /** Derive and sign the user's own update on `base`; kept as pending until answered. A refusal of the
   * core is thrown as it is (a ProtocolError with its code) and nothing is signed. */
  #signOwn(update, chainDeposits, base) {
    if (update.type === 'create') checkWindow('transferTimeout', update.transferTimeout, this.minWindow);
    const { state, signature } = initiateUpdate(base, update, this.#privateKey, this.#context(chainDeposits));
    this.pending = { update, signature };
    return { next: state, signature };
  }

  async #recoverLocked(error) {
    const latest = error.details?.latest;
    if (
      error.code === 'channel_reconciling' ||
      ((error.code === 'stale_nonce' || error.code === 'nonce_gap') && latest && this.#nodeBehind(this.#verified(latest)))
    ) {
      this.pending = null;
      await this.#reconcileLocked();
      return true;
    }
    if (error.code === 'update_pending') {
      if (error.details.latest) this.#adoptIfNewer(this.#verified(error.details.latest));
      await this.#answerProposalLocked(error.details.proposal);
      return true;
    }
    if (error.code === 'stale_nonce' || error.code === 'nonce_gap') {
      this.pending = null;
      if (error.details.latest) this.#adoptIfNewer(this.#verified(error.details.latest));
      else await this.#syncLocked();
      return true;
    }
    return false;
  }

  #acceptAnswer(answer, next, userSignature) {
    let nodeSignature;
    let signer;
    try {
      nodeSignature = parseBytes(answer?.nodeSignature, { field: 'nodeSignature', length: 65 });
      signer = recoverStateSigner(next, nodeSignature);
    } catch (error) {
      throw fromProtocol(error);
    }
    if (signer !== this.nodeAddress) throw new ValidationError('bad_signature', "the node's countersignature is not over the state the card signed");
    this.pending = null;
    this.#adopt({ state: next, nodeSignature, userSignature });
  }

  async #answerProposalLocked(proposal) {
    const prepared = await this.#prepareAnswerLocked(proposal);
    if (!prepared || (await this.#answerWithResolveLocked(prepared))) return;
    await this.#sendAnswerLocked(prepared);
    await this.#followUpLocked();
  }

  /** An incoming Linked or HashLock payment whose secret the card holds (decrypted from the proposal):
   * countersign it and resolve it in one request. True when the proposal is answered. */
  async #answerWithResolveLocked(prepared) {
    const { update } = prepared;
    if (update.type !== 'create' || update.initiator !== this.nodeAddress) return false;
    const kind = this.definitions.get(update.transferDefinition);
    if (kind !== DefinitionKind.LINKED && kind !== DefinitionKind.HASHLOCK) return false;
    const created = prepared.next.transfers.find((t) => t.createNonce === prepared.next.nonce);
    if (!created || created.responder !== this.address) return false;
    const secret = this.#decryptSecret(kind, update.encodedState, prepared.meta) || this.payments.get(update.paymentId)?.secret || '';
    const { lockHash, expiry } = lockOf(kind, created.encodedState);
    if (!secret || keccak256(secret) !== lockHash || (expiry !== null && nowSeconds() >= expiry)) return false;
    try {
      await this.#resolveIncomingLocked(transferIdOf(created), encodePreimageResolver({ preimage: secret }), { answer: prepared });
    } catch (error) {
      this.events.emit('error', { error, during: 'resolving an incoming payment' });
    }
    return this.state.nonce >= prepared.next.nonce;
  }

  /** The card's checked countersignature of the node's open proposal, or null when there is nothing to
   * answer or the card refuses (emitted as 'refused', nothing signed). */
  async #prepareAnswerLocked(proposal) {
    if (!isObject(proposal) || !proposal.update) return null;
    let update;
    let nodeSignature;
    try {
      update = updateFromJson(proposal.update);
      nodeSignature = parseBytes(proposal.nodeSignature, { field: 'nodeSignature', length: 65 });
    } catch (error) {
      this.#refused(new ValidationError('malformed', `unreadable proposal: ${error.message}`), null);
      return null;
    }
    if (update.nonce <= this.state.nonce) return null; // answered already (here or by another device)
    if (update.nonce > this.state.nonce + 1n) {
      await this.#syncLocked({ answerProposal: false });
      if (update.nonce !== this.state.nonce + 1n) return null;
    }
    const chainDeposits = new Map();
    if (update.type === 'deposit' && this.chain) {
      chainDeposits.set(update.assetId, await this.chain.depositTotals(this.channelAddress, update.assetId));
    }
    const meta = proposal.meta ?? {};
    if (!isObject(meta)) {
      this.#refused(new ValidationError('bad_meta', "the proposal's meta is not an object"), update);
      return null;
    }
    const previous = this.state;
    let next;
    try {
      next = checkNodeProposal(previous, update, nodeSignature, this.#context(chainDeposits), { meta, minWindow: this.minWindow });
    } catch (error) {
      if (!(error instanceof ValidationError) && !(error instanceof ProtocolError)) throw error;
      this.#refused(fromProtocol(error), update);
      return null;
    }
    return { previous, update, next, nodeSignature, signature: signState(next, this.#privateKey), meta };
  }

  async #sendAnswerLocked(prepared) {
    let answer;
    try {
      answer = await this.api.post('/api/channel/countersign', { nonce: prepared.next.nonce.toString(), signature: prepared.signature });
    } catch (error) {
      if (!(error instanceof NodeError) || error.code !== 'no_proposal') throw error;
      await this.#syncLocked({ answerProposal: false }); // the node moved on (another device answered)
      return;
    }
    const answered = this.#verified(answer);
    if (channelStateHash(answered.state) !== channelStateHash(prepared.next)) {
      throw new ValidationError('state_mismatch', 'the node stored a different state than the proposal');
    }
    this.#adoptAnswered(prepared, answered.nodeSignature);
  }

  #adoptAnswered(prepared, nodeSignature) {
    this.#adopt({ state: prepared.next, nodeSignature, userSignature: prepared.signature });
    this.#noteCountersigned(prepared.previous, prepared.update, prepared.meta);
  }

  #backgroundFollowUp() {
    this.#background(() => this.#locked(() => this.#followUpLocked()), 'follow-up');
  }

  #refused(error, update) {
    this.events.emit('refused', { code: error.code, message: error.message, update: update ? updateToJson(update) : null });
  }

  /** What the user owes the channel after a change: resolve the node's withdraw transfers (reclaimed
   * collateral) with the user's commitment signature; resolve incoming payments whose secret the card
   * holds; cancel incoming HashLocks that expired. */
  async #followUpLocked() {
    for (const transfer of this.state.transfers) {
      if (transfer.initiator !== this.state.node || transfer.responder !== this.address) continue;
      const kind = this.definitions.get(transfer.transferDefinition);
      if (kind === DefinitionKind.WITHDRAW) await this.#resolveNodeWithdrawLocked(transferIdOf(transfer));
      else if (kind === DefinitionKind.LINKED || kind === DefinitionKind.HASHLOCK) await this.#settleIncomingLocked(transferIdOf(transfer), kind);
    }
  }

  async #settleIncomingLocked(transferId, kind) {
    const transfer = findTransfer(this.state, transferId);
    if (!transfer) return;
    const { lockHash, expiry } = lockOf(kind, transfer.encodedState);
    let resolver = null;
    if (expiry !== null && nowSeconds() >= expiry) {
      resolver = encodePreimageResolver({ preimage: ZERO_BYTES32 });
    } else {
      const secret = this.payments.get(transfer.paymentId)?.secret;
      if (secret && keccak256(secret) === lockHash) resolver = encodePreimageResolver({ preimage: secret });
    }
    if (resolver === null) return;
    try {
      await this.#resolveIncomingLocked(transferId, resolver);
    } catch (error) {
      if (!(error instanceof ClientError) && !(error instanceof ProtocolError) && !(error instanceof ValidationError)) throw error;
      this.events.emit('error', { error, during: 'settling an incoming payment' });
    }
  }

  /** Resolve the node's transfer to the user (with `answer`: the proposal that creates it, countersigned
   * in the same request); true when this call did it. */
  async #resolveIncomingLocked(transferId, resolver, { answer = null } = {}) {
    const previous = answer ? answer.next : this.state;
    const transfer = findTransfer(previous, transferId);
    const next = await this.#proposeLocked(
      (state) =>
        findTransfer(state, transferId) === null
          ? null // resolved meanwhile (by another device)
          : this.#resolveOf(state, transferId, resolver),
      { withAnswer: answer },
    );
    if (next === null || transfer === null) return false;
    const index = assetIndex(next, transfer.assetId);
    const paid = next.balances[index][1] > previous.balances[assetIndex(previous, transfer.assetId)][1];
    const record = this.payments.get(transfer.paymentId);
    if (record) this.#savePayment({ ...record, status: paid ? 'completed' : 'failed' });
    this.#signalChange();
    return true;
  }

  /** The user's resolve of `transferId` on `state`, as #proposeLocked takes it. */
  #resolveOf(state, transferId, encodedResolver) {
    const update = { type: 'resolve', channelAddress: state.channelAddress, nonce: state.nonce + 1n, initiator: this.address, transferId, encodedResolver };
    return { update, chainDeposits: new Map() };
  }

  async #resolveNodeWithdrawLocked(transferId) {
    try {
      await this.#proposeLocked((state) => {
        const transfer = findTransfer(state, transferId);
        if (!transfer) return null;
        const withdraw = decodeWithdrawState(transfer.encodedState);
        const responderSignature = signWithdraw(withdrawStateCommitment(withdraw, state.chainId), this.#privateKey);
        return this.#resolveOf(state, transferId, encodeWithdrawResolver({ responderSignature }));
      });
    } catch (error) {
      this.events.emit('error', { error, during: "resolving the node's withdraw" });
    }
  }

  /** Record what a node proposal the user countersigned did to the user's payments. */
  #noteCountersigned(previous, update, meta) {
    if (update.type === 'create') {
      const kind = this.definitions.get(update.transferDefinition);
      if (!PAYMENT_KINDS.includes(kind)) return;
      const known = this.payments.get(update.paymentId);
      this.#savePayment({
        paymentId: update.paymentId,
        direction: 'incoming',
        kind,
        sender: typeof meta.sender === 'string' ? meta.sender : this.nodeAddress,
        recipient: this.address,
        assetId: update.assetId,
        amount: update.amount,
        status: known && FINAL_STATUSES.includes(known.status) ? known.status : 'forwarded',
        failure: null,
        meta,
        secret: this.#decryptSecret(kind, update.encodedState, meta) || known?.secret || '',
      });
    } else if (update.type === 'resolve') {
      const transfer = findTransfer(previous, update.transferId);
      if (!transfer || transfer.initiator !== this.address) return;
      const record = this.payments.get(transfer.paymentId);
      if (!record) return;
      const index = assetIndex(previous, transfer.assetId);
      const refunded = this.state.balances[assetIndex(this.state, transfer.assetId)][1] > previous.balances[index][1];
      this.#savePayment({ ...record, status: refunded ? 'refunded' : 'completed' });
    }
  }

  /** The preimage the sender encrypted to this user, when it opens the transfer; else ''. */
  #decryptSecret(kind, encodedState, meta) {
    if (typeof meta?.encryptedPreimage !== 'string' || kind === DefinitionKind.SIGNED) return '';
    let preimage;
    try {
      preimage = ecies.decrypt(this.#privateKey, meta.encryptedPreimage);
    } catch {
      return '';
    }
    return keccak256(preimage) === lockOf(kind, encodedState).lockHash ? preimage : '';
  }

  async #syncLocked({ answerProposal = true, creditDeposits = false } = {}) {
    let channel = await this.#fetchChannel();
    if (channel === null && this.signed !== null) {
      await this.#reconcileLocked();
      channel = await this.#fetchChannel();
    }
    if (channel === null) throw new ClientError('node_lost_channel', 'the node has no record of this channel');
    if (channel.fenced || this.#nodeBehind(this.#verified(channel))) {
      await this.#reconcileLocked();
      channel = (await this.#fetchChannel()) ?? channel;
    }
    this.#adoptIfNewer(this.#verified(channel));
    const pending = this.pending;
    if (pending && pending.update.nonce === this.state.nonce + 1n && !channel.proposal) await this.#resendLocked(pending);
    if (answerProposal) {
      await this.#answerProposalLocked(channel.proposal);
      await this.#followUpLocked();
    }
    if (creditDeposits && this.chain) {
      for (const asset of this.supportedAssets) {
        try {
          await this.#creditDepositLocked(asset);
        } catch (error) {
          if (!(error instanceof NodeError) || error.code !== 'deposit_exceeds_chain') throw error;
          const [, userTotal] = await this.chain.depositTotals(this.channelAddress, asset);
          this.#background(() => this.#ensureCredited(asset, userTotal, DEFAULT_WAIT_MS), 'crediting a deposit');
        }
      }
    }
  }

  /** Send again exactly the update signed before the answer was lost (never a new one). */
  async #resendLocked({ update, signature }) {
    let next;
    try {
      next = validateUpdate(this.state, update, signature, this.#context(null, { lenient: true }));
    } catch {
      this.pending = null;
      return;
    }
    const body = { update: updateToJson(update), signature };
    const record = update.type === 'create' ? this.payments.get(update.paymentId) : null;
    if (record?.meta && metaHash(record.meta) === update.metaHash && Object.keys(record.meta).length) body.meta = record.meta;
    let answer;
    try {
      answer = await this.api.post('/api/channel/updates', body);
    } catch (error) {
      if (!(error instanceof NodeError)) throw error;
      this.pending = null;
      return;
    }
    this.#acceptAnswer(answer, next, signature);
  }

  // -- adopting states -----------------------------------------------------------------------------

  async #fetchChannel() {
    let channel;
    try {
      channel = await this.api.get('/api/channel');
    } catch (error) {
      if (error instanceof NodeError && error.code === 'no_channel') return null;
      throw error;
    }
    if (channel?.channelAddress !== this.channelAddress) {
      throw new ValidationError('channel_address_mismatch', `the node names channel ${channel?.channelAddress}, the card computes ${this.channelAddress}`);
    }
    return channel;
  }

  /** A doubly signed state from the node's JSON, checked to be this channel's and signed by both. */
  #verified(body) {
    let state;
    let nodeSignature;
    let userSignature;
    try {
      state = channelStateFromJson(body?.state);
      nodeSignature = parseBytes(body?.nodeSignature, { field: 'nodeSignature', length: 65 });
      userSignature = parseBytes(body?.userSignature, { field: 'userSignature', length: 65 });
    } catch (error) {
      throw new ValidationError('malformed', `the node sent an unreadable state: ${error.message}`, { field: error.field ?? null });
    }
    const expected = { channelAddress: this.channelAddress, chainId: this.chainId, node: this.nodeAddress, user: this.address };
    for (const [field, value] of Object.entries(expected)) {
      if (state[field] !== value) throw new ValidationError('wrong_channel', `the node's state has ${field} ${state[field]}, not ${value}`, { field });
    }
    try {
      verifyStateSignatures(state, nodeSignature, userSignature);
    } catch (error) {
      throw fromProtocol(error);
    }
    return { state, nodeSignature, userSignature };
  }

  #nodeBehind(nodeLatest) {
    return this.signed !== null && nodeLatest.state.nonce < this.signed.state.nonce;
  }

  // Show the node our latest doubly signed state: a node whose records are behind it (restored from a
  // backup) adopts it and signs nothing for the channel until then (docs/protocol.md, "Restored data").
  async #reconcileLocked() {
    const { state, nodeSignature, userSignature } = this.signed;
    const body = { state: channelStateToJson(state), nodeSignature: toHex(nodeSignature), userSignature: toHex(userSignature) };
    const deadline = Date.now() + RECONCILE_WAIT_MS;
    for (;;) {
      let answer;
      try {
        answer = await this.api.post('/api/channel/reconcile', body);
      } catch (error) {
        if (error instanceof NodeError && error.code === 'stale_state' && error.details.latest) {
          this.#adoptIfNewer(this.#verified(error.details.latest));
          return;
        }
        throw error;
      }
      this.#adoptIfNewer(this.#verified(answer));
      if (!answer.fenced) return;
      if (answer.waitingFor !== 'chain') {
        throw new ClientError('channel_fenced', 'the chain shows this channel at a later state than this card holds');
      }
      if (Date.now() > deadline) throw new ClientError('channel_reconciling', 'the node is still reading the chain before it signs again');
      await sleep(1000);
    }
  }

  #adoptIfNewer(signed) {
    if (this.signed === null || signed.state.nonce > this.signed.state.nonce) this.#adopt(signed);
  }

  #adopt(signed, { restoring = false } = {}) {
    const previous = this.signed?.state ?? null;
    const before = previous ? this.balances() : null;
    this.signed = signed;
    const { state } = signed;
    if (!restoring && previous) {
      for (const asset of state.assetIds) {
        const credited = this.#processedUser(state, asset) - this.#processedUser(previous, asset);
        if (credited > 0n) this.#progress('deposit', 'credited', { assetId: asset, amount: credited, totalDepositsUser: this.#processedUser(state, asset) });
      }
    }
    const after = this.balances();
    if (!before || JSON.stringify(before, bigintJson) !== JSON.stringify(after, bigintJson)) {
      this.events.emit('balance', { nonce: state.nonce, balances: after });
    }
    this.#signalChange();
  }

  async #openLocked() {
    checkWindow('timeout', this.disputeTimeout, this.minWindow);
    const update = {
      type: 'setup',
      channelAddress: this.channelAddress,
      nonce: 1n,
      initiator: this.address,
      chainId: this.chainId,
      node: this.nodeAddress,
      user: this.address,
      timeout: this.disputeTimeout,
    };
    const { state, signature } = initiateUpdate(null, update, this.#privateKey, this.#context(new Map()));
    const answer = await this.api.post('/api/channel', { update: updateToJson(update), signature });
    if (answer?.state?.nonce === '1') this.#acceptAnswer(answer, state, signature);
    else this.#adopt(this.#verified(answer), { restoring: true }); // opened meanwhile by another device
  }

  // -- payments' records ---------------------------------------------------------------------------

  /** Keep the node's news of a payment; the record as the card reports it. */
  #notePaymentNews(payment, { direction = null, secret = null } = {}) {
    if (!isObject(payment) || typeof payment.paymentId !== 'string') return payment;
    const id = payment.paymentId.toLowerCase();
    const known = this.payments.get(id);
    const sender = payment.sender ?? '';
    let status = String(payment.status ?? '');
    if (known && FINAL_STATUSES.includes(known.status) && !FINAL_STATUSES.includes(status)) status = known.status; // the node's news lags
    let amount;
    try {
      amount = BigInt(payment.amount ?? 0);
    } catch {
      amount = 0n;
    }
    return this.#savePayment({
      paymentId: id,
      direction: known?.direction ?? direction ?? (sender === this.address ? 'outgoing' : 'incoming'),
      kind: String(payment.kind ?? known?.kind ?? ''),
      sender,
      recipient: payment.recipient ?? null,
      assetId: payment.assetId ?? ETH,
      amount,
      status,
      failure: payment.failure ?? null,
      meta: known?.meta && Object.keys(known.meta).length ? known.meta : payment.meta ?? {},
      secret: secret ?? known?.secret ?? '',
      createdAt: payment.createdAt ?? known?.createdAt ?? null,
      updatedAt: payment.updatedAt ?? null,
      registered: true,
    });
  }

  #savePayment(record) {
    const known = this.payments.get(record.paymentId);
    const saved = { ...record, registered: Boolean(record.registered || known?.registered) };
    this.payments.set(record.paymentId, saved);
    if (!known || known.status !== saved.status) this.events.emit('payment', publicRecord(saved));
    this.#signalChange();
    return publicRecord(saved);
  }

  // -- the websocket ---------------------------------------------------------------------------------

  #connectSocket() {
    if (this.closed) return;
    this.api
      .freshToken()
      .then((token) => this.#openSocket(token))
      .catch((error) => {
        this.events.emit('error', { error, during: 'logging in for the websocket' });
        this.#socketLost(null);
      });
  }

  #openSocket(token) {
    if (this.closed) return;
    let ws;
    try {
      ws = new this.WebSocket(this.api.wsUrl);
    } catch (error) {
      this.events.emit('error', { error, during: 'opening the websocket' });
      this.#socketLost(null);
      return;
    }
    this.#socket = ws;
    let authenticated = false;
    let ended = false;
    const end = (code) => {
      if (ended) return;
      ended = true;
      if (this.#socket === ws) this.#socket = null;
      this.api.detachSocket();
      this.#socketLost(code);
    };
    ws.addEventListener('open', () => ws.send(JSON.stringify({ type: 'auth', token, id: 'auth' })));
    ws.addEventListener('message', (message) => {
      let frame;
      try {
        frame = JSON.parse(typeof message.data === 'string' ? message.data : String(message.data));
      } catch {
        return;
      }
      if (!isObject(frame)) return;
      if (!authenticated) {
        if (frame.type === 'authenticated') {
          authenticated = true;
          this.#failures = 0;
          this.api.attachSocket((out) => ws.send(JSON.stringify(out)));
          this.events.emit('connection', { status: 'connected' });
          this.#enqueue({ type: 'sync' });
        } else if (frame.type === 'error') {
          if (RENEWABLE.has(frame.code)) this.api.token = '';
          ws.close();
        }
        return;
      }
      if (frame.type === 'event') this.#enqueue(frame);
      else if (frame.type === 'response') this.api.socketResponse(frame);
      else if (frame.type === 'error' && ['token_expired', 'logged_out', 'invalid_token'].includes(frame.code)) this.api.token = '';
    });
    ws.addEventListener('close', (event) => end(event?.code ?? null));
    ws.addEventListener('error', () => {
      try {
        ws.close();
      } catch {
        // closing already
      }
      end(null);
    });
  }

  #socketLost(code) {
    if (this.closed) return;
    if (code === 4401) this.api.token = ''; // the token ended: log in again before reconnecting
    const attempt = this.#failures + 1;
    const delay = RECONNECT_BACKOFF_MS[Math.min(this.#failures, RECONNECT_BACKOFF_MS.length - 1)];
    this.#failures += 1;
    this.events.emit('connection', { status: 'lost', attempt, retryInMs: delay, code });
    clearTimeout(this.#reconnectTimer);
    this.#reconnectTimer = setTimeout(() => this.#connectSocket(), delay);
  }

  /** Test hook and UI action: drop the socket now (it reconnects and resyncs like after any drop). */
  dropConnection() {
    this.#socket?.close();
  }

  /** The node's pushes and the syncs, handled one at a time, in order. */
  #enqueue(frame) {
    this.#inboxTail = this.#inboxTail.then(async () => {
      if (this.closed) return;
      try {
        await this.#handleFrame(frame);
      } catch (error) {
        this.events.emit('error', { error, during: frame.event ?? frame.type });
        if (frame.type === 'sync' && !this.closed) {
          await sleep(1000);
          this.#enqueue(frame); // a sync must happen: try again
        }
      }
    });
  }

  async #handleFrame(frame) {
    if (frame.type === 'sync') {
      await this.sync();
      return;
    }
    const event = String(frame.event);
    const payload = isObject(frame.payload) ? frame.payload : {};
    if (event === 'update.proposed') {
      await this.#locked(() => this.#answerProposalLocked(payload));
    } else if (event === 'channel.updated') {
      await this.#locked(async () => {
        if (BigInt(payload.nonce ?? 0) > this.state.nonce) {
          this.#adoptIfNewer(this.#verified(payload));
          await this.#followUpLocked();
        }
      });
    } else if (event === 'deposit.confirmed') {
      const asset = normalizeAddress(payload.assetId ?? ETH);
      const block = /^[0-9]+$/.test(String(payload.blockNumber ?? '')) ? BigInt(payload.blockNumber) : null;
      if (this.chain && this.supportedAssets.includes(asset)) await this.#locked(() => this.#creditDepositLocked(asset, block));
    } else if (event === 'swap.rates') {
      this.events.emit('swap.rates', payload);
    } else if (event.startsWith('withdrawal.')) {
      this.#noteWithdrawal(payload, event);
    } else if (event.startsWith('transfer.')) {
      this.#notePaymentNews(payload);
    }
  }

  // -- helpers ---------------------------------------------------------------------------------------

  /** Run `fn` alone: every exchange that signs runs under this lock. */
  async #locked(fn) {
    const previous = this.#lockTail;
    let release;
    this.#lockTail = new Promise((resolve) => {
      release = resolve;
    });
    await previous;
    try {
      return await fn();
    } finally {
      release();
    }
  }

  #background(work, during) {
    if (this.closed) return;
    Promise.resolve()
      .then(work)
      .catch((error) => {
        if (!this.closed) this.events.emit('error', { error, during });
      });
  }

  #signalChange() {
    const waiters = [...this.#waiters];
    this.#waiters.clear();
    for (const wake of waiters) wake(true);
  }

  /** Until the card's state or records change next (true), or `ms` pass (false). */
  #nextChange(ms) {
    if (this.closed) return Promise.resolve(false);
    return new Promise((resolve) => {
      const wake = (changed) => {
        clearTimeout(timer);
        this.#waiters.delete(wake);
        resolve(changed);
      };
      const timer = setTimeout(() => wake(false), Math.max(0, ms));
      this.#waiters.add(wake);
    });
  }

  #progress(action, step, details = {}) {
    this.events.emit('progress', { action, step, ...details });
  }

  #context(chainDeposits, { lenient = false } = {}) {
    const deposits = lenient ? new Map(this.supportedAssets.map((a) => [a, [MAX_UINT256, MAX_UINT256]])) : chainDeposits ?? new Map();
    return makeUpdateContext({ now: nowSeconds(), definitions: this.definitions, chainDeposits: deposits });
  }

  #definition(kind) {
    for (const [address, known] of this.definitions) if (known === kind) return address;
    throw new ClientError('unknown_definition', `the node serves no ${kind} definition`);
  }

  #asset(assetId) {
    const asset = checkAddress(assetId, 'assetId');
    if (!this.supportedAssets.includes(asset)) throw new InvalidArgumentError('unknown_asset', `the node does not serve asset ${asset}`);
    return asset;
  }

  #needChain() {
    if (!this.chain) throw new ClientError('no_chain_rpc', 'this needs a chain RPC: pass chainRpcUrl (the node publishes none)');
    return this.chain;
  }

  #processedUser(state, asset) {
    const index = state ? assetIndex(state, asset) : null;
    return index === null ? 0n : state.processedDeposits[index][1];
  }

  /** 32 random bytes that are a valid secp256k1 key. */
  #freshKey() {
    for (;;) {
      const candidate = toHex(this.random(32));
      const value = BigInt(candidate);
      if (value > 0n && value < SECP256K1_N) return candidate;
    }
  }
}

function lockOf(kind, encodedState) {
  if (kind === DefinitionKind.HASHLOCK) return decodeHashLockState(encodedState);
  return { lockHash: decodeLinkedState(encodedState).lockHash, expiry: null };
}

function bigintJson(_key, value) {
  return typeof value === 'bigint' ? value.toString() : value;
}

/** A payment record as the card shows it: no secret, no bookkeeping. */
function publicRecord(record) {
  const { secret: _secret, registered: _registered, ...shown } = record;
  return shown;
}
