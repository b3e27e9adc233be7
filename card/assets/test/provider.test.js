import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { Transaction, eip191Signer, ethHex, recoverAddressTyped } from 'micro-eth-signer';

import {
  CARD_RDNS,
  CODES,
  CardProvider,
  ProviderRpcError,
  announceProvider,
  describe as describeRequest,
  httpRpc,
  nodeNetwork,
  prepareTransaction,
  signTransaction,
} from '../provider.js';

const KEY = '0x4c0883a69102937d6231471b5dbb6204fe512961708279f1d7b1b8e7e8b1b1e1';
const ADDRESS = '0x5bFb64f69E0950f676C4b935Fe1D9603eC1d35E9';
const TO = '0x52908400098527886E0F7030069857D2E4169EE7';
const CHAIN_ID = 31337n;
const GWEI = 10n ** 9n;
// eth_account.Account.sign_transaction({type: 2, chainId: 31337, nonce: 0, to: TO, value: 10**16,
// gas: 21000, maxFeePerGas: 2 gwei, maxPriorityFeePerGas: 1 gwei, data: b''}, KEY): the same bytes.
const SIGNED_BY_ETH_ACCOUNT =
  '0x02f873827a6980843b9aca0084773594008252089452908400098527886e0f7030069857d2e4169ee7872386f26fc1000080c080a0' +
  '7aa235f38ac3ac641a93828b5b8680cee938c6c7138cbe9723e37c5ddf9b01fba072824650c0e2d11bf7054cb0c65b473fe39b8e103126b9f13871e6ff616889f8';
const HASH_BY_ETH_ACCOUNT = '0xbe7022cd9763fb6f263102e2d3ab18344134d8be9aea666589216246df348b61';

/** The chain's JSON-RPC, scripted: answers by method, records every call. */
function fakeChain(answers = {}) {
  const calls = [];
  const chain = {
    eth_chainId: () => `0x${CHAIN_ID.toString(16)}`,
    eth_getTransactionCount: () => '0x0',
    eth_estimateGas: () => '0x5208',
    eth_getBlockByNumber: () => ({ number: '0x7', baseFeePerGas: `0x${(GWEI / 2n).toString(16)}` }),
    eth_maxPriorityFeePerGas: () => `0x${GWEI.toString(16)}`,
    eth_sendRawTransaction: ([raw]) => Transaction.fromHex(raw).hash,
    eth_getBalance: () => '0xde0b6b3a7640000',
    ...answers,
  };
  const rpc = async (method, params) => {
    calls.push([method, params]);
    if (!chain[method]) throw new ProviderRpcError(-32601, `no ${method}`);
    return chain[method](params);
  };
  return { rpc, calls, sent: () => calls.filter(([method]) => method === 'eth_sendRawTransaction') };
}

/** The user, scripted: says yes or no, and keeps what each confirmation showed. */
function fakeUser({ connects = true, approves = true } = {}) {
  const asked = [];
  return {
    asked,
    wallet: {
      async connect() {
        asked.push({ kind: 'connect' });
        return connects ? { address: ADDRESS.toLowerCase(), privateKey: ethHex.decode(KEY) } : null;
      },
      async confirm(request) {
        asked.push(request);
        return typeof approves === 'function' ? approves(request) : approves;
      },
    },
  };
}

function cardWith({ chain = fakeChain(), user = fakeUser(), chainId = CHAIN_ID } = {}) {
  const provider = new CardProvider({ network: async () => ({ chainId, rpc: chain.rpc }), wallet: user.wallet });
  return { provider, chain, user };
}

async function connected(options) {
  const card = cardWith(options);
  await card.provider.request({ method: 'eth_requestAccounts' });
  card.user.asked.length = 0;
  return card;
}

async function refusal(promise) {
  try {
    await promise;
  } catch (error) {
    return error;
  }
  assert.fail('expected a refusal');
}

describe('routing and errors', () => {
  test('the chain id comes from the node and is checked against the chain RPC', async () => {
    const { provider } = cardWith();
    const connects = [];
    provider.on('connect', (info) => connects.push(info));
    assert.equal(await provider.request({ method: 'eth_chainId' }), '0x7a69');
    assert.equal(await provider.request({ method: 'net_version' }), '31337');
    assert.deepEqual(connects, [{ chainId: '0x7a69' }]);
    assert.equal(provider.isConnected(), true);
  });

  test('a chain RPC serving another chain than the node’s is 4901: the provider stays disconnected', async () => {
    const { provider } = cardWith({ chainId: 1n });
    const error = await refusal(provider.request({ method: 'eth_chainId' }));
    assert.equal(error.code, CODES.CHAIN_DISCONNECTED);
    assert.match(error.message, /serves chain 31337; the node runs on chain 1/);
    assert.equal(provider.isConnected(), false);
  });

  test('an unreachable chain is 4900; the provider says disconnect, then connect once it answers', async () => {
    let up = true;
    const chain = fakeChain({
      eth_blockNumber: () => {
        if (!up) throw new ProviderRpcError(CODES.DISCONNECTED, 'down');
        return '0x9';
      },
    });
    const { provider } = cardWith({ chain });
    const events = [];
    provider.on('connect', () => events.push('connect'));
    provider.on('disconnect', (error) => events.push(`disconnect ${error.code}`));
    assert.equal(await provider.request({ method: 'eth_blockNumber' }), '0x9');
    up = false;
    assert.equal((await refusal(provider.request({ method: 'eth_blockNumber' }))).code, 4900);
    up = true;
    await provider.request({ method: 'eth_blockNumber' });
    assert.deepEqual(events, ['connect', 'disconnect 4900', 'connect']);
  });

  test('an unknown method is 4200 and a malformed request -32600; neither reaches the chain', async () => {
    const { provider, chain } = cardWith();
    for (const method of ['eth_sign', 'eth_sendRawTransaction', 'wallet_addEthereumChain', 'toString']) {
      assert.equal((await refusal(provider.request({ method }))).code, CODES.UNSUPPORTED_METHOD, method);
    }
    assert.equal((await refusal(provider.request('eth_chainId'))).code, CODES.INVALID_REQUEST);
    assert.equal((await refusal(provider.request({}))).code, CODES.INVALID_REQUEST);
    const unnamed = await refusal(provider.request({ method: 'personal_sign', params: { message: '0x68' } }));
    assert.equal(unnamed.code, CODES.INVALID_PARAMS);
    assert.deepEqual(chain.calls, []);
  });

  test('read-only methods go to the chain RPC as they are', async () => {
    const { provider, chain } = cardWith();
    assert.equal(await provider.request({ method: 'eth_getBalance', params: [ADDRESS, 'latest'] }), '0xde0b6b3a7640000');
    assert.deepEqual(chain.calls.at(-1), ['eth_getBalance', [ADDRESS, 'latest']]);
  });

  test('the chain RPC’s own error reaches the page with its code', async () => {
    const chain = fakeChain({ eth_call: () => { throw new ProviderRpcError(3, 'execution reverted', '0x08c379a0'); } });
    const error = await refusal(cardWith({ chain }).provider.request({ method: 'eth_call', params: [{ to: TO }, 'latest'] }));
    assert.deepEqual([error.code, error.message, error.data], [3, 'execution reverted', '0x08c379a0']);
  });
});

describe('accounts', () => {
  test('no account until the user connects; a refusal is 4001', async () => {
    const { provider, user } = cardWith({ user: fakeUser({ connects: false }) });
    assert.deepEqual(await provider.request({ method: 'eth_accounts' }), []);
    assert.equal((await refusal(provider.request({ method: 'eth_requestAccounts' }))).code, CODES.USER_REJECTED);
    assert.deepEqual(await provider.request({ method: 'eth_accounts' }), []);
    assert.equal(user.asked.length, 1);
  });

  test('connecting gives the checksummed account, once, and says accountsChanged', async () => {
    const { provider, user } = cardWith();
    const changes = [];
    provider.on('accountsChanged', (accounts) => changes.push(accounts));
    const [first, second] = await Promise.all([
      provider.request({ method: 'eth_requestAccounts' }),
      provider.request({ method: 'eth_requestAccounts' }),
    ]);
    assert.deepEqual([first, second], [[ADDRESS], [ADDRESS]]);
    assert.deepEqual(await provider.request({ method: 'eth_accounts' }), [ADDRESS]);
    assert.equal(user.asked.length, 1); // the second request waited for the first answer
    assert.deepEqual(changes, [[ADDRESS]]);
  });

  test('locking forgets the key: accountsChanged [] and signing is 4100 again', async () => {
    const { provider } = await connected();
    const changes = [];
    const listener = (accounts) => changes.push(accounts);
    provider.on('accountsChanged', listener);
    provider.lock();
    provider.removeListener('accountsChanged', listener);
    provider.lock();
    assert.deepEqual(changes, [[]]);
    assert.deepEqual(await provider.request({ method: 'eth_accounts' }), []);
    const error = await refusal(provider.request({ method: 'personal_sign', params: ['0x68', ADDRESS] }));
    assert.equal(error.code, CODES.UNAUTHORIZED);
  });
});

describe('personal_sign and eth_signTypedData_v4', () => {
  test('before connecting, or for another account, signing is 4100 and the user is not asked', async () => {
    const { provider, user } = cardWith();
    assert.equal((await refusal(provider.request({ method: 'personal_sign', params: ['0x68', ADDRESS] }))).code, 4100);
    await provider.request({ method: 'eth_requestAccounts' });
    const error = await refusal(provider.request({ method: 'personal_sign', params: ['0x68', TO] }));
    assert.equal(error.code, CODES.UNAUTHORIZED);
    assert.deepEqual(user.asked.map(({ kind }) => kind), ['connect']);
  });

  test('the user sees the message as text; the EIP-191 signature recovers to the card', async () => {
    const { provider, user } = await connected();
    const text = 'Sign in to the demo dapp';
    const message = ethHex.encode(new TextEncoder().encode(text));
    const signature = await provider.request({ method: 'personal_sign', params: [message, ADDRESS.toLowerCase()] });
    assert.equal(eip191Signer.recoverAddress(signature, new TextEncoder().encode(text)), ADDRESS);
    assert.deepEqual(user.asked[0].rows, [
      ['Request', 'Sign a message'],
      ['Account', ADDRESS],
      ['Message', text],
    ]);
  });

  test('bytes that are not text are shown as hex', () => {
    const rows = describeRequest({ kind: 'message', account: ADDRESS, message: Uint8Array.of(0xff, 0x00, 0x10) });
    assert.deepEqual(rows.at(-1), ['Message (hex)', '0xff0010']);
  });

  test('a rejected signature is 4001 and nothing is returned', async () => {
    const { provider } = await connected({ user: fakeUser({ approves: false }) });
    const error = await refusal(provider.request({ method: 'personal_sign', params: ['0x68', ADDRESS] }));
    assert.equal(error.code, CODES.USER_REJECTED);
  });

  test('typed data: signed once approved, recovering to the card; another chain’s is refused unasked', async () => {
    const typed = {
      types: {
        EIP712Domain: [{ name: 'name', type: 'string' }, { name: 'chainId', type: 'uint256' }],
        Mail: [{ name: 'contents', type: 'string' }, { name: 'amount', type: 'uint256' }],
      },
      primaryType: 'Mail',
      domain: { name: 'Demo', chainId: 31337 },
      message: { contents: 'hello', amount: '5' },
    };
    const { provider, user } = await connected();
    const signature = await provider.request({ method: 'eth_signTypedData_v4', params: [ADDRESS, JSON.stringify(typed)] });
    assert.equal(recoverAddressTyped(signature, typed), ADDRESS);
    assert.deepEqual(user.asked[0].rows.slice(0, 3), [
      ['Request', 'Sign typed data (Mail)'],
      ['Account', ADDRESS],
      ['Domain', 'Demo'],
    ]);
    const elsewhere = { ...typed, domain: { name: 'Demo', chainId: 1 } };
    const error = await refusal(provider.request({ method: 'eth_signTypedData_v4', params: [ADDRESS, elsewhere] }));
    assert.equal(error.code, CODES.INVALID_PARAMS);
    const broken = { ...typed, message: { contents: 'hello', amount: 'five' } };
    assert.equal((await refusal(provider.request({ method: 'eth_signTypedData_v4', params: [ADDRESS, broken] }))).code, -32602);
    assert.equal(user.asked.length, 1);
  });
});

describe('transactions', () => {
  const FACTS = { chainId: CHAIN_ID, nonce: 0n, gasLimit: 21_000n, baseFeePerGas: GWEI / 2n, maxPriorityFeePerGas: GWEI };

  test('a fixed nonce and fees give exactly the bytes eth_account signs, from the card’s address', () => {
    const transaction = prepareTransaction({ from: ADDRESS, to: TO.toLowerCase(), value: '0x2386f26fc10000' }, FACTS);
    assert.deepEqual(
      [transaction.type, transaction.raw.maxFeePerGas, transaction.raw.maxPriorityFeePerGas, transaction.raw.gasLimit],
      ['eip1559', 2n * GWEI, GWEI, 21_000n],
    );
    const raw = signTransaction(transaction, ethHex.decode(KEY));
    assert.equal(raw, SIGNED_BY_ETH_ACCOUNT);
    const parsed = Transaction.fromHex(raw);
    assert.equal(parsed.recoverSender().address, ADDRESS);
    assert.equal(parsed.hash, HASH_BY_ETH_ACCOUNT);
    assert.deepEqual([parsed.raw.to, parsed.raw.value, parsed.raw.chainId], [TO, 10n ** 16n, CHAIN_ID]);
  });

  test('what the request sets wins over what the chain suggests', () => {
    const transaction = prepareTransaction(
      { to: TO, nonce: '0x7', gas: '0x7530', maxFeePerGas: '0x5', maxPriorityFeePerGas: '0x2', data: '0xabcd' },
      FACTS,
    );
    const { nonce, gasLimit, maxFeePerGas, maxPriorityFeePerGas, data } = transaction.raw;
    assert.deepEqual([nonce, gasLimit, maxFeePerGas, maxPriorityFeePerGas, data], [7n, 30_000n, 5n, 2n, '0xabcd']);
    const legacy = prepareTransaction({ to: TO, gasPrice: '0x3' }, FACTS).raw;
    assert.deepEqual([legacy.maxFeePerGas, legacy.maxPriorityFeePerGas], [3n, 3n]);
  });

  test('malformed requests are -32602, another chain’s 4901', () => {
    for (const [request, pattern] of [
      [{ value: '0x1' }, /does not create contracts/],
      [{ to: TO.replace('E7', 'e7') }, /checksum/],
      [{ to: '0x1234' }, /40 hex digits/],
      [{ to: TO, value: '10' }, /hex quantity/],
      [{ to: TO, data: '0xabc' }, /hex bytes/],
      [{ to: TO, maxFeePerGas: '0x1', maxPriorityFeePerGas: '0x2' }, /above maxFeePerGas/],
    ]) {
      assert.throws(() => prepareTransaction(request, FACTS), (error) => error.code === -32602 && pattern.test(error.message));
    }
    assert.throws(() => prepareTransaction({ to: TO, chainId: '0x1' }, FACTS), { code: CODES.CHAIN_DISCONNECTED });
  });

  test('eth_sendTransaction reads nonce, gas and fees from the chain, asks, sends the signed bytes', async () => {
    const { provider, chain, user } = await connected();
    const hash = await provider.request({
      method: 'eth_sendTransaction',
      params: [{ from: ADDRESS, to: TO, value: '0x2386f26fc10000' }],
    });
    assert.equal(hash, HASH_BY_ETH_ACCOUNT);
    assert.deepEqual(chain.sent(), [['eth_sendRawTransaction', [SIGNED_BY_ETH_ACCOUNT]]]);
    assert.deepEqual(
      chain.calls.find(([method]) => method === 'eth_getTransactionCount'),
      ['eth_getTransactionCount', [ADDRESS, 'pending']],
    );
    assert.deepEqual(user.asked[0].rows, [
      ['Request', 'Send a transaction'],
      ['Account', ADDRESS],
      ['To', TO],
      ['Amount', '0.01 ETH'],
      ['Network fee, at most', '0.000042 ETH'],
      ['Total, at most', '0.010042 ETH'],
      ['Chain, nonce', '31337, 0'],
    ]);
  });

  test('a rejected transaction is 4001 and nothing is sent', async () => {
    const { provider, chain } = await connected({ user: fakeUser({ approves: false }) });
    const error = await refusal(
      provider.request({ method: 'eth_sendTransaction', params: [{ from: ADDRESS, to: TO, value: '0x1' }] }),
    );
    assert.equal(error.code, CODES.USER_REJECTED);
    assert.deepEqual(chain.sent(), []);
  });

  test('from another account is 4100; a malformed one -32602 before the chain is asked for fees', async () => {
    const { provider, chain, user } = await connected();
    const other = await refusal(provider.request({ method: 'eth_sendTransaction', params: [{ from: TO, to: TO }] }));
    assert.equal(other.code, CODES.UNAUTHORIZED);
    const before = chain.calls.length;
    const bad = await refusal(provider.request({ method: 'eth_sendTransaction', params: [{ from: ADDRESS, to: '0x12' }] }));
    assert.equal(bad.code, CODES.INVALID_PARAMS);
    assert.deepEqual(chain.calls.slice(before).map(([method]) => method).filter((method) => method !== 'eth_chainId'), []);
    assert.deepEqual(user.asked, []);
  });

  test('a chain answering another hash than the signed transaction’s is an error, not a success', async () => {
    const chain = fakeChain({ eth_sendRawTransaction: () => `0x${'00'.repeat(32)}` });
    const { provider } = await connected({ chain });
    const error = await refusal(
      provider.request({ method: 'eth_sendTransaction', params: [{ from: ADDRESS, to: TO, value: '0x1' }] }),
    );
    assert.match(error.message, /answered hash 0x0{64}/);
  });

  test('the card locked while the user was asked: nothing is signed', async () => {
    let provider;
    const user = fakeUser({
      approves: () => {
        provider.lock();
        return true;
      },
    });
    const card = await connected({ user });
    provider = card.provider;
    const error = await refusal(provider.request({ method: 'personal_sign', params: ['0x68', ADDRESS] }));
    assert.equal(error.code, CODES.UNAUTHORIZED);
  });
});

describe('EIP-6963 and the network', () => {
  test('the card announces itself now and on every request, with frozen info', () => {
    const window = new EventTarget();
    const provider = cardWith().provider;
    const seen = [];
    window.addEventListener('eip6963:announceProvider', (event) => seen.push(event.detail));
    const stop = announceProvider(window, provider);
    window.dispatchEvent(new Event('eip6963:requestProvider'));
    stop();
    window.dispatchEvent(new Event('eip6963:requestProvider'));
    assert.equal(seen.length, 2);
    const [{ info, provider: announced }] = seen;
    assert.equal(announced, provider);
    assert.equal(seen[1].info.uuid, info.uuid);
    assert.match(info.uuid, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    assert.equal(info.name, 'Card');
    assert.equal(info.rdns, CARD_RDNS);
    assert.match(info.icon, /^data:image\/svg\+xml;base64,/);
    assert.ok(Object.isFrozen(seen[0]) && Object.isFrozen(info));
  });

  test('httpRpc: JSON-RPC over POST; a failing endpoint is 4900, an RPC error keeps its code', async () => {
    const requests = [];
    const answer = (body, status = 200) => async (url, init) => {
      requests.push([url, init]);
      return new Response(JSON.stringify(body), { status });
    };
    assert.equal(await httpRpc('http://chain', answer({ jsonrpc: '2.0', id: 1, result: '0x7' }))('eth_blockNumber'), '0x7');
    assert.deepEqual(JSON.parse(requests[0][1].body), { jsonrpc: '2.0', id: 1, method: 'eth_blockNumber', params: [] });
    assert.equal(requests[0][1].credentials, 'omit');
    const error = await refusal(httpRpc('http://chain', answer({ error: { code: -32000, message: 'nonce too low' } }))('x'));
    assert.deepEqual([error.code, error.message], [-32000, 'nonce too low']);
    assert.equal((await refusal(httpRpc('http://chain', answer({}, 502))('x'))).code, 4900);
    const unreachable = async () => { throw new TypeError('Failed to fetch'); };
    assert.equal((await refusal(httpRpc('http://chain', unreachable)('x'))).code, 4900);
  });

  test('the node’s config names the chain; without a published chain RPC the card is disconnected', async () => {
    const config = (body) => async () => new Response(JSON.stringify(body));
    const network = await nodeNetwork('/api/config', config({ chainId: '31337', chainRpcUrl: 'http://127.0.0.1:8545' }))();
    assert.equal(network.chainId, CHAIN_ID);
    for (const chainRpcUrl of [null, 'ws://127.0.0.1:8545']) {
      const error = await refusal(nodeNetwork('/api/config', config({ chainId: '31337', chainRpcUrl }))());
      assert.equal(error.code, CODES.DISCONNECTED);
    }
  });
});
