import { test } from 'node:test';
import assert from 'node:assert/strict';
import { eip191Signer } from 'micro-eth-signer';
import * as core from '../index.js';
import { keyOf, load } from './vectors.js';

const vectors = load('login');

for (const c of vectors.cases) {
  test(`login for nonce ${c.nonce.slice(0, 12)}: message, digest and signature equal the vector`, () => {
    const message = core.loginMessage({ nodeAddress: c.nodeAddress, chainId: BigInt(c.chainId), nonce: c.nonce });
    assert.equal(message, c.message);
    assert.equal(core.loginDigest(message), c.digest);
    assert.equal(core.signLogin(message, keyOf(c.signer)), c.signature);
    assert.equal(core.recoverLoginSigner(message, c.signature), c.signer);
    // micro-eth-signer's EIP-191 text signing, as an independent check.
    assert.equal(eip191Signer.sign(message, keyOf(c.signer), false), c.signature);
  });
}

for (const r of vectors.refusals) {
  test(`login nonce ${JSON.stringify(r.nonce.slice(0, 12))} is refused with ${r.error}`, () => {
    assert.throws(() => core.loginMessage({ nodeAddress: r.nodeAddress, chainId: BigInt(r.chainId), nonce: r.nonce }), { code: r.error });
  });
}

test('a login message for another chain or node does not recover the signer', () => {
  const c = vectors.cases[0];
  const other = core.loginMessage({ nodeAddress: c.nodeAddress, chainId: BigInt(c.chainId) + 1n, nonce: c.nonce });
  assert.notEqual(core.recoverLoginSigner(other, c.signature), c.signer);
  assert.throws(() => core.loginMessage({ nodeAddress: '0x1234', chainId: 1n, nonce: 'abc' }), { code: 'malformed' });
  assert.throws(() => core.recoverLoginSigner(c.message, '0x1234'), { code: 'bad_signature' });
});
