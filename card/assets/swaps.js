// The swap screen's words and numbers, pure: the node's directions named for a person, the rate and
// what an amount receives at it (BigInt, the node's own floor), the auto-swap's bound and setting.
// Amounts of tokens are shown with 18 decimals, as ETH's (the card knows no token's decimals).
import { ETH, formatEther } from './links.js';
import { quoteTake, rateOf } from '../js/client/swap.js';

export const AUTOSWAP_KEY = 'card.autoswap'; // the token ETH deposits are swapped into; absent: off
const ONE = 10n ** 18n;

const short = (address) => `${address.slice(0, 6)}…${address.slice(-4)}`;

/** "ETH", the token's name when the node's config names its contract (TestToken on a dev chain), or
 * a short address. */
export function assetName(assetId, contracts = {}) {
  const asset = String(assetId ?? '').toLowerCase();
  if (asset === ETH) return 'ETH';
  for (const [name, address] of Object.entries(contracts ?? {})) {
    if (String(address).toLowerCase() === asset) return name;
  }
  return short(String(assetId));
}

/** The directions the node offers, fresh or stale: [{key, give, take, label, entry}]. */
export function directions(rates, contracts) {
  return (rates?.rates ?? []).map((entry) => ({
    key: `${entry.giveAssetId}>${entry.takeAssetId}`.toLowerCase(),
    give: entry.giveAssetId,
    take: entry.takeAssetId,
    label: `${assetName(entry.giveAssetId, contracts)} → ${assetName(entry.takeAssetId, contracts)}`,
    entry,
  }));
}

/** What `give` (base units) receives at the entry's rate: the node pays the floor. */
export function received(give, entry) {
  return quoteTake(BigInt(give), rateOf(entry));
}

/** "1 ETH = 1994 TestToken" (what one whole unit receives now); "(stale)" when the node says so. */
export function rateText(entry, contracts) {
  const text = `1 ${assetName(entry.giveAssetId, contracts)} = ${formatEther(received(ONE, entry))} ${assetName(entry.takeAssetId, contracts)}`;
  return entry.stale ? `${text} (the node's price is stale: it swaps again once it has a fresh one)` : text;
}

export function receiveText(give, entry, contracts) {
  return `You receive about ${formatEther(received(give, entry))} ${assetName(entry.takeAssetId, contracts)}`;
}

export function limitsText(entry, contracts) {
  return `At most ${formatEther(BigInt(entry.maxGive))} ${assetName(entry.giveAssetId, contracts)} in one swap.`;
}

/** How much of an ETH deposit of `amount` the auto-swap gives: what the card holds of it, at most one
 * swap's `maxGive`; 0n when that buys nothing. */
export function autoSwapGive(amount, entry, balance) {
  let give = BigInt(amount);
  if (give > BigInt(entry.maxGive)) give = BigInt(entry.maxGive);
  if (give > balance) give = balance;
  return give > 0n && received(give, entry) > 0n ? give : 0n;
}

export function autoSwapSetting(storage = globalThis.localStorage) {
  return storage.getItem(AUTOSWAP_KEY) || null;
}

export function setAutoSwap(token, storage = globalThis.localStorage) {
  if (token) storage.setItem(AUTOSWAP_KEY, token);
  else storage.removeItem(AUTOSWAP_KEY);
}
