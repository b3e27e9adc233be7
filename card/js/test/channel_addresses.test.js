import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as core from '../index.js';
import { load } from './vectors.js';

for (const c of load('channel_addresses').cases) {
  test(`channel address of ${c.node.slice(0, 8)}/${c.user.slice(0, 8)} on chain ${c.chainId.slice(0, 8)} equals the vector`, () => {
    const chainId = BigInt(c.chainId);
    assert.equal(core.channelSalt(c.node, c.user, chainId), c.salt);
    assert.equal(core.channelAddress({ ...c, chainId }), c.channelAddress);
    assert.equal(core.channelAddress({ ...c, factory: c.factory.toLowerCase(), chainId }), c.channelAddress);
  });
}

test('a channel address is refused for a malformed factory, and differs for another mastercopy', () => {
  const c = load('channel_addresses').cases[0];
  assert.throws(() => core.channelAddress({ ...c, factory: '0x12', chainId: 1n }), { code: 'malformed' });
  assert.notEqual(core.channelAddress({ ...c, mastercopy: c.factory, chainId: BigInt(c.chainId) }), c.channelAddress);
});
