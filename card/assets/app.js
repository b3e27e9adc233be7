// The card's screens: hash routing, the vault's forms, QR requests and scans, and the one error
// area. The money screens check what they can (addresses, amounts) and wait, saying "connecting…",
// until a protocol client is attached (attachClient); they show no balance or result of their own.
import {
  ETH,
  LinkError,
  formatEther,
  parseAddress,
  parseEther,
  parseRoute,
  parseScanned,
  redeemFields,
  redeemRoute,
  requestLink,
  sendFields,
} from './links.js';
import { decodePicture, qrImageSource, scanCamera } from './qr.js';
import * as vault from './vault.js';

const OPEN_WHILE_LOCKED = new Set(['setup', 'unlock', 'redeem']);
const TITLES = {
  home: 'Home', deposit: 'Deposit', send: 'Send', request: 'Request', link: 'Link payment',
  redeem: 'Redeem', cashout: 'Cash out', scan: 'Scan', settings: 'Settings',
};
const NOT_CONNECTED = 'connecting… The card is not connected to the node yet: nothing was signed or sent.';

const state = {
  account: null, // {address, privateKey} while unlocked; the key exists nowhere else
  client: null,
  freshPhrase: null, // shown once on the backup screen right after creating a card
  redeem: null, // {paymentId, secret} of the link being looked at
  stopCamera: null,
  accountListeners: new Set(),
};

const byId = (id) => document.getElementById(id);
const screens = () => document.querySelectorAll('section.screen');

export function showError(error) {
  const text = error instanceof Error || error?.message ? error.message : String(error);
  byId('card-error-text').textContent = text || 'Something went wrong.';
  byId('card-error').hidden = false;
}

function say(form, text, kind = 'info') {
  const message = form.querySelector('.message');
  message.textContent = text;
  message.dataset.kind = kind;
}

function showScreen(name) {
  for (const section of screens()) section.hidden = section.dataset.screen !== name;
  const root = byId('card');
  root.dataset.screen = name;
  byId('tabs').hidden = !state.account || name === 'backup';
  for (const tab of document.querySelectorAll('[data-tab]')) {
    tab.toggleAttribute('aria-current', tab.dataset.tab === name);
  }
  document.title = `${TITLES[name] ?? 'Card'} · Card`;
  window.scrollTo(0, 0);
}

function gateScreen() {
  return vault.hasVault() ? 'unlock' : 'setup';
}

function showGate(wanted) {
  const name = gateScreen();
  if (name === 'unlock') {
    byId('unlock-address').textContent = `Card ${vault.storedAddress()}`;
    const next = byId('unlock-next');
    next.hidden = !TITLES[wanted] || wanted === 'home';
    next.textContent = `After unlocking, the card opens ${TITLES[wanted] ?? ''}.`;
  }
  showScreen(name);
}

function stopCamera() {
  state.stopCamera?.();
  state.stopCamera = null;
  byId('scan-video').hidden = true;
}

function route() {
  const { screen, params, unknown } = parseRoute(window.location.hash);
  if (unknown) showError(`The card has no screen “${unknown}”.`);
  if (screen !== 'scan') stopCamera();
  if (screen !== 'settings') clearPhrase(byId('reveal-phrase'));
  if (screen === 'redeem' && !window.location.hash.startsWith('#redeem')) {
    // the link as printed (`#paymentId=…&secret=…`): the same fragment, named after its screen
    window.history.replaceState(null, '', `${window.location.pathname}#redeem?${params}`);
  }
  if (!state.account && !OPEN_WHILE_LOCKED.has(screen)) return showGate(screen);
  if (screen === 'setup' || screen === 'unlock') return state.account ? showScreen('home') : showGate(screen);
  if (screen === 'backup' && !state.freshPhrase) return showScreen('home');
  showScreen(screen);
  ENTER[screen]?.(params);
  return undefined;
}

function go(hash) {
  if (window.location.hash === hash) route();
  else window.location.hash = hash;
}

function setAccount(account) {
  state.account?.privateKey.fill(0);
  state.account = account;
  const chip = byId('address-chip');
  chip.hidden = !account;
  chip.textContent = account ? `${account.address.slice(0, 6)}…${account.address.slice(-4)}` : '';
  chip.dataset.copy = account?.address ?? '';
  byId('home-address').textContent = account?.address ?? '';
  byId('card').dataset.locked = account ? 'false' : 'true';
  for (const listener of state.accountListeners) listener(account);
}

function writePhrase(list, phrase) {
  list.replaceChildren(
    ...phrase.split(' ').map((word) => {
      const item = document.createElement('li');
      item.textContent = word;
      return item;
    }),
  );
  list.hidden = false;
}

function clearPhrase(list) {
  list.replaceChildren();
  list.hidden = true;
}

/** A form whose submit runs `action(fields)`; its message area tells the outcome, its button is
 *  disabled meanwhile, and no submit ever reaches the network by itself (CSP form-action 'none'). */
function onSubmit(id, busyLabel, action) {
  const form = byId(id);
  const button = form.querySelector('button[type=submit]');
  let busy = false;
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    if (busy) return;
    busy = true;
    const label = button.textContent;
    button.disabled = true;
    button.textContent = busyLabel;
    say(form, '');
    try {
      await action(Object.fromEntries(new FormData(form)), form);
    } catch (error) {
      say(form, error.message || String(error), 'error');
    } finally {
      button.textContent = label;
      button.disabled = false;
      busy = false;
    }
  });
}

function newPassphrase(fields) {
  if (fields.passphrase !== fields.confirm) throw new Error('The two passphrases differ.');
  return fields.passphrase;
}

function wireVault() {
  onSubmit('create-form', 'Creating…', async (fields, form) => {
    const created = await vault.createVault(newPassphrase(fields));
    form.reset();
    setAccount({ address: created.address, privateKey: created.privateKey });
    state.freshPhrase = created.phrase;
    writePhrase(byId('backup-phrase'), created.phrase);
    showScreen('backup');
  });
  byId('backup-done').addEventListener('click', () => {
    state.freshPhrase = null;
    clearPhrase(byId('backup-phrase'));
    route();
  });
  onSubmit('import-form', 'Restoring…', async (fields, form) => {
    const account = await vault.importPhrase(fields.phrase, newPassphrase(fields));
    form.reset();
    setAccount(account);
    route();
  });
  onSubmit('unlock-form', 'Unlocking…', async (fields, form) => {
    const account = await vault.unlock(fields.passphrase);
    form.reset();
    setAccount(account);
    route();
  });
  onSubmit('reveal-form', 'Checking…', async (fields, form) => {
    const phrase = await vault.revealPhrase(fields.passphrase);
    form.reset();
    writePhrase(byId('reveal-phrase'), phrase);
    say(form, 'Your backup phrase; it hides when you leave this screen.');
  });
  byId('lock-button').addEventListener('click', () => {
    setAccount(null);
    go('#home');
  });
  onSubmit('burn-form', 'Burning…', async (fields, form) => {
    if (!fields.confirm) throw new Error('Tick the box first: burning cannot be undone.');
    vault.burn();
    form.reset();
    setAccount(null);
    go('#home');
  });
}

function checkedAmount(text) {
  const wei = parseEther(text);
  if (wei <= 0n) throw new LinkError('The amount must be more than 0.');
  return wei;
}

function wireMoney() {
  onSubmit('send-form', 'Checking…', async (fields) => {
    parseAddress(fields.to, 'receiver address');
    checkedAmount(fields.amount);
    if (!state.client) throw new Error(NOT_CONNECTED);
  });
  onSubmit('link-form', 'Checking…', async (fields) => {
    checkedAmount(fields.amount);
    if (!state.client) throw new Error(NOT_CONNECTED);
  });
  onSubmit('cashout-form', 'Checking…', async (fields) => {
    parseAddress(fields.to, 'address to cash out to');
    checkedAmount(fields.amount);
    if (!state.client) throw new Error(NOT_CONNECTED);
  });
  onSubmit('redeem-form', 'Checking…', async () => {
    if (!state.redeem) throw new Error('This link has no payment to redeem.');
    if (!state.account) throw new Error('Unlock or create your card first.');
    if (!state.client) throw new Error(NOT_CONNECTED);
  });
  onSubmit('request-form', 'Making…', async (fields) => {
    const amount = fields.amount.trim() ? checkedAmount(fields.amount).toString() : '';
    const link = requestLink(window.location.origin, { to: state.account.address, amount, asset: ETH });
    byId('request-qr').src = qrImageSource(link);
    byId('request-link').textContent = link;
    byId('request-result').hidden = false;
  });
  byId('request-copy').addEventListener('click', () => copy(byId('request-link').textContent));
}

async function copy(text) {
  try {
    await navigator.clipboard.writeText(text);
  } catch {
    showError('The browser did not let the card copy; select the text and copy it yourself.');
  }
}

function wireScan() {
  const message = byId('scan-message');
  const opened = (text) => {
    try {
      go(parseScanned(text, window.location.origin).route);
    } catch (error) {
      message.textContent = error.message;
      message.dataset.kind = 'error';
    }
  };
  byId('scan-camera').addEventListener('click', async () => {
    stopCamera();
    message.textContent = 'Point the camera at the QR code.';
    message.dataset.kind = 'info';
    const video = byId('scan-video');
    video.hidden = false;
    try {
      state.stopCamera = await scanCamera(video, opened);
    } catch (error) {
      video.hidden = true;
      message.textContent = `The camera did not open: ${error.message || error.name}`;
      message.dataset.kind = 'error';
    }
  });
  byId('scan-file').addEventListener('change', async (event) => {
    const [file] = event.target.files;
    event.target.value = '';
    if (!file) return;
    try {
      opened(await decodePicture(file));
    } catch (error) {
      message.textContent = error.message;
      message.dataset.kind = 'error';
    }
  });
}

const ENTER = {
  send(params) {
    const form = byId('send-form');
    if (!params.has('to')) return;
    try {
      const fields = sendFields(params);
      form.elements.to.value = fields.to;
      form.elements.amount.value = fields.amount ? formatEther(fields.amount) : '';
      form.elements.asset.value = fields.asset;
      say(form, state.client ? 'Check the amount and the receiver, then send.' : NOT_CONNECTED);
    } catch (error) {
      say(form, `This payment request is not valid: ${error.message}`, 'error');
    }
  },
  redeem(params) {
    byId('redeem-locked').hidden = Boolean(state.account);
    try {
      state.redeem = redeemFields(params);
      byId('redeem-payment-id').textContent = state.redeem.paymentId;
      byId('redeem-status').textContent = state.client ? 'checking…' : 'connecting…';
    } catch (error) {
      state.redeem = null;
      byId('redeem-payment-id').textContent = '';
      byId('redeem-status').textContent = `This link is not valid: ${error.message}`;
      byId('redeem-status').dataset.status = 'invalid';
    }
  },
};

/** The protocol client, once connected: the money screens stop saying "connecting…". */
export function attachClient(client) {
  state.client = client;
  const connection = byId('connection');
  connection.dataset.state = client ? 'online' : 'offline';
  connection.textContent = client ? 'online' : 'connecting…';
}

/** The unlocked account, for the protocol client: {address, privateKey} or null. */
export function currentAccount() {
  return state.account;
}

/** Calls listener(account) on every unlock, and listener(null) on lock and burn (the key is then
 *  zeroed: a client must drop it). Returns the unsubscribe function. */
export function onAccountChange(listener) {
  state.accountListeners.add(listener);
  return () => state.accountListeners.delete(listener);
}

/** The deposit screen shows the channel's address (which the protocol client derives) and its QR. */
export function showDepositAddress(channelAddress) {
  const image = byId('deposit-qr');
  byId('deposit-address').textContent = channelAddress;
  image.src = qrImageSource(channelAddress);
  image.hidden = false;
}

export function redeemLinkRoute() {
  return state.redeem ? redeemRoute(state.redeem) : null;
}

export function start() {
  const root = byId('card');
  window.addEventListener('error', (event) => showError(event.error ?? event.message));
  window.addEventListener('unhandledrejection', (event) => showError(event.reason ?? 'Something went wrong.'));
  byId('card-error-dismiss').addEventListener('click', () => {
    byId('card-error').hidden = true;
  });
  byId('address-chip').addEventListener('click', (event) => copy(event.currentTarget.dataset.copy));
  byId('redeem-unlock').addEventListener('click', (event) => {
    event.preventDefault(); // the link's fragment stays: unlocking comes back to it
    showGate('redeem');
  });
  wireVault();
  wireMoney();
  wireScan();
  setAccount(null);
  window.addEventListener('hashchange', route);
  route();
  root.dataset.state = 'ready';
}
