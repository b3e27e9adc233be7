import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as core from '../index.js';
import { account, load } from './vectors.js';

for (const c of load('channel_states').cases) {
  test(`channel state "${c.name}" encodes, hashes and signs as the vector`, () => {
    const state = core.channelStateFromJson(c.state);
    assert.equal(core.encodeChannelState(state), c.encoded);
    assert.equal(core.channelStateHash(state), c.stateHash);
    assert.equal(core.keccak256(c.encoded), c.stateHash);
    assert.equal(core.ethSignedMessageHash(c.stateHash), c.ethSignedMessageHash);
    assert.equal(core.merkleRootOf(state), c.state.merkleRoot);
    assert.equal(core.signState(state, account('node').privateKey), c.signatures.node);
    assert.equal(core.signState(state, account('user').privateKey), c.signatures.user);
    assert.equal(core.recoverStateSigner(state, c.signatures.node), account('node').address);
    assert.equal(core.recoverStateSigner(state, c.signatures.user), account('user').address);
    core.verifyStateSignatures(state, c.signatures.node, c.signatures.user);
    core.verifyStateSignature(state, c.signatures.user, state.user);
    assert.deepEqual(core.channelStateToJson(state), c.state);
  });

  test(`channel state "${c.name}": swapped signatures are refused`, () => {
    const state = core.channelStateFromJson(c.state);
    assert.throws(() => core.verifyStateSignatures(state, c.signatures.user, c.signatures.node), { code: 'bad_signature' });
    assert.throws(() => core.verifyStateSignature(state, c.signatures.node, state.user), { code: 'bad_signature' });
  });
}

test('every active transfer of a vector state has a proof against its merkle root', () => {
  for (const c of load('channel_states').cases) {
    const state = core.channelStateFromJson(c.state);
    for (const transfer of state.transfers) {
      const proof = core.merkleProofOf(state, core.transferIdOf(transfer));
      assert.ok(core.verifyMerkleProof(proof, c.state.merkleRoot, core.transferHash(transfer)));
    }
  }
});
