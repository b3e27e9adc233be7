// The card as an EIP-1193 provider, announced per EIP-6963: a page can ask the card for its account,
// have it sign (EIP-191, EIP-712) and send EIP-1559 transactions on the node's chain.
//
// Trust model: the provider lives in the page that uses it. It holds the key only after the user
// unlocked the card's vault for it (`wallet.connect()`, the card's own dialog), and every signature
// waits for the user's yes in that dialog (`wallet.confirm()`). The dialog is consent, not isolation:
// any script running on the card's origin could read the same vault and press the same button, so
// only the card's own pages (served by the node under its CSP, no third-party script) may carry it.
// A dapp on another origin cannot reach this provider at all.
//
// Pure except for what is passed in: `network()` gives {chainId, rpc} (the chain's JSON-RPC, a
// function), `wallet` asks the user. Signatures are deterministic (RFC 6979, as eth_account makes
// them), so a transaction's bytes are reproducible from its fields.
import { Transaction, addr, eip191Signer, signTyped } from 'micro-eth-signer';

/** The EIP-1193 codes the card answers with, and JSON-RPC's own for a malformed request. */
export const CODES = Object.freeze({
  USER_REJECTED: 4001,
  UNAUTHORIZED: 4100,
  UNSUPPORTED_METHOD: 4200,
  DISCONNECTED: 4900,
  CHAIN_DISCONNECTED: 4901,
  INVALID_REQUEST: -32600,
  INVALID_PARAMS: -32602,
});

export class ProviderRpcError extends Error {
  constructor(code, message, data) {
    super(message);
    this.name = 'ProviderRpcError';
    this.code = code;
    if (data !== undefined) this.data = data;
  }
}

/** Read-only chain methods answered by the chain's RPC as they are. */
export const PASSTHROUGH = Object.freeze([
  'eth_blockNumber',
  'eth_call',
  'eth_estimateGas',
  'eth_feeHistory',
  'eth_gasPrice',
  'eth_getBalance',
  'eth_getBlockByNumber',
  'eth_getCode',
  'eth_getTransactionByHash',
  'eth_getTransactionCount',
  'eth_getTransactionReceipt',
  'eth_maxPriorityFeePerGas',
]);

export const CARD_RDNS = 'org.connext-py.card';
const ICON_SVG =
  '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 64 64"><rect width="64" height="64" rx="14" fill="#1f3a5f"/>' +
  '<rect x="12" y="20" width="40" height="26" rx="5" fill="#fff"/><rect x="12" y="26" width="40" height="5" fill="#f2a541"/></svg>';
export const CARD_ICON = `data:image/svg+xml;base64,${btoa(ICON_SVG)}`;

// Signs nothing anyone keeps: it only proves that typed data encodes before the user is asked.
const PROBE_KEY = new Uint8Array(32).fill(1);
const ADDRESS = /^0x[0-9a-fA-F]{40}$/;
const QUANTITY = /^0x(0|[1-9a-fA-F][0-9a-fA-F]*)$/;
const DATA = /^0x([0-9a-fA-F]{2})*$/;
const invalid = (message) => new ProviderRpcError(CODES.INVALID_PARAMS, message);
const rejected = () => new ProviderRpcError(CODES.USER_REJECTED, 'The user rejected the request.');
const toQuantity = (value) => `0x${BigInt(value).toString(16)}`;

function positional(params, count) {
  if (!Array.isArray(params) || params.length < count) throw invalid(`params must be an array of ${count}.`);
  return params;
}

/** A hex quantity (`0x1a`) → bigint; `fallback` when absent. */
export function quantity(value, what, fallback) {
  if (value === undefined || value === null) {
    if (fallback === undefined) throw invalid(`${what} is missing.`);
    return fallback;
  }
  if (typeof value !== 'string' || !QUANTITY.test(value)) throw invalid(`${what} must be a hex quantity like 0x1.`);
  return BigInt(value);
}

/** An address in lower case or with a valid EIP-55 checksum → checksummed. */
export function checksummed(value, what) {
  if (typeof value !== 'string' || !ADDRESS.test(value)) throw invalid(`${what} must be 0x and 40 hex digits.`);
  if (!addr.isValid(value)) throw invalid(`${what} has a wrong checksum.`);
  return addr.addChecksum(value.toLowerCase());
}

/** personal_sign's message: hex bytes (`0x…`, what dapps send) or, leniently, plain text. */
export function messageBytes(message) {
  if (typeof message !== 'string') throw invalid('The message must be a string (0x-prefixed hex, or text).');
  if (DATA.test(message)) return Uint8Array.from(message.slice(2).match(/../g) ?? [], (byte) => parseInt(byte, 16));
  return new TextEncoder().encode(message);
}

/** The message as the user reads it: its text when it is printable UTF-8, else its hex. */
export function readableMessage(bytes) {
  try {
    const text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
    // eslint-disable-next-line no-control-regex
    if (!/[\u0000-\u0008\u000e-\u001f\u007f]/.test(text)) return { text, hex: null };
  } catch {
    // not UTF-8: shown as hex
  }
  return { text: null, hex: `0x${Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('')}` };
}

/** eth_signTypedData_v4's payload (a JSON string or an object), refused when bound to another chain. */
export function typedDataFor(payload, chainId) {
  let typed = payload;
  if (typeof payload === 'string') {
    try {
      typed = JSON.parse(payload);
    } catch {
      throw invalid('The typed data is not JSON.');
    }
  }
  if (!typed || typeof typed !== 'object' || !typed.types || !typed.domain || !typed.message || !typed.primaryType) {
    throw invalid('The typed data needs types, primaryType, domain and message (EIP-712).');
  }
  if (typed.domain.chainId !== undefined) {
    let bound;
    try {
      bound = BigInt(typed.domain.chainId);
    } catch {
      throw invalid('The typed data’s domain.chainId is not a number.');
    }
    if (bound !== chainId) throw invalid(`The typed data is for chain ${bound}; the card is on chain ${chainId}.`);
  }
  return typed;
}

/**
 * The EIP-1559 transaction an eth_sendTransaction request asks for, with what the request leaves
 * out taken from `chain` (facts read from the chain RPC: nonce, gasLimit, baseFeePerGas,
 * maxPriorityFeePerGas). maxFeePerGas defaults to twice the base fee plus the tip, so the
 * transaction survives a few full blocks. Refuses contract creation: the card sends to an address.
 */
export function prepareTransaction(request, { chainId, nonce, gasLimit, baseFeePerGas, maxPriorityFeePerGas }) {
  if (!request || typeof request !== 'object') throw invalid('eth_sendTransaction takes one transaction object.');
  if (request.to === undefined || request.to === null || request.to === '') {
    throw invalid('The card sends to an address; it does not create contracts.');
  }
  const data = request.data ?? request.input ?? '0x';
  if (typeof data !== 'string' || !DATA.test(data)) throw invalid('data must be 0x-prefixed hex bytes.');
  let maxFee = quantity(request.maxFeePerGas, 'maxFeePerGas', null);
  let tip = quantity(request.maxPriorityFeePerGas, 'maxPriorityFeePerGas', null);
  const gasPrice = quantity(request.gasPrice, 'gasPrice', null);
  if (gasPrice !== null && maxFee === null) maxFee = gasPrice; // a legacy price caps what the user pays
  tip ??= maxFee !== null && maxFee < maxPriorityFeePerGas ? maxFee : maxPriorityFeePerGas;
  maxFee ??= 2n * baseFeePerGas + tip;
  if (tip > maxFee) throw invalid('maxPriorityFeePerGas is above maxFeePerGas.');
  if (request.chainId !== undefined && quantity(request.chainId, 'chainId') !== chainId) {
    const asked = BigInt(request.chainId);
    throw new ProviderRpcError(CODES.CHAIN_DISCONNECTED, `The transaction is for chain ${asked}; the card is on chain ${chainId}.`);
  }
  try {
    return Transaction.prepare({
      to: checksummed(request.to, 'to'),
      value: quantity(request.value, 'value', 0n),
      data,
      nonce: quantity(request.nonce, 'nonce', nonce),
      gasLimit: quantity(request.gas ?? request.gasLimit, 'gas', gasLimit),
      maxFeePerGas: maxFee,
      maxPriorityFeePerGas: tip,
      chainId,
    });
  } catch (error) {
    if (error instanceof ProviderRpcError) throw error;
    const fields = (error.errors ?? []).map(({ field, error: problem }) => `${field}: ${problem}`);
    throw invalid(`The transaction is not valid: ${fields.length ? fields.join('; ') : error.message}.`);
  }
}

/** The signed transaction's raw bytes, hex. */
export function signTransaction(transaction, privateKey) {
  return transaction.signBy(privateKey, false).toHex();
}

/** What the confirmation shows: [label, value] rows saying what is signed, for whom, for how much. */
export function describe(request) {
  const rows = [['Account', request.account]];
  if (request.kind === 'connect') return [['Request', 'Connect this page to your card'], ...rows];
  if (request.kind === 'message') {
    const { text, hex } = readableMessage(request.message);
    return [['Request', 'Sign a message'], ...rows, text === null ? ['Message (hex)', hex] : ['Message', text]];
  }
  if (request.kind === 'typedData') {
    const { domain, primaryType, message } = request.typed;
    return [
      ['Request', `Sign typed data (${primaryType})`],
      ...rows,
      ['Domain', [domain.name, domain.version && `v${domain.version}`].filter(Boolean).join(' ') || '(unnamed)'],
      ...(domain.verifyingContract ? [['Contract', domain.verifyingContract]] : []),
      ['Message', JSON.stringify(message, (_, value) => (typeof value === 'bigint' ? value.toString() : value), 2)],
    ];
  }
  const { to, value, data, gasLimit, maxFeePerGas, nonce, chainId } = request.transaction.raw;
  return [
    ['Request', 'Send a transaction'],
    ...rows,
    ['To', to],
    ['Amount', `${formatEth(value)} ETH`],
    ['Network fee, at most', `${formatEth(gasLimit * maxFeePerGas)} ETH`],
    ['Total, at most', `${formatEth(value + gasLimit * maxFeePerGas)} ETH`],
    ...(data !== '0x' ? [['Data', data]] : []),
    ['Chain, nonce', `${chainId}, ${nonce}`],
  ];
}

function formatEth(wei) {
  const whole = wei / 10n ** 18n;
  const fraction = (wei % 10n ** 18n).toString().padStart(18, '0').replace(/0+$/, '');
  return fraction ? `${whole}.${fraction}` : `${whole}`;
}

/** A JSON-RPC client over HTTP(S) fetch; an unreachable or failing endpoint is 4900 (disconnected). */
export function httpRpc(url, fetchImpl = globalThis.fetch) {
  let id = 0;
  return async (method, params = []) => {
    let body;
    try {
      const response = await fetchImpl(url, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ jsonrpc: '2.0', id: ++id, method, params }),
        credentials: 'omit',
        referrerPolicy: 'no-referrer',
      });
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      body = await response.json();
    } catch (error) {
      throw new ProviderRpcError(CODES.DISCONNECTED, `The chain RPC does not answer (${error.message}).`);
    }
    if (body.error) throw new ProviderRpcError(body.error.code, body.error.message, body.error.data);
    return body.result;
  };
}

/** The node's chain: its id from GET /api/config, the chain RPC it publishes, checked to agree. */
export function nodeNetwork(configUrl, fetchImpl = globalThis.fetch) {
  return async () => {
    let config;
    try {
      const response = await fetchImpl(configUrl, { credentials: 'omit' });
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      config = await response.json();
    } catch (error) {
      throw new ProviderRpcError(CODES.DISCONNECTED, `The node does not answer (${error.message}).`);
    }
    if (!config.chainRpcUrl) {
      throw new ProviderRpcError(CODES.DISCONNECTED, 'The node publishes no chain RPC (PUBLIC_CHAIN_RPC_URL).');
    }
    if (!/^https?:\/\//.test(config.chainRpcUrl)) {
      throw new ProviderRpcError(CODES.DISCONNECTED, 'The node’s chain RPC is not http(s): the card cannot reach it.');
    }
    return { chainId: BigInt(config.chainId), rpc: httpRpc(config.chainRpcUrl, fetchImpl) };
  };
}

/**
 * The EIP-1193 provider. `network()` → Promise<{chainId: bigint, rpc(method, params)}>, tried again
 * after a failure; `wallet.connect()` → Promise<{address, privateKey} | null> (null: the user said
 * no); `wallet.confirm(request)` → Promise<boolean>. One question to the user at a time.
 */
export class CardProvider {
  #network;
  #wallet;
  #loading = null;
  #chain = null; // {chainId, rpc} once the chain answered with the node's chain id
  #account = null;
  #connected = false;
  #listeners = new Map();
  #asking = Promise.resolve();

  constructor({ network, wallet }) {
    this.#network = network;
    this.#wallet = wallet;
    this.isCard = true;
  }

  on(event, listener) {
    if (!this.#listeners.has(event)) this.#listeners.set(event, new Set());
    this.#listeners.get(event).add(listener);
    return this;
  }

  removeListener(event, listener) {
    this.#listeners.get(event)?.delete(listener);
    return this;
  }

  #emit(event, value) {
    for (const listener of [...(this.#listeners.get(event) ?? [])]) {
      try {
        listener(value);
      } catch (error) {
        queueMicrotask(() => {
          throw error;
        });
      }
    }
  }

  /** Whether the chain answered last time it was asked (EIP-1193's "connected"). */
  isConnected() {
    return this.#connected;
  }

  /** Forgets the key (the page keeps none): the page must ask eth_requestAccounts again. */
  lock() {
    if (!this.#account) return;
    this.#account.privateKey.fill?.(0);
    this.#account = null;
    this.#emit('accountsChanged', []);
  }

  async request(args) {
    if (!args || typeof args !== 'object' || typeof args.method !== 'string') {
      throw new ProviderRpcError(CODES.INVALID_REQUEST, 'request() takes {method, params}.');
    }
    const params = args.params ?? [];
    if (typeof params !== 'object') throw invalid('params must be an array or an object.');
    switch (args.method) {
      case 'eth_requestAccounts':
        return this.#requestAccounts();
      case 'eth_accounts':
        return this.#account ? [this.#account.address] : [];
      case 'eth_chainId':
        return toQuantity((await this.chain()).chainId);
      case 'net_version':
        return (await this.chain()).chainId.toString();
      case 'personal_sign':
        return this.#personalSign(positional(params, 2));
      case 'eth_signTypedData_v4':
        return this.#signTypedData(positional(params, 2));
      case 'eth_sendTransaction':
        return this.#sendTransaction(positional(params, 1));
      default:
        if (PASSTHROUGH.includes(args.method)) return this.#rpc(args.method, params);
        throw new ProviderRpcError(CODES.UNSUPPORTED_METHOD, `The card does not support ${args.method}.`);
    }
  }

  /** The node's chain, once its RPC answered with the node's chain id; 4900 or 4901 otherwise. */
  async chain() {
    if (this.#chain) return this.#chain;
    this.#loading ??= (async () => {
      const { chainId, rpc } = await this.#network();
      const served = BigInt(await rpc('eth_chainId', []));
      if (served !== chainId) {
        const message = `The chain RPC serves chain ${served}; the node runs on chain ${chainId}.`;
        throw new ProviderRpcError(CODES.CHAIN_DISCONNECTED, message);
      }
      this.#chain = { chainId, rpc };
      return this.#chain;
    })().finally(() => {
      this.#loading = null;
    });
    try {
      const chain = await this.#loading;
      this.#setConnected(true, chain.chainId);
      return chain;
    } catch (error) {
      this.#setConnected(false, error);
      throw error;
    }
  }

  #setConnected(connected, detail) {
    if (connected === this.#connected) return;
    this.#connected = connected;
    if (connected) this.#emit('connect', { chainId: toQuantity(detail) });
    else {
      const error = detail instanceof ProviderRpcError ? detail : new ProviderRpcError(CODES.DISCONNECTED, String(detail));
      this.#emit('disconnect', error);
    }
  }

  async #rpc(method, params) {
    const { rpc, chainId } = await this.chain();
    try {
      const result = await rpc(method, params);
      this.#setConnected(true, chainId);
      return result;
    } catch (error) {
      if (error?.code === CODES.DISCONNECTED) this.#setConnected(false, error);
      throw error;
    }
  }

  /** One dialog at a time: a second request waits for the first to be answered. */
  #ask(question) {
    const answer = this.#asking.then(question);
    this.#asking = answer.catch(() => undefined);
    return answer;
  }

  #signer(address) {
    if (!this.#account) throw new ProviderRpcError(CODES.UNAUTHORIZED, 'Connect first: eth_requestAccounts.');
    if (checksummed(address, 'The account') !== this.#account.address) {
      throw new ProviderRpcError(CODES.UNAUTHORIZED, `The card holds ${this.#account.address}, not ${address}.`);
    }
    return this.#account;
  }

  async #confirmed(request) {
    const yes = await this.#ask(() => this.#wallet.confirm({ ...request, rows: describe(request) }));
    if (!yes) throw rejected();
  }

  async #requestAccounts() {
    if (this.#account) return [this.#account.address];
    const account = await this.#ask(() => this.#account ?? this.#wallet.connect());
    if (!account) throw rejected();
    if (this.#account !== account) {
      this.#account = { address: addr.addChecksum(account.address.toLowerCase()), privateKey: account.privateKey };
      this.#emit('accountsChanged', [this.#account.address]);
    }
    return [this.#account.address];
  }

  async #personalSign([message, address]) {
    const account = this.#signer(address);
    const bytes = messageBytes(message);
    await this.#confirmed({ kind: 'message', account: account.address, message: bytes });
    return eip191Signer.sign(bytes, this.#keyOf(account), false);
  }

  async #signTypedData([address, payload]) {
    const account = this.#signer(address);
    const typed = typedDataFor(payload, (await this.chain()).chainId);
    try {
      signTyped(typed, PROBE_KEY, false); // a payload that does not encode is refused before the user is asked
    } catch (error) {
      throw invalid(`The typed data does not encode: ${error.message}`);
    }
    await this.#confirmed({ kind: 'typedData', account: account.address, typed });
    return signTyped(typed, this.#keyOf(account), false);
  }

  async #sendTransaction([request]) {
    const account = this.#signer(request?.from);
    const { chainId } = await this.chain();
    // Checked before the chain is asked anything: a malformed request costs no round trip.
    const draft = prepareTransaction(request, { chainId, nonce: 0n, gasLimit: 21_000n, baseFeePerGas: 1n, maxPriorityFeePerGas: 1n });
    const { to, value, data } = draft.raw;
    const ask = (present, method, params) => (present === undefined ? this.#rpc(method, params) : 0n);
    const [nonce, gasLimit, block, maxPriorityFeePerGas] = await Promise.all([
      ask(request.nonce, 'eth_getTransactionCount', [account.address, 'pending']),
      ask(request.gas ?? request.gasLimit, 'eth_estimateGas', [{ from: account.address, to, value: toQuantity(value), data }]),
      ask(request.maxFeePerGas ?? request.gasPrice, 'eth_getBlockByNumber', ['latest', false]),
      ask(request.maxPriorityFeePerGas, 'eth_maxPriorityFeePerGas', []),
    ]);
    const transaction = prepareTransaction(request, {
      chainId,
      nonce: BigInt(nonce),
      gasLimit: BigInt(gasLimit),
      baseFeePerGas: BigInt(block?.baseFeePerGas ?? 0),
      maxPriorityFeePerGas: BigInt(maxPriorityFeePerGas),
    });
    await this.#confirmed({ kind: 'transaction', account: account.address, transaction });
    const signed = transaction.signBy(this.#keyOf(account), false);
    const hash = await this.#rpc('eth_sendRawTransaction', [signed.toHex()]);
    if (String(hash).toLowerCase() !== signed.hash.toLowerCase()) {
      throw new ProviderRpcError(CODES.DISCONNECTED, `The chain RPC answered hash ${hash} for transaction ${signed.hash}.`);
    }
    return signed.hash;
  }

  /** The key, unless the card was locked while the user was being asked. */
  #keyOf(account) {
    if (this.#account !== account) throw new ProviderRpcError(CODES.UNAUTHORIZED, 'The card was locked meanwhile.');
    return account.privateKey;
  }
}

/** EIP-6963's provider info for the card: a fresh uuid per page load. */
export function cardInfo(uuid = globalThis.crypto.randomUUID()) {
  return Object.freeze({ uuid, name: 'Card', icon: CARD_ICON, rdns: CARD_RDNS });
}

/** Announces `provider` on `target` (the window) now and on every `eip6963:requestProvider`.
 *  Returns the function that stops answering. */
export function announceProvider(target, provider, info = cardInfo()) {
  const detail = Object.freeze({ info, provider });
  const announce = () => target.dispatchEvent(new CustomEvent('eip6963:announceProvider', { detail }));
  target.addEventListener('eip6963:requestProvider', announce);
  announce();
  return () => target.removeEventListener('eip6963:requestProvider', announce);
}
