import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as keys from '../keys.js';
import { addressOf } from '../index.js';

// anvil's published development accounts for its default phrase (connext/chain/devchain.py).
const ANVIL = 'test test test test test test test test test test test junk';
const ANVIL_ACCOUNTS = [
  ['0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80', '0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266'],
  ['0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d', '0x70997970C51812dc3A010C7d01b50e0d17dc79C8'],
];

test("the default anvil phrase derives anvil's accounts on m/44'/60'/0'/0/i", async () => {
  for (const [index, [privateKey, address]] of ANVIL_ACCOUNTS.entries()) {
    const derived = await keys.privateKeyFromMnemonic(ANVIL, { index });
    assert.equal(derived, privateKey);
    assert.equal(addressOf(derived), address);
  }
  assert.equal(await keys.privateKeyFromMnemonic(`  ${ANVIL.toUpperCase().replaceAll(' ', '   ')} `), ANVIL_ACCOUNTS[0][0]);
});

test('entropy gives the BIP-39 reference phrases', () => {
  assert.equal(
    keys.mnemonicFromEntropy('0x' + '00'.repeat(16)),
    'abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about',
  );
  assert.equal(
    keys.mnemonicFromEntropy('0x' + '7f'.repeat(16)),
    'legal winner thank year wave sausage worth useful legal winner thank yellow',
  );
  assert.throws(() => keys.mnemonicFromEntropy('0x' + '00'.repeat(15)), { code: 'malformed' });
});

test('a phrase with a wrong word or checksum is malformed', async () => {
  assert.equal(keys.isValidMnemonic(ANVIL), true);
  assert.equal(keys.isValidMnemonic(ANVIL.replace('junk', 'test')), false);
  assert.equal(keys.isValidMnemonic('test test nope'), false);
  await assert.rejects(keys.privateKeyFromMnemonic(ANVIL.replace('junk', 'zebra')), { code: 'malformed' });
  await assert.rejects(keys.privateKeyFromMnemonic(ANVIL, { index: -1 }), { code: 'malformed' });
});
