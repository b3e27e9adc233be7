// The node's REST API over `fetch` (the browser's, or Node's, or one passed in), a mirror of
// connext/client/node_api.py: login (the node's nonce signed as the login message), a bearer token
// renewed by logging in again when the node says it expired, one error shape turned into typed errors.
//
// While the client's websocket is up, the channel update calls (SOCKET_PATHS) go over it as
// `{"type": "request"}` frames (same bodies, same answers); when it is down or drops before the answer,
// the call goes over REST (the node answers a repeated update or countersignature exactly as the first
// time). The client keeps to the node's pace (`limits` in /api/config): at most `socketRequestsInFlight`
// socket requests at once (the rest wait here, not in a 429), and a call refused for its pace (429
// `throttled` or `too_many_requests`: nothing was done) is sent again after the `retryAfter` it named.

import { loginMessage, signLogin } from '../auth.js';
import { addressOf } from '../signing.js';
import { AuthenticationError, NodeError, NodeUnavailableError, errorFromBody, unavailableFromBody } from './errors.js';

export const REQUEST_TIMEOUT_MS = 30_000;
export const SOCKET_PATHS = Object.freeze(new Set(['/api/channel/updates', '/api/channel/countersign']));
export const PACE_CODES = Object.freeze(new Set(['throttled', 'too_many_requests']));
export const PACE_RETRIES = 3;
export const PACE_MAX_WAIT_MS = 10_000;
export const DEFAULT_SOCKET_REQUESTS_IN_FLIGHT = 4;
const RENEWABLE = new Set(['invalid_token', 'token_expired']);
const TOKEN_MARGIN_MS = 30_000; // renew this long before the node's expiry

class SocketLost extends Error {}

/** A counting semaphore: `run(fn)` waits for a free slot. */
class Slots {
  constructor(count) {
    this.free = count;
    this.waiting = [];
  }

  async run(fn) {
    if (this.free > 0) this.free -= 1;
    else await new Promise((resolve) => this.waiting.push(resolve));
    try {
      return await fn();
    } finally {
      const next = this.waiting.shift();
      if (next) next();
      else this.free += 1;
    }
  }
}

/** `fetch` callable as a method of anything: the browser's own refuses to run with another `this`
 * ("Illegal invocation"), as it would once kept in an object's field. */
export function unbound(fetch) {
  return (...args) => fetch(...args);
}

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** The wait (ms) a pace refusal names; 1 s when it names none; at most PACE_MAX_WAIT_MS. */
export function paceWaitMs(error) {
  const seconds = error?.details?.retryAfter;
  const ms = typeof seconds === 'number' && seconds > 0 ? seconds * 1000 : 1000;
  return Math.min(ms, PACE_MAX_WAIT_MS);
}

/** A link's status for whoever holds its secret, without a login (the redeem screen asks before the card
 * is unlocked): `POST /api/transfers/<paymentId>/link-status` with the secret in the body, never in a
 * URL. Resolves `{paymentId, status, assetId, amount, expiresAt}` (amount BigInt); status `pending`,
 * `expired`, `redeemed`, `completed`, `refunded` or `failed`. A wrong secret is the node's 404
 * `unknown_payment`, exactly as for a link that does not exist. */
export async function fetchLinkStatus({ nodeUrl, paymentId, secret, fetch = globalThis.fetch }) {
  const path = `/api/transfers/${paymentId}/link-status`;
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), REQUEST_TIMEOUT_MS);
  let response;
  let answer = null;
  try {
    response = await fetch(String(nodeUrl).replace(/\/+$/, '') + path, {
      method: 'POST',
      headers: { Accept: 'application/json', 'Content-Type': 'application/json' },
      body: JSON.stringify({ preimage: secret }),
      signal: abort.signal,
    });
    answer = await response.json().catch(() => null);
  } catch (error) {
    throw new NodeUnavailableError('node_unavailable', `POST ${path}: ${error.message ?? error}`);
  } finally {
    clearTimeout(timer);
  }
  if (response.status >= 500) throw unavailableFromBody(response.status, answer, `POST ${path}`);
  if (response.status >= 400) throw errorFromBody(response.status, answer);
  return { ...answer, amount: BigInt(answer.amount) };
}

export class NodeApi {
  /** `nodeUrl`: the node's origin (`http://host:port`); `fetch`: defaults to the global one. */
  constructor(nodeUrl, privateKey, { fetch = globalThis.fetch, now = () => Date.now() } = {}) {
    if (typeof fetch !== 'function') throw new TypeError('NodeApi needs a fetch (none is global here)');
    this.baseUrl = String(nodeUrl).replace(/\/+$/, '');
    this.fetch = unbound(fetch);
    this.now = now;
    this.privateKey = privateKey;
    this.address = addressOf(privateKey);
    this.token = '';
    this.tokenExpiresAt = 0;
    this.nodeAddress = null; // set by `expectLogin`: the login message must name this node and chain
    this.chainId = null;
    this.socketSend = null;
    this.waiting = new Map();
    this.nextRequestId = 1;
    this.slots = new Slots(DEFAULT_SOCKET_REQUESTS_IN_FLIGHT);
    this.socketRequests = 0; // calls sent over the socket so far
    this.pacedRetries = 0; // calls sent again after the node refused them for the pace
    this.loggingIn = null;
  }

  get wsUrl() {
    const url = new URL(this.baseUrl);
    return `${url.protocol === 'https:' ? 'wss' : 'ws'}://${url.host}/ws/v1`;
  }

  /** Keep to the node's limits from /api/config (before any request is under way). */
  setLimits(limits) {
    const inFlight = limits?.socketRequestsInFlight;
    if (Number.isInteger(inFlight) && inFlight >= 1) this.slots = new Slots(inFlight);
  }

  /** Sign only a login message that names this node and chain (a page cannot have the card sign
   * another node's login, or any other text, with the user's key). */
  expectLogin({ nodeAddress, chainId }) {
    this.nodeAddress = nodeAddress;
    this.chainId = chainId;
  }

  // -- login -----------------------------------------------------------------------------------------

  /** Sign the node's login nonce (EIP-191) and keep the bearer token it issues. One at a time. */
  logIn() {
    this.loggingIn ??= this.#logIn().finally(() => {
      this.loggingIn = null;
    });
    return this.loggingIn;
  }

  async #logIn() {
    const challenge = await this.request('GET', '/api/auth/nonce', { params: { address: this.address }, authenticated: false });
    let message = challenge?.message;
    if (this.nodeAddress !== null) {
      const expected = loginMessage({ nodeAddress: this.nodeAddress, chainId: this.chainId, nonce: String(challenge?.nonce) });
      if (message !== expected) {
        throw new AuthenticationError('bad_login_message', 'the node asked to sign a login message for another node or chain', 401);
      }
      message = expected;
    }
    const issued = await this.request('POST', '/api/auth/token', {
      body: { address: this.address, nonce: challenge.nonce, signature: signLogin(message, this.privateKey) },
      authenticated: false,
    });
    this.token = String(issued.token);
    const expires = Date.parse(issued.expires_at ?? '');
    this.tokenExpiresAt = Number.isFinite(expires) ? expires : 0;
    return this.token;
  }

  /** A token good for a while yet (renewed ahead of its expiry). */
  async freshToken() {
    if (!this.token || (this.tokenExpiresAt && this.now() > this.tokenExpiresAt - TOKEN_MARGIN_MS)) await this.logIn();
    return this.token;
  }

  /** Revoke the token at the node (its sockets close there) and forget it. */
  async logOut() {
    if (this.token) await this.#requestOnce('POST', '/api/auth/logout', { authenticated: true });
    this.token = '';
  }

  // -- requests ------------------------------------------------------------------------------------

  get(path, params = null) {
    return this.request('GET', path, { params });
  }

  async post(path, body) {
    if (SOCKET_PATHS.has(path) && this.socketSend !== null) {
      try {
        return await this.paced(() => this.slots.run(() => this.#socketRequest('POST', path, body)));
      } catch (error) {
        if (error instanceof SocketLost) {
          // the node answers the same call over REST exactly as it would have here
        } else if (error instanceof AuthenticationError && RENEWABLE.has(error.code)) {
          // REST renews the token and sends the call again
        } else {
          throw error;
        }
      }
    }
    return this.request('POST', path, { body });
  }

  /** `call()`, sent again (up to PACE_RETRIES times) after the wait the node names when it refuses it
   * for the caller's pace; any other answer or error is the caller's. */
  async paced(call) {
    for (let attempt = 0; ; attempt++) {
      try {
        return await call();
      } catch (error) {
        if (!(error instanceof NodeError) || error.status !== 429 || !PACE_CODES.has(error.code) || attempt >= PACE_RETRIES) throw error;
        this.pacedRetries += 1;
        await sleep(paceWaitMs(error));
      }
    }
  }

  request(method, path, { body = null, params = null, authenticated = true } = {}) {
    return this.paced(async () => {
      if (authenticated && (!this.token || (this.tokenExpiresAt && this.now() > this.tokenExpiresAt - TOKEN_MARGIN_MS))) {
        await this.logIn();
      }
      try {
        return await this.#requestOnce(method, path, { body, params, authenticated });
      } catch (error) {
        if (!authenticated || !(error instanceof AuthenticationError) || !RENEWABLE.has(error.code)) throw error;
      }
      await this.logIn(); // an expired or revoked token is renewed by logging in again, once
      return this.#requestOnce(method, path, { body, params, authenticated: true });
    });
  }

  async #requestOnce(method, path, { body = null, params = null, authenticated }) {
    let url = this.baseUrl + path;
    if (params && Object.keys(params).length) url += '?' + new URLSearchParams(params).toString();
    const headers = { Accept: 'application/json' };
    if (body !== null) headers['Content-Type'] = 'application/json';
    if (authenticated && this.token) headers.Authorization = `Bearer ${this.token}`;
    const abort = new AbortController();
    const timer = setTimeout(() => abort.abort(), REQUEST_TIMEOUT_MS);
    let status;
    let answer = null;
    try {
      const response = await this.fetch(url, {
        method,
        headers,
        body: body === null ? undefined : JSON.stringify(body),
        signal: abort.signal,
      });
      status = response.status;
      const text = await response.text();
      try {
        answer = text ? JSON.parse(text) : null;
      } catch {
        answer = null;
      }
    } catch (error) {
      throw new NodeUnavailableError('node_unavailable', `${method} ${path}: the node did not answer (${error?.message ?? error})`);
    } finally {
      clearTimeout(timer);
    }
    if (status < 400) return answer;
    if (status >= 500) throw unavailableFromBody(status, answer, `${method} ${path}`);
    throw errorFromBody(status, answer);
  }

  // -- requests over the websocket -----------------------------------------------------------------

  /** Send the update calls over an authenticated socket from now on (`send(frame)` writes one frame). */
  attachSocket(send) {
    this.socketSend = send;
  }

  /** The socket is gone: calls waiting on it go over REST. */
  detachSocket() {
    this.socketSend = null;
    const waiting = this.waiting;
    this.waiting = new Map();
    for (const { reject } of waiting.values()) reject(new SocketLost('the socket closed before the answer'));
  }

  /** Hand the node's `{"type": "response"}` frame to the call waiting for it. */
  socketResponse(frame) {
    const entry = this.waiting.get(frame.id);
    if (!entry) return;
    this.waiting.delete(frame.id);
    entry.resolve({ status: Number.isInteger(frame.status) ? frame.status : 500, body: frame.body });
  }

  async #socketRequest(method, path, body) {
    const send = this.socketSend;
    if (send === null) throw new SocketLost('no socket');
    const id = this.nextRequestId++;
    this.socketRequests += 1;
    let timer = null;
    const answered = new Promise((resolve, reject) => {
      this.waiting.set(id, { resolve, reject });
      timer = setTimeout(() => reject(new SocketLost('no answer over the socket in time')), REQUEST_TIMEOUT_MS);
    });
    let status;
    let answer;
    try {
      try {
        send({ type: 'request', id, method, path, body });
      } catch (error) {
        throw new SocketLost(String(error));
      }
      ({ status, body: answer } = await answered);
    } finally {
      clearTimeout(timer);
      this.waiting.delete(id);
    }
    if (status < 400) return answer;
    if (status >= 500) throw unavailableFromBody(status, answer, `${method} ${path}`);
    throw errorFromBody(status, answer);
  }
}
