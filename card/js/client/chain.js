// The card's own readings of the chain over JSON-RPC (`fetch`): the channel's deposit totals, so a
// deposit credit is checked against what the card itself read, never the node's word; and a
// withdrawal's receipt. Mirrors connext/chain/channel_reads.py: before the channel is deployed all the
// address holds is the user's (the node deposits through the contract, nothing was withdrawn).

import { ZERO_ADDRESS, keccak256, utf8 } from '../bytes.js';
import { ChainError } from './errors.js';
import { unbound } from './node_api.js';

const selector = (signature) => keccak256(utf8(signature)).slice(0, 10);
const TOTAL_DEPOSITS_NODE = selector('getTotalDepositsNode(address)');
const TOTAL_DEPOSITS_USER = selector('getTotalDepositsUser(address)');
const BALANCE_OF = selector('balanceOf(address)');
const word = (address) => address.slice(2).toLowerCase().padStart(64, '0');
const toBlock = (block) => '0x' + BigInt(block).toString(16);

export class ChainReader {
  constructor(rpcUrl, { fetch = globalThis.fetch } = {}) {
    this.rpcUrl = rpcUrl;
    this.fetch = unbound(fetch);
    this.nextId = 1;
  }

  async call(method, params = []) {
    let reply;
    try {
      const response = await this.fetch(this.rpcUrl, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ jsonrpc: '2.0', id: this.nextId++, method, params }),
      });
      reply = await response.json();
    } catch (error) {
      throw new ChainError('chain_unavailable', `${method}: the chain's RPC did not answer (${error?.message ?? error})`);
    }
    if (reply?.error) throw new ChainError('chain_rpc', `${method}: ${reply.error.message ?? JSON.stringify(reply.error)}`);
    return reply?.result;
  }

  async chainId() {
    return BigInt(await this.call('eth_chainId'));
  }

  async blockNumber() {
    return BigInt(await this.call('eth_blockNumber'));
  }

  /** `[node, user]` deposit totals (BigInt) of `assetId` in the channel at `block` (default: latest). */
  async depositTotals(channelAddress, assetId, block = null) {
    const at = toBlock(block ?? (await this.blockNumber()));
    const code = await this.call('eth_getCode', [channelAddress, at]);
    if (code && code !== '0x') {
      const [node, user] = await Promise.all(
        [TOTAL_DEPOSITS_NODE, TOTAL_DEPOSITS_USER].map((sel) => this.call('eth_call', [{ to: channelAddress, data: sel + word(assetId) }, at])),
      );
      return [BigInt(node), BigInt(user)];
    }
    if (assetId === ZERO_ADDRESS) return [0n, BigInt(await this.call('eth_getBalance', [channelAddress, at]))];
    const tokenCode = await this.call('eth_getCode', [assetId, at]);
    if (!tokenCode || tokenCode === '0x') return [0n, 0n];
    return [0n, BigInt(await this.call('eth_call', [{ to: assetId, data: BALANCE_OF + word(channelAddress) }, at]))];
  }

  /** The receipt of `txHash` once mined (null before). */
  receipt(txHash) {
    return this.call('eth_getTransactionReceipt', [txHash]);
  }
}
