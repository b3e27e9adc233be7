// The arithmetic of a swap, pure and in BigInt, as `Funds.swap` in connext/client/funds.py does it:
// the node pays floor(give * rate); the card accepts a moved rate down to ceil(quoted * (1 - slippage)).

import { normalizeAddress } from '../address.js';
import { InvalidArgumentError, NodeError, SlippageError } from './errors.js';

const DECIMAL = /^(?:[0-9]+\.?[0-9]*|\.[0-9]+)$/;

/** A fraction from 0 (inclusive) up to 1 (exclusive), from a decimal string or a number ("0.01" is
 * 1 %), as `{numerator, denominator}` BigInts; `invalid_argument` otherwise. */
export function parseSlippage(value, field = 'maxSlippage') {
  let text = typeof value === 'number' && Number.isFinite(value) ? String(value) : value;
  if (typeof text === 'string' && /e-/i.test(text) && typeof value === 'number') text = value.toFixed(20);
  text = typeof text === 'string' ? text.trim() : '';
  if (!DECIMAL.test(text)) throw new InvalidArgumentError('invalid_argument', `${field} is a fraction from 0 up to 1, e.g. 0.01`);
  const [whole, fraction = ''] = text.split('.');
  const denominator = 10n ** BigInt(fraction.length);
  const numerator = BigInt(whole || '0') * denominator + BigInt(fraction || '0');
  if (numerator >= denominator) throw new InvalidArgumentError('invalid_argument', `${field} is a fraction from 0 up to 1, e.g. 0.01`);
  return { numerator, denominator };
}

/** The rate entry's fraction as BigInts (take base units per give base unit). */
export function rateOf(entry) {
  const numerator = BigInt(entry?.rate?.numerator ?? 'x');
  const denominator = BigInt(entry?.rate?.denominator ?? 'x');
  if (numerator < 0n || denominator <= 0n) throw new RangeError('a rate is a fraction with a positive denominator');
  return { numerator, denominator };
}

/** What the node pays for `give` at `rate`: floor(give * numerator / denominator). */
export function quoteTake(give, rate) {
  return (give * rate.numerator) / rate.denominator;
}

/** The least the swap accepts when the node's rate moved: ceil(quoted * (1 - slippage)). */
export function leastAccepted(quoted, slippage) {
  const kept = slippage.denominator - slippage.numerator;
  return (quoted * kept + slippage.denominator - 1n) / slippage.denominator;
}

/** After `rate_moved`: the node's new offer when it is at least `least`, else SlippageError. */
export function takeMovedOffer({ quoted, offered, least }) {
  if (offered < least) throw new SlippageError({ quoted, offered, least });
  return offered;
}

/** The node's entry for giving `give` for `take` in its rates answer; refused before anything is
 * signed when it offers no such swap (`swap_not_offered`) or its price is stale (`stale_rate`). */
export function findRate(rates, give, take) {
  for (const entry of rates?.rates ?? []) {
    let giveAsset;
    let takeAsset;
    try {
      giveAsset = normalizeAddress(String(entry.giveAssetId));
      takeAsset = normalizeAddress(String(entry.takeAssetId));
    } catch {
      continue;
    }
    if (giveAsset !== give || takeAsset !== take) continue;
    if (entry.stale) throw new NodeError('stale_rate', `the node's price for ${give} is stale; try later`, 409);
    return entry;
  }
  throw new NodeError('swap_not_offered', `the node does not swap ${give} for ${take}`, 400);
}
