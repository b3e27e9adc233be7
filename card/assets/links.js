// The card's URLs, pure: its hash routes, the links it makes and the ones it accepts from a scan.
// Amounts in links are decimal strings of wei (base units), like everywhere in the node's API.
import { addr } from 'micro-eth-signer';
import { parseLink } from '../js/client/links.js';

export const ETH = '0x0000000000000000000000000000000000000000';
export const SCREENS = [
  'home', 'setup', 'unlock', 'backup', 'deposit', 'send', 'request', 'link', 'redeem', 'cashout',
  'swap', 'scan', 'settings',
];
const WEI = /^[0-9]{1,78}$/;
const DECIMALS = 18;

export class LinkError extends Error {
  constructor(message) {
    super(message);
    this.name = 'LinkError';
  }
}

/** `0x…` with a valid EIP-55 checksum when it has mixed case; returned checksummed. */
export function parseAddress(text, what = 'address') {
  const candidate = String(text ?? '').trim();
  if (!/^0x[0-9a-fA-F]{40}$/.test(candidate)) {
    throw new LinkError(`The ${what} must be 0x followed by 40 hexadecimal characters.`);
  }
  if (!addr.isValid(candidate)) {
    throw new LinkError(`The ${what} has a wrong checksum (a character is mistyped).`);
  }
  return addr.addChecksum(candidate.toLowerCase());
}

/** "1.5" ETH → 1500000000000000000n; refuses signs, exponents and more than 18 decimals. */
export function parseEther(text) {
  const value = String(text ?? '').trim();
  const match = /^([0-9]*)(?:\.([0-9]*))?$/.exec(value);
  if (!value || !match || (match[1] === '' && !match[2])) {
    throw new LinkError('Enter an amount like 0.01.');
  }
  const fraction = match[2] ?? '';
  if (fraction.length > DECIMALS) throw new LinkError('An amount has at most 18 decimals.');
  return BigInt(match[1] || '0') * 10n ** BigInt(DECIMALS) + BigInt(fraction.padEnd(DECIMALS, '0') || '0');
}

/** 1500000000000000000n → "1.5" */
export function formatEther(wei) {
  const value = BigInt(wei);
  const sign = value < 0n ? '-' : '';
  const magnitude = value < 0n ? -value : value;
  const whole = magnitude / 10n ** BigInt(DECIMALS);
  const fraction = (magnitude % 10n ** BigInt(DECIMALS)).toString().padStart(DECIMALS, '0').replace(/0+$/, '');
  return `${sign}${whole}${fraction ? `.${fraction}` : ''}`;
}

/** A location hash → {screen, params}. `#paymentId=…&secret=…` (the link the node and the CLI print,
 *  kept across /redeem's redirect) is the redeem screen. */
export function parseRoute(hash) {
  const text = String(hash ?? '').replace(/^#/, '');
  if (!text) return { screen: 'home', params: new URLSearchParams() };
  const question = text.indexOf('?');
  const name = question === -1 ? text : text.slice(0, question);
  if (name.includes('=')) return { screen: 'redeem', params: new URLSearchParams(text) };
  const params = new URLSearchParams(question === -1 ? '' : text.slice(question + 1));
  if (!SCREENS.includes(name)) return { screen: 'home', params: new URLSearchParams(), unknown: name };
  return { screen: name, params };
}

/** The fields of a send link (`#send?to=…&amount=…&asset=…`), each checked. */
export function sendFields(params) {
  const fields = { to: parseAddress(params.get('to'), 'receiver address'), amount: '', asset: ETH };
  const amount = params.get('amount');
  if (amount) {
    if (!WEI.test(amount)) throw new LinkError('The requested amount is not a whole number of wei.');
    fields.amount = BigInt(amount).toString();
  }
  if (params.get('asset')) fields.asset = parseAddress(params.get('asset'), 'asset address');
  return fields;
}

/** The fields of a redeem link (`#paymentId=…&secret=…`), each checked. */
export function redeemFields(params) {
  try {
    const { paymentId, secret } = parseLink(params.toString()); // the client's reading of a link
    return { paymentId, secret };
  } catch (error) {
    throw new LinkError(`${error.message[0].toUpperCase()}${error.message.slice(1)}.`);
  }
}

export function sendRoute({ to, amount = '', asset = ETH }) {
  const params = new URLSearchParams({ to });
  if (amount) params.set('amount', String(amount));
  if (asset && asset.toLowerCase() !== ETH) params.set('asset', asset);
  return `#send?${params}`;
}

export function redeemRoute({ paymentId, secret }) {
  return `#redeem?${new URLSearchParams({ paymentId, secret })}`;
}

/** The pay-me link a request shows (and its QR holds): it opens this card's send screen, prefilled. */
export function requestLink(origin, fields) {
  return `${origin}/card/${sendRoute(fields)}`;
}

/** What a scanned QR may be: this node's send link, its redeem link, or a bare address. Anything
 *  else (another site's link above all) is refused with a message saying why. */
export function parseScanned(text, origin) {
  const scanned = String(text ?? '').trim();
  if (!scanned) throw new LinkError('The QR code is empty.');
  if (/^0x[0-9a-fA-F]{40}$/.test(scanned)) {
    const address = parseAddress(scanned);
    return { kind: 'address', address, route: sendRoute({ to: address }) };
  }
  let url;
  try {
    url = new URL(scanned);
  } catch {
    throw new LinkError('This QR code is neither a payment link nor an address.');
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') {
    throw new LinkError('This QR code is neither a payment link nor an address.');
  }
  if (url.origin !== origin) {
    throw new LinkError(`This QR code points to another site (${url.origin}); the card opens only its own links.`);
  }
  if (url.username || url.password || url.search) {
    throw new LinkError('This link is not one the card makes.');
  }
  if (url.pathname === '/redeem' || url.pathname === '/redeem/') {
    const fields = redeemFields(new URLSearchParams(url.hash.replace(/^#/, '')));
    return { kind: 'redeem', ...fields, route: redeemRoute(fields) };
  }
  if (url.pathname === '/card/' || url.pathname === '/card') {
    const route = parseRoute(url.hash);
    if (route.screen === 'send' && route.params.has('to')) {
      const fields = sendFields(route.params);
      return { kind: 'send', ...fields, route: sendRoute(fields) };
    }
    if (route.screen === 'redeem') {
      const fields = redeemFields(route.params);
      return { kind: 'redeem', ...fields, route: redeemRoute(fields) };
    }
  }
  throw new LinkError('This link is not a payment request or a redeem link.');
}
