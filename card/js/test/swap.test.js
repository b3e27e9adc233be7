// The card's swap arithmetic without a node, in BigInt as the Python client does it: the node's quote
// floor(give * rate), the least a moved rate may offer ceil(quoted * (1 - slippage)), the decision on
// `rate_moved`, the rate lookup's refusals and the swap's typed errors.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  InvalidArgumentError,
  LimitError,
  NodeError,
  SlippageError,
  errorFromBody,
  findRate,
  leastAccepted,
  parseSlippage,
  quoteTake,
  rateOf,
  takeMovedOffer,
} from '../client/index.js';

const ETH = '0x0000000000000000000000000000000000000000';
const TOKEN = '0x5FbDB2315678afecb367f032d93F642f64180aa3';
const ENTRY = {
  giveAssetId: ETH,
  takeAssetId: TOKEN.toLowerCase(),
  rate: { numerator: '997', denominator: '500' }, // 1.994 take units per give unit
  stale: false,
};

test('the quote is floor(give * rate), exact past 2**53 and never rounded up', () => {
  const rate = rateOf(ENTRY);
  assert.deepEqual(rate, { numerator: 997n, denominator: 500n });
  assert.equal(quoteTake(10n ** 18n, rate), 1_994_000_000_000_000_000n);
  assert.equal(quoteTake(1n, rate), 1n); // 1.994 → 1
  assert.equal(quoteTake(1n, { numerator: 1n, denominator: 2000n }), 0n);
  const huge = 2n ** 200n + 7n;
  assert.equal(quoteTake(huge, rate), (huge * 997n) / 500n);
  assert.throws(() => rateOf({ rate: { numerator: '1', denominator: '0' } }), RangeError);
});

test('maxSlippage is a fraction from 0 up to 1, as a decimal string or a number', () => {
  assert.deepEqual(parseSlippage('0.01'), { numerator: 1n, denominator: 100n });
  assert.deepEqual(parseSlippage(0.01), { numerator: 1n, denominator: 100n });
  assert.deepEqual(parseSlippage('0'), { numerator: 0n, denominator: 1n });
  assert.deepEqual(parseSlippage(' .5 '), { numerator: 5n, denominator: 10n });
  const tiny = parseSlippage(1e-7);
  assert.equal(tiny.numerator * 10n ** 7n, tiny.denominator);
  for (const bad of ['1', 1, '-0.1', -0.1, '1e-2', 'abc', '', null, undefined, NaN, Infinity, '0.5.1', 10n]) {
    assert.throws(() => parseSlippage(bad), (e) => e instanceof InvalidArgumentError && e.code === 'invalid_argument', String(bad));
  }
});

test('the least accepted is ceil(quoted * (1 - slippage))', () => {
  const onePercent = parseSlippage('0.01');
  assert.equal(leastAccepted(1000n, onePercent), 990n);
  assert.equal(leastAccepted(999n, onePercent), 990n); // 989.01 → 990
  assert.equal(leastAccepted(1n, onePercent), 1n);
  assert.equal(leastAccepted(1000n, parseSlippage('0')), 1000n);
  const quoted = 1_994_000_000_000_000_001n;
  assert.equal(leastAccepted(quoted, parseSlippage('0.003')), (quoted * 997n + 999n) / 1000n);
});

test('on rate_moved the new offer is taken down to the least accepted, refused as slippage below it', () => {
  const quoted = 1000n;
  const least = leastAccepted(quoted, parseSlippage('0.01'));
  assert.equal(takeMovedOffer({ quoted, offered: 995n, least }), 995n);
  assert.equal(takeMovedOffer({ quoted, offered: 990n, least }), 990n);
  assert.equal(takeMovedOffer({ quoted, offered: 1010n, least }), 1010n);
  assert.throws(
    () => takeMovedOffer({ quoted, offered: 989n, least }),
    (e) => e instanceof SlippageError && e.code === 'slippage_exceeded' && e.offered === 989n && e.least === 990n && e.quoted === 1000n,
  );
});

test("the rate of a direction is found whatever the address case; none offered or stale is the node's refusal", () => {
  const rates = { rates: [ENTRY, { ...ENTRY, giveAssetId: TOKEN, takeAssetId: ETH, stale: true }], toleranceBps: 500 };
  assert.equal(findRate(rates, ETH, TOKEN), ENTRY);
  assert.throws(() => findRate(rates, TOKEN, ETH), (e) => e instanceof NodeError && e.code === 'stale_rate');
  assert.throws(() => findRate({ rates: [] }, ETH, TOKEN), (e) => e instanceof NodeError && e.code === 'swap_not_offered');
  assert.throws(() => findRate(null, ETH, TOKEN), (e) => e.code === 'swap_not_offered');
});

test("the node's swap limits are LimitErrors; rate_moved keeps its offer in details", () => {
  for (const code of ['swap_over_limit', 'swap_daily_limit', 'exposure_limit']) {
    assert.ok(errorFromBody(400, { error: { code, message: 'no' } }) instanceof LimitError, code);
  }
  const moved = errorFromBody(409, { error: { code: 'rate_moved', message: 'moved', offered: '990' } });
  assert.ok(!(moved instanceof LimitError));
  assert.equal(moved.details.offered, '990');
});
