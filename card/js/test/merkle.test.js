import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as core from '../index.js';
import { load } from './vectors.js';

for (const c of load('merkle').cases) {
  test(`merkle "${c.name}": root and proofs equal the vector`, () => {
    assert.equal(core.merkleRoot(c.leaves), c.root);
    assert.equal(core.merkleRoot([...c.leaves].reverse()), c.root);
    assert.deepEqual([...c.leaves].sort(), c.sortedLeaves);
    for (const { leaf, proof } of c.proofs) {
      assert.deepEqual(core.merkleProof(c.leaves, leaf), proof);
      assert.ok(core.verifyMerkleProof(proof, c.root, leaf));
    }
  });

  if (c.leaves.length > 1) {
    test(`merkle "${c.name}": a proof for another leaf or a changed proof does not verify`, () => {
      const [first, second] = c.proofs;
      assert.ok(!core.verifyMerkleProof(first.proof, c.root, second.leaf));
      const changed = [core.keccak256(first.proof[0]), ...first.proof.slice(1)];
      assert.ok(!core.verifyMerkleProof(changed, c.root, first.leaf));
    });
  }
}

test('a leaf not in the tree has no proof, and a short leaf is malformed', () => {
  const { leaves } = load('merkle').cases.find((c) => c.leaves.length === 3);
  assert.throws(() => core.merkleProof(leaves, core.keccak256('0x01')), { code: 'malformed' });
  assert.throws(() => core.merkleRoot([...leaves, '0x1234']), { code: 'malformed' });
  assert.throws(() => core.merkleRoot(['0xzz']), { code: 'malformed' });
});
