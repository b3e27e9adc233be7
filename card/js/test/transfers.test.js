import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as core from '../index.js';
import { chainId, keyOf, load } from './vectors.js';

const { definitions: defs } = core;

const DECODE = {
  linked: defs.decodeLinkedState,
  hashlock: defs.decodeHashLockState,
  signed: defs.decodeSignedState,
  withdraw: defs.decodeWithdrawState,
};
const ENCODE = {
  linked: defs.encodeLinkedState,
  hashlock: defs.encodeHashLockState,
  signed: defs.encodeSignedState,
  withdraw: defs.encodeWithdrawState,
};
const DECODE_RESOLVER = {
  linked: defs.decodePreimageResolver,
  hashlock: defs.decodePreimageResolver,
  signed: defs.decodeSignedResolver,
  withdraw: defs.decodeWithdrawResolver,
};
const ENCODE_RESOLVER = {
  linked: defs.encodePreimageResolver,
  hashlock: defs.encodePreimageResolver,
  signed: defs.encodeSignedResolver,
  withdraw: defs.encodeWithdrawResolver,
};

// The vectors' decoded fields as the core's values: decimal strings -> BigInt.
const decodedValues = (fields) =>
  Object.fromEntries(
    Object.entries(fields)
      .filter(([key]) => key !== 'withdrawHash')
      .map(([key, value]) => [key, /^[0-9]+$/.test(value) ? BigInt(value) : value]),
  );

for (const c of load('transfers').cases) {
  test(`transfer "${c.name}": id, encoding and hash equal the vector`, () => {
    const transfer = core.transferStateFromJson(c.transfer);
    const t = c.transfer;
    assert.equal(core.encodeTransferId(t.channelAddress, t.paymentId, BigInt(t.createNonce)), c.transferIdEncoded);
    assert.equal(core.transferIdOf(transfer), t.transferId);
    assert.equal(core.keccak256(c.transferIdEncoded), t.transferId);
    assert.equal(core.initialStateHashOf(transfer), t.initialStateHash);
    assert.equal(core.encodeTransferState(transfer), c.encoded);
    assert.equal(core.transferHash(transfer), c.transferHash);
    assert.deepEqual(core.transferStateToJson(transfer), c.transfer);
  });

  test(`transfer "${c.name}": the ${c.definition} state decodes and re-encodes as the vector`, () => {
    const decoded = DECODE[c.definition](c.transfer.encodedState);
    assert.deepEqual(decoded, decodedValues(c.decodedState));
    assert.equal(ENCODE[c.definition](decoded), c.transfer.encodedState);
    if (c.definition === 'withdraw') {
      assert.equal(core.withdrawHash(defs.withdrawStateCommitment(decoded, chainId())), c.decodedState.withdrawHash);
    }
  });

  test(`transfer "${c.name}": the definition's create accepts it`, () => {
    const transfer = core.transferStateFromJson(c.transfer);
    defs.create(c.definition, transfer.balance, transfer.encodedState, { chainId: chainId() });
  });

  for (const r of c.resolvers) {
    test(`transfer "${c.name}", resolver "${r.name}": ${r.error ? `refused with ${r.error}` : `pays ${r.result}`}`, () => {
      const transfer = core.transferStateFromJson(c.transfer);
      const decoded = Object.fromEntries(Object.entries(r.decoded));
      assert.deepEqual(DECODE_RESOLVER[c.definition](r.encodedResolver), decoded);
      assert.equal(ENCODE_RESOLVER[c.definition](decoded), r.encodedResolver);
      const run = () =>
        defs.resolve(c.definition, transfer.balance, transfer.encodedState, r.encodedResolver, {
          chainId: chainId(),
          definition: transfer.transferDefinition,
          now: BigInt(r.now),
        });
      if (r.error) {
        assert.throws(run, { code: r.error });
      } else {
        assert.deepEqual(run().map(String), r.result);
      }
      const hash = core.resolverHash(chainId(), core.transferHash(transfer), r.encodedResolver);
      assert.equal(hash, r.resolverHash);
      assert.equal(core.signResolver(chainId(), c.transferHash, r.encodedResolver, keyOf(transfer.responder)), r.responderResolverSignature);
      assert.equal(core.recoverResolverSigner(chainId(), c.transferHash, r.encodedResolver, r.responderResolverSignature), transfer.responder);
    });
  }
}
