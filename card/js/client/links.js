// Link payments' URLs, as the node and the CLI print them: `<origin>/redeem#paymentId=0x…&secret=0x…`.
// The secret travels in the fragment, which browsers never send to a server.

import { InvalidArgumentError } from './errors.js';

const BYTES32 = /^0x[0-9a-f]{64}$/;

/** The link URL for a payment id and secret (both 0x + 32 bytes of hex) on the node at `origin`. */
export function linkUrl(origin, paymentId, secret) {
  const id = String(paymentId).toLowerCase();
  const key = String(secret).toLowerCase();
  if (!BYTES32.test(id) || !BYTES32.test(key)) throw new InvalidArgumentError('invalid_argument', 'a link is a payment id and a secret of 32 bytes');
  return `${String(origin).replace(/\/+$/, '')}/redeem#paymentId=${id}&secret=${key}`;
}

/** `{origin, paymentId, secret}` of a link URL (or of its bare fragment `paymentId=…&secret=…`). */
export function parseLink(link) {
  const text = String(link).trim();
  const hashAt = text.indexOf('#');
  const fragment = hashAt >= 0 ? text.slice(hashAt + 1) : text;
  let origin = null;
  if (hashAt > 0) {
    try {
      const url = new URL(text.slice(0, hashAt));
      if (url.pathname.replace(/\/+$/, '') !== '/redeem') throw new Error('not a redeem path');
      origin = url.origin;
    } catch {
      throw new InvalidArgumentError('bad_link', 'not a redeem link');
    }
  }
  const fields = new URLSearchParams(fragment);
  const paymentId = (fields.get('paymentId') ?? '').toLowerCase();
  const secret = (fields.get('secret') ?? '').toLowerCase();
  if (!BYTES32.test(paymentId)) throw new InvalidArgumentError('bad_link', 'the link has no valid payment id');
  if (!BYTES32.test(secret)) throw new InvalidArgumentError('bad_link', 'the link has no valid secret');
  return { origin, paymentId, secret };
}
