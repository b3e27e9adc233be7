// The card client's pure parts, without a node: link URLs, the node's errors as typed errors, argument
// checks, the event emitter, and NodeApi's pace retries and token renewal over an injected fetch.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { loginMessage } from '../auth.js';
import { addressOf } from '../signing.js';
import {
  AuthenticationError,
  ClientTimeoutError,
  Emitter,
  InvalidArgumentError,
  LimitError,
  NodeApi,
  NodeError,
  NodeUnavailableError,
  checkAddress,
  checkAmount,
  errorFromBody,
  linkUrl,
  paceWaitMs,
  parseLink,
  unavailableFromBody,
} from '../client/index.js';

const ID = '0x' + 'ab'.repeat(32);
const SECRET = '0x' + '0c'.repeat(32);
const KEY = '0x' + '11'.repeat(32);
const NODE = '0x' + '22'.repeat(20);

test('a link URL is the one the node and the CLI print, and parses back', () => {
  const url = linkUrl('http://127.0.0.1:8000/', ID, SECRET.toUpperCase().replace('0X', '0x'));
  assert.equal(url, `http://127.0.0.1:8000/redeem#paymentId=${ID}&secret=${SECRET}`);
  assert.deepEqual(parseLink(url), { origin: 'http://127.0.0.1:8000', paymentId: ID, secret: SECRET });
  assert.deepEqual(parseLink(`paymentId=${ID}&secret=${SECRET}`), { origin: null, paymentId: ID, secret: SECRET });
});

test('a link without a valid id or secret, or off the redeem path, is refused (bad_link)', () => {
  for (const bad of [`http://x/redeem#paymentId=0x12&secret=${SECRET}`, `http://x/redeem#paymentId=${ID}`, `http://x/send#paymentId=${ID}&secret=${SECRET}`]) {
    assert.throws(() => parseLink(bad), (e) => e instanceof InvalidArgumentError && e.code === 'bad_link', bad);
  }
  assert.throws(() => linkUrl('http://x', '0x12', SECRET), InvalidArgumentError);
});

test("the node's error answers become typed errors carrying its code, status and details", () => {
  const limit = errorFromBody(429, { error: { code: 'withdrawal_rate_limited', message: 'later', retryAfter: 30 } });
  assert.ok(limit instanceof LimitError && limit instanceof NodeError);
  assert.deepEqual([limit.code, limit.status, limit.details], ['withdrawal_rate_limited', 429, { retryAfter: 30 }]);
  const auth = errorFromBody(401, { error: { code: 'token_expired', message: 'log in again' } });
  assert.ok(auth instanceof AuthenticationError);
  const redeemed = errorFromBody(409, { error: { code: 'already_redeemed', message: 'This link was redeemed already.' } });
  assert.deepEqual([redeemed.constructor, redeemed.code, redeemed.status], [NodeError, 'already_redeemed', 409]);
  const shapeless = errorFromBody(418, 'teapot');
  assert.deepEqual([shapeless.code, shapeless.status], ['http_418', 418]);
  const chain = unavailableFromBody(503, { error: { code: 'chain_unavailable', message: 'RPC down' } }, 'GET /api/x');
  assert.ok(chain instanceof NodeUnavailableError);
  assert.equal(chain.code, 'chain_unavailable');
  assert.equal(unavailableFromBody(502, null, 'GET /api/x').code, 'node_unavailable');
});

test('amounts are BigInt wei above zero, addresses are checksummed; anything else is refused before signing', () => {
  assert.equal(checkAmount(5n), 5n);
  assert.equal(checkAmount('7'), 7n);
  for (const bad of [0n, -1n, 1.5, 2 ** 53, '1e18', 2n ** 256n]) {
    assert.throws(() => checkAmount(bad), (e) => e instanceof InvalidArgumentError && e.code === 'invalid_amount', String(bad));
  }
  assert.equal(checkAmount(0n, { allowZero: true }), 0n);
  assert.equal(checkAddress('0x' + 'ab'.repeat(20)), '0xABaBaBaBABabABabAbAbABAbABabababaBaBABaB');
  for (const bad of ['0x1234', 'alice', null]) {
    assert.throws(() => checkAddress(bad), (e) => e.code === 'invalid_address', String(bad));
  }
});

test("a pace refusal's wait is its retryAfter, 1 s when it names none, at most 10 s", () => {
  assert.equal(paceWaitMs({ details: { retryAfter: 0.25 } }), 250);
  assert.equal(paceWaitMs({ details: {} }), 1000);
  assert.equal(paceWaitMs({ details: { retryAfter: 600 } }), 10_000);
});

test('the emitter isolates a failing listener and waits for the next matching event', async () => {
  const events = new Emitter();
  const errors = [];
  events.on('error', (e) => errors.push(e));
  events.on('payment', () => {
    throw new Error('a screen bug');
  });
  const seen = [];
  events.on('payment', (p) => seen.push(p.id));
  const next = events.next('payment', (p) => p.id === 2, 1000);
  events.emit('payment', { id: 1 });
  events.emit('payment', { id: 2 });
  assert.deepEqual(await next, { id: 2 });
  assert.deepEqual(seen, [1, 2]);
  assert.equal(errors.length, 2);
  await assert.rejects(events.next('payment', () => true, 10), ClientTimeoutError);
});

/** A fetch answering from `routes` (path -> function(request) -> [status, body]), recording the calls. */
function fakeFetch(routes) {
  const calls = [];
  const fetch = async (url, init) => {
    const { pathname } = new URL(url);
    calls.push({ path: pathname, auth: init.headers.Authorization ?? null });
    const [status, body] = routes[pathname]({ ...init, url });
    return { status, text: async () => JSON.stringify(body) };
  };
  return { fetch, calls };
}

const loginRoutes = (tokens) => ({
  '/api/auth/nonce': () => [200, { nonce: 'n1', message: loginMessage({ nodeAddress: NODE, chainId: 31337n, nonce: 'n1' }) }],
  '/api/auth/token': () => [201, { token: tokens.shift(), address: addressOf(KEY) }],
});

test('NodeApi sends a call again after the retryAfter of a pace refusal (nothing was done)', async () => {
  let answers = [
    [429, { error: { code: 'throttled', message: 'wait', retryAfter: 0.05 } }],
    [200, { ok: true }],
  ];
  const { fetch, calls } = fakeFetch({ ...loginRoutes(['t1']), '/api/config': () => answers.shift() });
  const api = new NodeApi('http://node', KEY, { fetch });
  api.token = 't0';
  assert.deepEqual(await api.get('/api/config'), { ok: true });
  assert.equal(api.pacedRetries, 1);
  assert.equal(calls.length, 2);
  answers = [[429, { error: { code: 'withdrawal_rate_limited', message: 'an hour', retryAfter: 3600 } }]];
  await assert.rejects(api.get('/api/config'), LimitError); // a limit, not the pace: never retried
});

test('NodeApi renews an expired token by logging in again, once, and signs only this node’s login message', async () => {
  const { fetch, calls } = fakeFetch({
    ...loginRoutes(['fresh']),
    '/api/channel': ({ headers }) => (headers.Authorization === 'Bearer fresh' ? [200, { nonce: '1' }] : [401, { error: { code: 'token_expired', message: 'expired' } }]),
  });
  const api = new NodeApi('http://node', KEY, { fetch });
  api.expectLogin({ nodeAddress: NODE, chainId: 31337n });
  api.token = 'stale';
  assert.deepEqual(await api.get('/api/channel'), { nonce: '1' });
  assert.deepEqual(calls.map((c) => c.path), ['/api/channel', '/api/auth/nonce', '/api/auth/token', '/api/channel']);
  const other = new NodeApi('http://node', KEY, { fetch });
  other.expectLogin({ nodeAddress: '0x' + '33'.repeat(20), chainId: 31337n });
  await assert.rejects(other.logIn(), (e) => e instanceof AuthenticationError && e.code === 'bad_login_message');
});

test('NodeApi turns no answer into NodeUnavailableError', async () => {
  const api = new NodeApi('http://node', KEY, {
    fetch: async () => {
      throw new TypeError('fetch failed');
    },
  });
  await assert.rejects(api.request('GET', '/api/config', { authenticated: false }), (e) => e instanceof NodeUnavailableError && e.code === 'node_unavailable');
});
