// The card client's swaps against a live node offering ETH/TestToken at a fixed price (daphne + Celery
// on Postgres, Redis and anvil; the node's account holds TestToken). Run by tests/card/test_swap.py,
// which starts that node and sets:
//
//   NODE_URL, CHAIN_RPC_URL, FUNDER_KEY   as for card/js/test/live/
//   TOKEN           the TestToken's address (the pair's quote)
//   MAX_GIVE_ETH    the pair's maxPerSwap in wei (the most ETH one swap gives)
//   CARD_LIVE_REQUIRED=1   fail (never skip) when any of this, or the global WebSocket, is missing
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { addressOf } from '../../signing.js';
import { CardClient, ETH, LimitError, SlippageError, checkAddress, leastAccepted, parseSlippage, quoteTake, rateOf } from '../../client/index.js';

const { NODE_URL, CHAIN_RPC_URL, FUNDER_KEY, TOKEN, MAX_GIVE_ETH, CARD_LIVE_REQUIRED } = process.env;
const missing = Object.entries({ NODE_URL, CHAIN_RPC_URL, FUNDER_KEY, TOKEN, MAX_GIVE_ETH }).filter(([, v]) => !v).map(([k]) => k);
if (typeof WebSocket !== 'function') missing.push('a global WebSocket (node --experimental-websocket)');
if (missing.length && CARD_LIVE_REQUIRED) throw new Error(`the live swap tests need ${missing.join(', ')}`);
const skip = missing.length ? `needs a live node offering swaps: ${missing.join(', ')}` : false;

const MILLI = 10n ** 15n;
const WAIT_MS = 45_000;
const clients = [];
const token = () => checkAddress(TOKEN, 'TOKEN');

async function rpc(method, params = []) {
  const response = await fetch(CHAIN_RPC_URL, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ jsonrpc: '2.0', id: 1, method, params }),
  });
  const reply = await response.json();
  if (reply.error) throw new Error(`${method}: ${reply.error.message}`);
  return reply.result;
}

async function sendEth(to, value) {
  const hash = await rpc('eth_sendTransaction', [{ from: addressOf(FUNDER_KEY), to, value: '0x' + value.toString(16) }]);
  for (let i = 0; i < 100; i++) {
    const receipt = await rpc('eth_getTransactionReceipt', [hash]);
    if (receipt) return assert.equal(BigInt(receipt.status), 1n);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`transaction ${hash} not mined`);
}

/** A card whose view of GET /api/swap/rates is `rewrite(body)`: a quote taken before the node's price
 * moved (everything else reaches the node as it is). */
async function card({ rewrite = null } = {}) {
  const fetcher = async (url, init) => {
    const response = await fetch(url, init);
    if (!rewrite || !String(url).endsWith('/api/swap/rates')) return response;
    return new Response(JSON.stringify(rewrite(await response.json())), { status: 200, headers: { 'Content-Type': 'application/json' } });
  };
  const client = await CardClient.connect({ nodeUrl: NODE_URL, privateKey: '0x' + randomBytes(32).toString('hex'), chainRpcUrl: CHAIN_RPC_URL, fetch: fetcher });
  clients.push(client);
  client.seen = { 'swap.completed': [], progress: [], refused: [], error: [] };
  for (const event of Object.keys(client.seen)) client.on(event, (payload) => client.seen[event].push(payload));
  return client;
}

async function funded(amount, options) {
  const client = await card(options);
  const credited = client.waitForDeposit({ timeoutMs: WAIT_MS });
  await sendEth(client.depositAddress, amount);
  await credited;
  return client;
}

const entry = (rates, give, take) => rates.rates.find((r) => checkAddress(r.giveAssetId) === give && checkAddress(r.takeAssetId) === take);
const snapshot = (client) => ({ nonce: client.state.nonce, balances: client.balances() });

let alice;

before(async () => {
  if (skip) return;
  alice = await funded(50n * MILLI);
});

after(() => {
  for (const client of clients) client.close();
});

test('the node offers both directions of ETH/TestToken at its fixed price less the spread', { skip }, async () => {
  const rates = await alice.swapRates();
  const buy = entry(rates, ETH, token());
  const sell = entry(rates, token(), ETH);
  assert.ok(buy && sell, JSON.stringify(rates));
  assert.equal(buy.stale, false);
  assert.equal(quoteTake(10n ** 18n, rateOf(buy)), 1994n * 10n ** 18n); // 2000 less 30 bps
  assert.equal(BigInt(buy.maxGive), BigInt(MAX_GIVE_ETH));
});

test('ETH swapped for tokens: the node deposits its tokens first, the card receives the quote', { skip }, async () => {
  const before = alice.balances();
  const rate = rateOf(entry(await alice.swapRates(), ETH, token()));
  const received = await alice.swap(10n * MILLI, ETH, token(), { timeoutMs: WAIT_MS });
  assert.equal(received, quoteTake(10n * MILLI, rate));
  assert.equal(alice.balance(ETH).user, before[ETH].user - 10n * MILLI);
  assert.equal(alice.balance(token()).user, received);
  const steps = alice.seen.progress.filter((p) => p.action === 'swap').map((p) => p.step);
  assert.deepEqual(steps, ['quoted', 'collateral', 'completed']);
  const [done] = alice.seen['swap.completed'];
  assert.deepEqual(done, { nonce: alice.state.nonce, giveAssetId: ETH, giveAmount: 10n * MILLI, takeAssetId: token(), takeAmount: received });
  const atNode = await alice.api.get('/api/channel');
  assert.equal(BigInt(atNode.state.nonce), alice.state.nonce);
});

test('tokens swapped back for ETH the node already holds in the channel: no deposit first', { skip }, async () => {
  const give = alice.balance(token()).user / 2n;
  const ethBefore = alice.balance(ETH).user;
  alice.seen.progress.length = 0;
  const received = await alice.swap(give, token(), ETH, { maxSlippage: 0.005, timeoutMs: WAIT_MS });
  assert.ok(received > 0n && received < 5n * MILLI, String(received)); // about half of 10 milli-ETH, less the spread twice
  assert.equal(alice.balance(ETH).user, ethBefore + received);
  assert.deepEqual(alice.seen.progress.filter((p) => p.action === 'swap').map((p) => p.step), ['quoted', 'completed']);
});

test("a swap over the node's maxPerSwap is the node's LimitError and nothing moves", { skip }, async () => {
  const before = snapshot(alice);
  await assert.rejects(alice.swap(BigInt(MAX_GIVE_ETH) + MILLI, ETH, token(), { timeoutMs: WAIT_MS }), (error) => {
    assert.ok(error instanceof LimitError, String(error));
    assert.equal(error.code, 'swap_over_limit');
    return true;
  });
  assert.deepEqual(snapshot(alice), before);
});

test('a quote from before the price moved: the new offer is taken within maxSlippage, refused past it', { skip }, async () => {
  // The card was shown a rate 0.5 % better than the node's offer now.
  const better = (rates) => ({
    ...rates,
    rates: rates.rates.map((r) => ({ ...r, rate: { numerator: String(BigInt(r.rate.numerator) * 1005n), denominator: String(BigInt(r.rate.denominator) * 1000n) } })),
  });
  const bob = await funded(20n * MILLI, { rewrite: better });
  const offer = rateOf(entry(await alice.swapRates(), ETH, token()));
  const shown = rateOf(entry(await bob.swapRates(), ETH, token()));
  const give = 5n * MILLI;
  const before = snapshot(bob);
  await assert.rejects(bob.swap(give, ETH, token(), { maxSlippage: '0.001', timeoutMs: WAIT_MS }), (error) => {
    assert.ok(error instanceof SlippageError, String(error));
    assert.equal(error.code, 'slippage_exceeded');
    assert.equal(error.quoted, quoteTake(give, shown));
    assert.equal(error.offered, quoteTake(give, offer));
    assert.equal(error.least, leastAccepted(error.quoted, parseSlippage('0.001')));
    return true;
  });
  // Refused at the prepare (the node checks the amounts there as in the update): nothing moved.
  assert.equal(bob.balance(ETH).user, before.balances[ETH].user);
  assert.equal(bob.balance(token()).user, 0n);
  const received = await bob.swap(give, ETH, token(), { maxSlippage: '0.01', timeoutMs: WAIT_MS });
  assert.equal(received, quoteTake(give, offer));
  assert.equal(bob.balance(token()).user, received);
  for (const client of clients) {
    assert.deepEqual(client.seen.refused, [], 'no node proposal was refused');
    assert.deepEqual(client.seen.error.map(String), [], 'no background error');
  }
});
