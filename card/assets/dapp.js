// The demo dapp (/card/dapp/): a page that uses the card as a dapp uses any wallet. It never imports
// the card's provider: it finds wallets by EIP-6963 and speaks EIP-1193 to the one the user picks.
// The card itself is injected first (inject.js), as a wallet extension's script would be.
import './card.css';
import './dapp.css';
import { ethHex } from 'micro-eth-signer';
import { injectCard } from './inject.js';
import { formatEther, parseAddress, parseEther } from './links.js';

const byId = (id) => document.getElementById(id);
const state = { wallets: new Map(), provider: null, account: null };
const RECEIPT_POLLS = 120;
const RECEIPT_POLL_MS = 500;

/** An error as the dapp shows it: an EIP-1193 code first, when there is one. */
function explain(error) {
  const text = error?.message || String(error);
  return Number.isInteger(error?.code) ? `${error.code}: ${text}` : text;
}

function say(form, text, kind = 'info', code = undefined) {
  const message = form.querySelector('.message');
  message.textContent = text;
  message.dataset.kind = kind;
  message.dataset.code = code === undefined ? '' : String(code);
}

function showWallet({ info, provider }) {
  if (state.wallets.has(info.uuid)) return;
  state.wallets.set(info.uuid, provider);
  const icon = document.createElement('img');
  icon.src = info.icon;
  icon.alt = '';
  icon.className = 'wallet-icon';
  const name = document.createElement('span');
  name.className = 'wallet-name';
  name.textContent = `${info.name} (${info.rdns})`;
  const connect = document.createElement('button');
  connect.type = 'button';
  connect.className = 'primary';
  connect.textContent = 'Connect';
  connect.dataset.rdns = info.rdns;
  connect.addEventListener('click', () => connectTo(provider, connect));
  const item = document.createElement('li');
  item.dataset.rdns = info.rdns;
  item.append(icon, name, connect);
  byId('wallets').querySelector('.empty')?.remove();
  byId('wallets').append(item);
}

async function connectTo(provider, button) {
  const message = byId('wallets-message');
  button.disabled = true;
  message.textContent = 'Waiting for the wallet…';
  message.dataset.kind = 'info';
  try {
    const [account] = await provider.request({ method: 'eth_requestAccounts' });
    const chainId = await provider.request({ method: 'eth_chainId' });
    state.provider = provider;
    provider.on('accountsChanged', (accounts) => setAccount(accounts[0] ?? null));
    byId('dapp-chain').textContent = `chain ${BigInt(chainId)}`;
    byId('dapp-chain').dataset.state = 'online';
    message.textContent = '';
    setAccount(account);
  } catch (error) {
    message.textContent = explain(error);
    message.dataset.kind = 'error';
    message.dataset.code = String(error?.code ?? '');
  } finally {
    button.disabled = false;
  }
}

function setAccount(account) {
  state.account = account;
  byId('dapp').dataset.account = account ?? '';
  for (const id of ['account-panel', 'dapp-send', 'dapp-sign']) byId(id).hidden = !account;
  byId('dapp-account').textContent = account ?? '';
  if (account) refreshBalance();
}

async function refreshBalance() {
  const balance = byId('dapp-balance');
  try {
    const wei = await state.provider.request({ method: 'eth_getBalance', params: [state.account, 'latest'] });
    balance.textContent = `${formatEther(BigInt(wei))} ETH`;
    balance.dataset.wei = BigInt(wei).toString();
  } catch (error) {
    balance.textContent = explain(error);
  }
}

const pause = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function receiptOf(hash) {
  for (let poll = 0; poll < RECEIPT_POLLS; poll += 1) {
    const receipt = await state.provider.request({ method: 'eth_getTransactionReceipt', params: [hash] });
    if (receipt) return receipt;
    await pause(RECEIPT_POLL_MS);
  }
  throw new Error(`No receipt for ${hash} after ${(RECEIPT_POLLS * RECEIPT_POLL_MS) / 1000} s.`);
}

function onSubmit(id, action) {
  const form = byId(id);
  const button = form.querySelector('button[type=submit]');
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    if (button.disabled) return;
    button.disabled = true;
    try {
      await action(Object.fromEntries(new FormData(form)), form);
    } catch (error) {
      say(form, explain(error), 'error', error?.code);
    } finally {
      button.disabled = false;
    }
  });
}

function wireForms() {
  onSubmit('dapp-send', async (fields, form) => {
    const to = parseAddress(fields.to, 'receiver address');
    const value = parseEther(fields.amount);
    byId('send-hash').textContent = '';
    byId('send-status').textContent = '';
    delete byId('send-status').dataset.status;
    say(form, 'Confirm in the card…');
    const hash = await state.provider.request({
      method: 'eth_sendTransaction',
      params: [{ from: state.account, to, value: `0x${value.toString(16)}` }],
    });
    byId('send-hash').textContent = hash;
    say(form, 'Sent; waiting for the receipt…');
    const receipt = await receiptOf(hash);
    const status = receipt.status === '0x1' ? 'success' : 'reverted';
    byId('send-status').textContent = `${status} in block ${BigInt(receipt.blockNumber)}`;
    byId('send-status').dataset.status = status;
    say(form, status === 'success' ? 'Mined.' : 'Mined, but reverted.', status === 'success' ? 'info' : 'error');
    await refreshBalance();
  });
  onSubmit('dapp-sign', async (fields, form) => {
    byId('sign-signature').textContent = '';
    say(form, 'Confirm in the card…');
    const message = ethHex.encode(new TextEncoder().encode(fields.message));
    const signature = await state.provider.request({ method: 'personal_sign', params: [message, state.account] });
    byId('sign-signature').textContent = signature;
    say(form, 'Signed.');
  });
}

function start() {
  const root = byId('dapp');
  injectCard(window, { configUrl: root.dataset.configUrl });
  window.addEventListener('eip6963:announceProvider', (event) => showWallet(event.detail));
  window.dispatchEvent(new Event('eip6963:requestProvider'));
  wireForms();
  root.dataset.state = 'ready';
}

if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
else start();
