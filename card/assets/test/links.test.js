import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import {
  ETH,
  LinkError,
  formatEther,
  parseEther,
  parseRoute,
  parseScanned,
  requestLink,
} from '../links.js';

const ORIGIN = 'http://127.0.0.1:8000';
const ADDRESS = '0x52908400098527886E0F7030069857D2E4169EE7';
const TOKEN = '0xde0B295669a9FD93d5F28D9Ec85E40f4cb697BAe';
const PAYMENT_ID = `0x${'ab'.repeat(32)}`;
const SECRET = `0x${'cd'.repeat(32)}`;

describe('parseScanned', () => {
  test('a bare address opens a send to it, checksummed', () => {
    assert.deepEqual(parseScanned(ADDRESS.toLowerCase(), ORIGIN), {
      kind: 'address',
      address: ADDRESS,
      route: `#send?to=${ADDRESS}`,
    });
  });

  test('an address with a wrong checksum is refused', () => {
    assert.throws(() => parseScanned(ADDRESS.replace('E7', 'e7'), ORIGIN), /checksum/);
  });

  test("this node's send link opens the send screen with its fields", () => {
    const link = requestLink(ORIGIN, { to: ADDRESS, amount: '1500', asset: TOKEN });
    assert.equal(link, `${ORIGIN}/card/#send?to=${ADDRESS}&amount=1500&asset=${TOKEN}`);
    assert.deepEqual(parseScanned(link, ORIGIN), {
      kind: 'send',
      to: ADDRESS,
      amount: '1500',
      asset: TOKEN,
      route: `#send?to=${ADDRESS}&amount=1500&asset=${TOKEN}`,
    });
  });

  test('a send link without amount or asset asks for ETH', () => {
    const scanned = parseScanned(`${ORIGIN}/card/#send?to=${ADDRESS}`, ORIGIN);
    assert.equal(scanned.asset, ETH);
    assert.equal(scanned.amount, '');
  });

  test('the redeem link the node and the CLI print opens the redeem screen', () => {
    const scanned = parseScanned(`${ORIGIN}/redeem#paymentId=${PAYMENT_ID}&secret=${SECRET}`, ORIGIN);
    assert.deepEqual(scanned, {
      kind: 'redeem',
      paymentId: PAYMENT_ID,
      secret: SECRET,
      route: `#redeem?paymentId=${PAYMENT_ID}&secret=${SECRET}`,
    });
    assert.equal(parseScanned(`${ORIGIN}/card/${scanned.route}`, ORIGIN).kind, 'redeem');
  });

  for (const [what, text, message] of [
    ['another origin', `https://evil.example/card/#send?to=${ADDRESS}`, /another site \(https:\/\/evil\.example\)/],
    ['another port', `http://127.0.0.1:8001/redeem#paymentId=${PAYMENT_ID}&secret=${SECRET}`, /another site/],
    ['https for an http node', `https://127.0.0.1:8000/card/#send?to=${ADDRESS}`, /another site/],
    ['credentials in the URL', `http://user:pw@127.0.0.1:8000/card/#send?to=${ADDRESS}`, /not one the card makes/],
    ['a query string', `${ORIGIN}/card/?next=x#send?to=${ADDRESS}`, /not one the card makes/],
    ['another path', `${ORIGIN}/dashboard/#send?to=${ADDRESS}`, /not a payment request/],
    ['another screen', `${ORIGIN}/card/#settings`, /not a payment request/],
    ['a send link without receiver', `${ORIGIN}/card/#send?amount=1`, /not a payment request/],
    ['a bad receiver', `${ORIGIN}/card/#send?to=0x1234`, /40 hexadecimal/],
    ['a fractional wei amount', `${ORIGIN}/card/#send?to=${ADDRESS}&amount=1.5`, /whole number of wei/],
    ['a negative amount', `${ORIGIN}/card/#send?to=${ADDRESS}&amount=-1`, /whole number of wei/],
    ['a short secret', `${ORIGIN}/redeem#paymentId=${PAYMENT_ID}&secret=0x12`, /valid secret/],
    ['no payment id', `${ORIGIN}/redeem#secret=${SECRET}`, /valid payment id/],
    ['javascript:', `javascript:alert(1)//${ORIGIN}/card/`, /neither a payment link nor an address/],
    ['an ethereum: URI', `ethereum:${ADDRESS}`, /neither a payment link nor an address/],
    ['plain text', 'hello', /neither a payment link nor an address/],
    ['nothing', '   ', /empty/],
  ]) {
    test(`refuses ${what}`, () => {
      assert.throws(() => parseScanned(text, ORIGIN), (error) => error instanceof LinkError && message.test(error.message));
    });
  }
});

describe('parseRoute', () => {
  test('no hash is home', () => assert.equal(parseRoute('').screen, 'home'));
  test('a screen with parameters', () => {
    const route = parseRoute(`#send?to=${ADDRESS}&amount=5`);
    assert.equal(route.screen, 'send');
    assert.equal(route.params.get('amount'), '5');
  });
  test("the printed link's bare fragment is the redeem screen", () => {
    const route = parseRoute(`#paymentId=${PAYMENT_ID}&secret=${SECRET}`);
    assert.equal(route.screen, 'redeem');
    assert.equal(route.params.get('secret'), SECRET);
  });
  test('an unknown screen is home, and says so', () => {
    assert.deepEqual({ ...parseRoute('#nope'), params: undefined }, { screen: 'home', params: undefined, unknown: 'nope' });
  });
});

describe('amounts', () => {
  test('ether strings to wei and back', () => {
    for (const [text, wei] of [['1', 10n ** 18n], ['0.01', 10n ** 16n], ['.5', 5n * 10n ** 17n], ['0.000000000000000001', 1n]]) {
      assert.equal(parseEther(text), wei);
    }
    assert.equal(formatEther(1500000000000000000n), '1.5');
    assert.equal(formatEther(0n), '0');
  });
  for (const bad of ['', '.', '-1', '1e18', '0x10', '1.0000000000000000001', '1,5']) {
    test(`"${bad}" is not an amount`, () => assert.throws(() => parseEther(bad), LinkError));
  }
});
