// The card's client against a live node (daphne + Celery on Postgres, Redis and anvil): real requests,
// a real websocket, real chain transactions; nothing of the node is mocked. Run by
// tests/card/test_js_client_live.py, which starts the node and sets:
//
//   NODE_URL        the node's origin (http://127.0.0.1:PORT)
//   CHAIN_RPC_URL   anvil's JSON-RPC URL
//   FUNDER_KEY      a dev account's private key (anvil's accounts are unlocked: it sends with eth_sendTransaction)
//   CARD_LIVE_REQUIRED=1   fail (never skip) when any of this, or the global WebSocket, is missing
//
// By hand: node --experimental-websocket --test card/js/test/live/ with those set.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { addressOf } from '../../signing.js';
import { InsufficientBalanceError, ProtocolError } from '../../errors.js';
import { CardClient, ETH, InvalidArgumentError, LimitError, NodeError, parseLink } from '../../client/index.js';

const { NODE_URL, CHAIN_RPC_URL, FUNDER_KEY, CARD_LIVE_REQUIRED } = process.env;
const missing = Object.entries({ NODE_URL, CHAIN_RPC_URL, FUNDER_KEY }).filter(([, v]) => !v).map(([k]) => k);
if (typeof WebSocket !== 'function') missing.push('a global WebSocket (node --experimental-websocket)');
if (missing.length && CARD_LIVE_REQUIRED) throw new Error(`the live card tests need ${missing.join(', ')}`);
const skip = missing.length ? `needs a live node: ${missing.join(', ')}` : false;

const MILLI = 10n ** 15n;
const DEPOSIT = 50n * MILLI;
const WAIT_MS = 45_000;
const clients = [];
const newKey = () => '0x' + randomBytes(32).toString('hex');

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

/** The funder sends `value` wei to `to` (a plain transfer, as a user's wallet would) and it is mined. */
async function sendEth(to, value) {
  const hash = await rpc('eth_sendTransaction', [{ from: addressOf(FUNDER_KEY), to, value: '0x' + value.toString(16) }]);
  for (let i = 0; i < 100; i++) {
    const receipt = await rpc('eth_getTransactionReceipt', [hash]);
    if (receipt) return assert.equal(BigInt(receipt.status), 1n);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`transaction ${hash} not mined`);
}

async function card(privateKey = newKey()) {
  const client = await CardClient.connect({ nodeUrl: NODE_URL, privateKey, chainRpcUrl: CHAIN_RPC_URL });
  clients.push(client);
  client.seen = { payment: [], progress: [], connection: [], refused: [], error: [] };
  for (const event of Object.keys(client.seen)) client.on(event, (payload) => client.seen[event].push(payload));
  client.key = privateKey;
  return client;
}

/** Until the card holds no active transfer (the node settles a payment's sender side just after the
 * receiver resolved it): the baseline for "nothing changed". */
async function settled(client) {
  const deadline = Date.now() + WAIT_MS;
  while (client.state.transfers.length) {
    if (Date.now() > deadline) throw new Error(`transfers still active: ${client.state.transfers.length}`);
    await client.events.next('balance', () => true, WAIT_MS).catch(() => {});
  }
}

const refusedWith = async (promise, Kind, code) => {
  await assert.rejects(promise, (error) => {
    assert.ok(error instanceof Kind, `${error} is not a ${Kind.name}`);
    assert.equal(error.code, code, String(error));
    return true;
  });
};

let alice;
let bob;

before(async () => {
  if (skip) return;
  alice = await card();
});

after(() => {
  for (const client of clients) client.close();
});

test('a new card opens its channel with a setup update both signed', { skip }, () => {
  assert.equal(alice.state.nonce, 1n);
  assert.equal(alice.state.user, alice.address);
  assert.equal(alice.depositAddress, alice.state.channelAddress);
  assert.deepEqual(alice.balance(ETH), { user: 0n, node: 0n, pendingIn: 0n, pendingOut: 0n });
});

test('ETH sent to the deposit address is credited, with progress until credited', { skip }, async () => {
  const credited = alice.waitForDeposit({ timeoutMs: WAIT_MS });
  await sendEth(alice.depositAddress, DEPOSIT);
  const result = await credited;
  assert.equal(result.totalDepositsUser, DEPOSIT);
  assert.equal(alice.balance(ETH).user, DEPOSIT);
  const steps = alice.seen.progress.filter((p) => p.action === 'deposit').map((p) => p.step);
  assert.ok(steps.includes('waiting_for_chain') && steps.includes('credited'), steps.join(','));
});

test('a second card with the same key restores the channel from the node: same state, same balances', { skip }, async () => {
  const again = await card(alice.key);
  assert.equal(again.state.nonce, alice.state.nonce);
  assert.deepEqual(again.balances(), alice.balances());
  again.close();
});

test("A pays B and B's card sees the payment arrive over the websocket", { skip }, async () => {
  bob = await card();
  const received = new Promise((resolve) => bob.on('payment', (p) => p.direction === 'incoming' && p.status === 'completed' && resolve(p)));
  const sent = await alice.send(bob.address, MILLI, { timeoutMs: WAIT_MS });
  assert.equal(sent.status, 'completed');
  const incoming = await received;
  assert.equal(incoming.paymentId, sent.paymentId);
  assert.equal(incoming.amount, MILLI);
  assert.equal(bob.balance(ETH).user, MILLI);
  assert.ok(bob.api.socketRequests > 0, "B's countersignatures went over its socket");
  assert.equal(alice.balance(ETH).user, DEPOSIT - MILLI);
  const history = await alice.history();
  assert.equal(history[0].paymentId, sent.paymentId);
  assert.equal(history[0].status, 'completed');
});

test("a link A makes is redeemed by C; a second redeem is refused with the node's code", { skip }, async () => {
  const link = await alice.createLink(MILLI);
  assert.ok(link.url.startsWith(`${NODE_URL}/redeem#paymentId=${link.paymentId}&secret=`), link.url);
  assert.deepEqual(parseLink(link.url), { origin: NODE_URL, paymentId: link.paymentId, secret: link.secret });
  assert.equal((await alice.linkStatus(link.url)).status, 'pending');
  const carol = await card();
  const before = await carol.linkStatus(link.url); // asked with the secret: any holder of the link may
  assert.equal(before.status, 'pending');
  assert.equal(before.payment.amount, MILLI);
  assert.equal((await carol.linkStatus({ paymentId: link.paymentId, secret: `0x${'11'.repeat(32)}` })).status, 'unknown');
  const redeemed = await carol.redeemLink(link.url, { timeoutMs: WAIT_MS });
  assert.equal(redeemed.status, 'completed');
  assert.equal(carol.balance(ETH).user, MILLI);
  const nonce = carol.state.nonce;
  await refusedWith(carol.redeemLink(link.url), NodeError, 'already_redeemed');
  assert.equal(carol.state.nonce, nonce);
  assert.equal((await alice.linkStatus(link.url)).status, 'completed'); // claimed and paid out
});

test('amount 0, more than the balance and a bad address are refused with typed errors; nothing changes', { skip }, async () => {
  await settled(alice);
  const before = { nonce: alice.state.nonce, balances: alice.balances() };
  await refusedWith(alice.send(bob.address, 0n), InvalidArgumentError, 'invalid_amount');
  await refusedWith(alice.send(bob.address, alice.balance(ETH).user + 1n), InsufficientBalanceError, 'insufficient_balance');
  await refusedWith(alice.send('0x1234', MILLI), InvalidArgumentError, 'invalid_address');
  await refusedWith(alice.send(bob.address, 1.5), InvalidArgumentError, 'invalid_amount');
  await refusedWith(alice.createLink(alice.balance(ETH).user + 1n), ProtocolError, 'insufficient_balance');
  await refusedWith(alice.withdraw(MILLI, { recipient: 'not an address' }), InvalidArgumentError, 'invalid_address');
  // The node's own refusal: below the least withdrawal it pays gas for (nothing signed is kept).
  await refusedWith(alice.withdraw(1n), LimitError, 'withdrawal_too_small');
  assert.equal(alice.state.nonce, before.nonce);
  assert.deepEqual(alice.balances(), before.balances);
  const atNode = await alice.api.get('/api/channel');
  assert.equal(BigInt(atNode.state.nonce), before.nonce);
});

test('a withdrawal to an address is mined on chain, with progress until mined', { skip }, async () => {
  const recipient = addressOf(newKey());
  const amount = 10n * MILLI;
  const before = alice.balance(ETH).user;
  const { transactionHash } = await alice.withdraw(amount, { recipient, timeoutMs: WAIT_MS });
  const receipt = await rpc('eth_getTransactionReceipt', [transactionHash]);
  assert.equal(BigInt(receipt.status), 1n);
  assert.equal(BigInt(await rpc('eth_getBalance', [recipient, 'latest'])), amount);
  assert.equal(alice.balance(ETH).user, before - amount);
  const steps = alice.seen.progress.filter((p) => p.action === 'withdraw').map((p) => p.step);
  assert.deepEqual(steps.filter((s) => s !== 'submitted'), ['requested', 'mined'], steps.join(','));
});

test("a send to a receiver whose channel the node must collateralize first says so, then completes", { skip }, async () => {
  const dave = await card();
  const steps = [];
  const off = alice.on('progress', (p) => p.action === 'send' && steps.push(p.step));
  // The chain holds the node's collateral deposit until the card said the payment waits for it.
  await rpc('evm_setAutomine', [false]);
  let sent;
  try {
    const waiting = alice.events.next('progress', (p) => p.step === 'waiting_for_collateral', WAIT_MS);
    sent = alice.send(dave.address, 2n * MILLI, { timeoutMs: WAIT_MS });
    await waiting;
  } finally {
    await rpc('evm_setAutomine', [true]);
    await rpc('evm_mine');
  }
  const payment = await sent;
  off();
  assert.equal(payment.status, 'completed');
  assert.deepEqual(steps, ['sent', 'waiting_for_collateral', 'completed']);
  await dave.waitForPayment(payment.paymentId, { timeoutMs: WAIT_MS });
  assert.equal(dave.balance(ETH).user, 2n * MILLI);
  assert.equal(dave.balance(ETH).node, 0n, 'the node brought exactly the payment');
});

test('after its socket drops the card reconnects and resyncs', { skip }, async () => {
  const synced = bob.events.next('connection', (e) => e.status === 'synced', WAIT_MS);
  bob.dropConnection();
  await synced;
  assert.ok(bob.seen.connection.some((e) => e.status === 'lost'));
  assert.equal(bob.balance(ETH).user, MILLI);
  for (const client of clients) {
    assert.deepEqual(client.seen.refused, [], 'no node proposal was refused');
    assert.deepEqual(client.seen.error.map(String), [], 'no background error');
  }
});
