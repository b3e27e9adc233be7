import { test } from 'node:test';
import assert from 'node:assert/strict';
import { recoverAddressTyped, signTyped } from 'micro-eth-signer';
import * as core from '../index.js';
import { account, load } from './vectors.js';

const receipts = load('receipts');

test('the EIP-712 type hashes equal the vectors', () => {
  assert.equal(core.EIP712_DOMAIN_TYPEHASH, receipts.domainTypehash);
  assert.equal(core.RECEIPT_TYPEHASH, receipts.receiptTypehash);
  assert.equal(core.keccak256(core.utf8(receipts.types.EIP712Domain)), receipts.domainTypehash);
  assert.equal(core.keccak256(core.utf8(receipts.types.Receipt)), receipts.receiptTypehash);
});

// micro-eth-signer's EIP-712 implementation, as an independent check of the digest and signature.
const typedData = (c) => ({
  types: {
    EIP712Domain: [
      { name: 'name', type: 'string' },
      { name: 'version', type: 'string' },
      { name: 'chainId', type: 'uint256' },
      { name: 'verifyingContract', type: 'address' },
    ],
    Receipt: [
      { name: 'paymentId', type: 'bytes32' },
      { name: 'data', type: 'bytes32' },
    ],
  },
  primaryType: 'Receipt',
  domain: { ...c.domain, chainId: BigInt(c.domain.chainId) },
  message: c.message,
});

for (const c of receipts.cases) {
  test(`receipt ${c.digest.slice(-8)}: domain, struct hash, digest and signature equal the vector`, () => {
    const chainId = BigInt(c.domain.chainId);
    const { verifyingContract } = c.domain;
    const { paymentId, data } = c.message;
    assert.equal(c.domain.name, core.SIGNED_DOMAIN_NAME);
    assert.equal(c.domain.version, core.SIGNED_DOMAIN_VERSION);
    assert.equal(core.receiptDomainSeparator(chainId, verifyingContract), c.domainSeparator);
    assert.equal(core.receiptStructHash(paymentId, data), c.structHash);
    assert.equal(core.receiptDigest(chainId, verifyingContract, paymentId, data), c.digest);
    const key = account('receiptSigner').privateKey;
    assert.equal(core.signReceipt(chainId, verifyingContract, paymentId, data, key), c.signature);
    assert.equal(core.recoverReceiptSigner(chainId, verifyingContract, paymentId, data, c.signature), c.signer);
    assert.equal(signTyped(typedData(c), key, false), c.signature);
    assert.equal(recoverAddressTyped(c.signature, typedData(c)), c.signer);
  });
}
