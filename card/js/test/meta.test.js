import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as core from '../index.js';
import { load } from './vectors.js';

// JSON.parse reads an integer past 2^53 as an inexact Number; the core takes such integers as BigInt.
const withBigInts = (value) => {
  if (typeof value === 'number' && !Number.isSafeInteger(value)) return BigInt(value);
  if (Array.isArray(value)) return value.map(withBigInts);
  if (value && typeof value === 'object') return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, withBigInts(v)]));
  return value;
};

for (const c of load('meta').cases) {
  test(`meta "${c.name}": canonical JSON and hash equal Python's`, () => {
    const meta = withBigInts(c.meta);
    if (c.canonical !== undefined) assert.equal(new TextDecoder().decode(core.canonicalMeta(meta)), c.canonical);
    assert.equal(core.metaHash(meta), c.metaHash);
  });
}

test('meta that JavaScript and Python would print differently is refused', () => {
  assert.throws(() => core.metaHash({ amount: 1.5 }), { code: 'malformed' });
  assert.throws(() => core.metaHash({ big: 2 ** 60 }), { code: 'malformed' });
  assert.throws(() => core.metaHash({ when: new Date(0) }), { code: 'malformed' });
  assert.throws(() => core.metaHash({ text: '\ud800' }), { code: 'malformed' });
  assert.throws(() => core.metaHash({ memo: 'x'.repeat(5000) }), { code: 'malformed' });
});
