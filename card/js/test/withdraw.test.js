import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as core from '../index.js';
import { account, load } from './vectors.js';

for (const c of load('withdraw').cases) {
  test(`withdraw commitment ${c.encoded.slice(-8)}: encoding, hash and signatures equal the vector`, () => {
    const commitment = core.withdrawCommitmentFromJson(c.commitment);
    assert.equal(core.encodeWithdrawCommitment(commitment), c.encoded);
    assert.equal(core.withdrawHash(commitment), c.withdrawHash);
    assert.equal(core.keccak256(c.encoded), c.withdrawHash);
    assert.equal(core.signWithdraw(commitment, account('node').privateKey), c.signatures.node);
    assert.equal(core.signWithdraw(commitment, account('user').privateKey), c.signatures.user);
    assert.equal(core.recoverWithdrawSigner(commitment, c.signatures.node), account('node').address);
    assert.equal(core.recoverWithdrawSigner(commitment, c.signatures.user), account('user').address);
    assert.deepEqual(core.withdrawCommitmentToJson(commitment), c.commitment);
  });
}
