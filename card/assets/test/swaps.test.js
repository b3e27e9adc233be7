import assert from 'node:assert/strict';
import { test } from 'node:test';

import { ETH } from '../links.js';
import { AUTOSWAP_KEY, assetName, autoSwapGive, autoSwapSetting, directions, rateText, receiveText, received, setAutoSwap } from '../swaps.js';

const TOKEN = '0x5FbDB2315678afecb367f032d93F642f64180aa3';
const CONTRACTS = { ChannelFactory: '0x' + '11'.repeat(20), TestToken: TOKEN };
const MILLI = 10n ** 15n;
const BUY = { giveAssetId: ETH, takeAssetId: TOKEN, rate: { numerator: '1994', denominator: '1' }, maxGive: String(20n * MILLI), stale: false };
const SELL = { giveAssetId: TOKEN, takeAssetId: ETH, rate: { numerator: '997', denominator: '2000000' }, maxGive: String(40n * 10n ** 18n), stale: false };

test("assets are named ETH, by the node's contract name, or by a short address", () => {
  assert.equal(assetName(ETH, CONTRACTS), 'ETH');
  assert.equal(assetName(TOKEN.toLowerCase(), CONTRACTS), 'TestToken');
  assert.equal(assetName(TOKEN, {}), '0x5FbD…0aa3');
});

test('each direction the node offers is named for a person', () => {
  const shown = directions({ rates: [BUY, SELL] }, CONTRACTS);
  assert.deepEqual(shown.map((d) => d.label), ['ETH → TestToken', 'TestToken → ETH']);
  assert.equal(shown[0].key, `${ETH}>${TOKEN.toLowerCase()}`);
  assert.deepEqual(directions(null, CONTRACTS), []);
});

test('the rate and what an amount receives are the floor the node pays, in BigInt', () => {
  assert.equal(rateText(BUY, CONTRACTS), '1 ETH = 1994 TestToken');
  assert.equal(rateText(SELL, CONTRACTS), '1 TestToken = 0.0004985 ETH');
  assert.equal(received(10n * MILLI, BUY), 19_940_000_000_000_000_000n);
  assert.equal(receiveText(10n * MILLI, BUY, CONTRACTS), 'You receive about 19.94 TestToken');
  assert.equal(received(1n, SELL), 0n);
  assert.match(rateText({ ...BUY, stale: true }, CONTRACTS), /stale/);
});

test("the auto-swap gives the deposit, at most one swap's maxGive and what the card holds", () => {
  assert.equal(autoSwapGive(10n * MILLI, BUY, 50n * MILLI), 10n * MILLI);
  assert.equal(autoSwapGive(30n * MILLI, BUY, 50n * MILLI), 20n * MILLI);
  assert.equal(autoSwapGive(30n * MILLI, BUY, 5n * MILLI), 5n * MILLI);
  assert.equal(autoSwapGive(0n, BUY, 5n * MILLI), 0n);
});

test('the auto-swap setting is one key of the local storage, off when absent', () => {
  const items = new Map();
  const storage = { getItem: (k) => items.get(k) ?? null, setItem: (k, v) => items.set(k, v), removeItem: (k) => items.delete(k) };
  assert.equal(autoSwapSetting(storage), null);
  setAutoSwap(TOKEN, storage);
  assert.equal(items.get(AUTOSWAP_KEY), TOKEN);
  assert.equal(autoSwapSetting(storage), TOKEN);
  setAutoSwap(null, storage);
  assert.equal(autoSwapSetting(storage), null);
});
