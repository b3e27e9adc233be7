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
import { fetchLinkStatus } from '../js/client/node_api.js';
import { qrImageSource } from './qr.js';
import * as swaps from './swaps.js';
import * as vault from './vault.js';

const OPEN_WHILE_LOCKED = new Set(['setup', 'unlock', 'redeem']);
const TITLES = {
  home: 'Home', deposit: 'Deposit', send: 'Send', request: 'Request', link: 'Link payment',
  redeem: 'Redeem', cashout: 'Cash out', swap: 'Swap', scan: 'Scan', settings: 'Settings',
};
const NOT_CONNECTED = 'connecting… The card is not connected to the node yet: nothing was signed or sent.';

const state = {
  account: null, // {address, privateKey} while unlocked; the key exists nowhere else
  client: null,
  freshPhrase: null, // shown once on the backup screen right after creating a card
  redeem: null, // {paymentId, secret} of the link being looked at
  stopCamera: null,
  accountListeners: new Set(),
  clientListeners: [], // unsubscribers of the attached client's events
  rates: null, // the node's swap offer (GET /api/swap/rates, then its swap.rates pushes)
  autoSwaps: Promise.resolve(), // the deposits' auto-swaps, one after another
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
  chip.textContent = account ? short(account.address) : '';
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

function needClient() {
  if (!state.client) throw new Error(NOT_CONNECTED);
  return state.client;
}

function short(address) {
  return address ? `${address.slice(0, 6)}…${address.slice(-4)}` : 'a link';
}

/** Runs `work(client)` while `form` says each step the client reports for `action` (its `progress`
 *  events); a wait is said as a wait, never as a failure. */
async function withProgress(form, action, steps, work) {
  const client = needClient();
  const stop = client.on('progress', (event) => {
    if (event.action !== action || !(event.step in steps)) return;
    const text = typeof steps[event.step] === 'function' ? steps[event.step](event) : steps[event.step];
    say(form, text, event.step === 'failed' ? 'error' : 'info');
  });
  try {
    return await work(client);
  } finally {
    stop();
  }
}

const SEND_WAIT_MS = 90_000; // then it says the payment is still on its way, not that it failed
const SEND_STEPS = {
  sent: 'Signed and sent; the node is delivering it…',
  waiting_for_collateral:
    'On its way: the node is moving funds into the receiver’s channel (or waits for the receiver to come online). Nothing is lost; the card keeps waiting.',
};

function checkFunds(amount) {
  const available = needClient().balance(ETH).user;
  if (amount > available) {
    throw new LinkError(`You have ${formatEther(available)} ETH in your card; that is less than ${formatEther(amount)}.`);
  }
}

/** A payment that is still on its way when the card stops waiting is not a failure. */
function stillMoving(error) {
  return error?.name === 'ClientTimeoutError' || error?.code === 'timeout';
}

function wireMoney() {
  onSubmit('send-form', 'Sending…', async (fields, form) => {
    const to = parseAddress(fields.to, 'receiver address');
    const amount = checkedAmount(fields.amount);
    if (to === state.account.address) throw new LinkError('That is your own address.');
    checkFunds(amount);
    try {
      const record = await withProgress(form, 'send', SEND_STEPS, (client) => client.send(to, amount, { timeoutMs: SEND_WAIT_MS }));
      form.reset();
      if (record.status === 'completed') say(form, `Paid ${formatEther(amount)} ETH to ${short(to)}.`, 'success');
      else say(form, `The payment was ${record.status}: ${record.failure ?? 'your funds are back'}.`, 'error');
    } catch (error) {
      if (!stillMoving(error)) throw error;
      say(form, 'Still on its way (the receiver may be offline); History shows when it completes.');
    }
    refreshHome();
  });
  onSubmit('link-form', 'Making…', async (fields, form) => {
    const amount = checkedAmount(fields.amount);
    const cap = BigInt(byId('card').dataset.linkMaxWei || '0');
    if (cap > 0n && amount > cap) {
      throw new LinkError(`A link carries at most ${formatEther(cap)} ETH: whoever holds it holds the money. Send to an address for more.`);
    }
    checkFunds(amount);
    const link = await needClient().createLink(amount);
    form.reset();
    byId('link-qr').src = qrImageSource(link.url);
    byId('link-url').textContent = link.url;
    byId('link-result').hidden = false;
    say(form, `A link for ${formatEther(amount)} ETH: whoever opens it can redeem it.`, 'success');
    refreshHome();
  });
  byId('link-copy').addEventListener('click', () => copy(byId('link-url').textContent));
  onSubmit('cashout-form', 'Cashing out…', async (fields, form) => {
    const to = parseAddress(fields.to, 'address to cash out to');
    const amount = checkedAmount(fields.amount);
    checkFunds(amount);
    const done = await withProgress(
      form,
      'withdraw',
      {
        requested: 'Signed; the node is sending the transaction…',
        submitted: (event) => `Sent to the chain${event.transactionHash ? ` (${short(event.transactionHash)})` : ''}; waiting until it is mined…`,
      },
      (client) => client.withdraw(amount, { recipient: to }),
    );
    form.reset();
    say(form, `Cashed out ${formatEther(amount)} ETH to ${short(to)} in ${done.transactionHash}.`, 'success');
    refreshHome();
  });
  onSubmit('redeem-form', 'Redeeming…', async (fields, form) => {
    if (!state.redeem) throw new Error('This link has no payment to redeem.');
    if (!state.account) throw new Error('Unlock or create your card first.');
    const link = state.redeem;
    const record = await withProgress(
      form,
      'redeem',
      { redeemed: 'Claimed; the node is paying it into your card…' },
      (client) => client.redeemLink(link),
    );
    // The secret has done its work: it leaves the address bar (and the browser's history entry).
    window.history.replaceState(null, '', `${window.location.pathname}#redeem?${new URLSearchParams({ paymentId: link.paymentId })}`);
    showLinkStatus(record.status === 'completed' ? 'redeemed' : record.status, record);
    say(form, record.status === 'completed' ? `Redeemed ${formatEther(record.amount)} ETH into your card.` : `The link was ${record.status}.`, record.status === 'completed' ? 'success' : 'error');
    refreshHome();
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

const LINK_STATUS_TEXT = {
  pending: 'Ready to redeem',
  expired: 'Expired: it goes back to its sender',
  redeemed: 'Already redeemed',
  completed: 'Already redeemed',
  refunded: 'Taken back by its sender',
  failed: 'Taken back by its sender',
  unknown: 'No such link (or the secret is wrong)',
};

function showLinkStatus(status, payment) {
  const element = byId('redeem-status');
  const amount = payment?.amount !== undefined && payment?.amount !== null ? ` · ${formatEther(payment.amount)} ETH` : '';
  element.textContent = `${LINK_STATUS_TEXT[status] ?? status}${amount}`;
  element.dataset.status = status;
  byId('redeem-form').querySelector('button[type=submit]').disabled = status !== 'pending';
}

async function checkLink(link) {
  try {
    const answer = await fetchLinkStatus({ nodeUrl: window.location.origin, ...link });
    if (state.redeem === link) showLinkStatus(answer.status, answer);
  } catch (error) {
    if (state.redeem === link) showLinkStatus('unknown', null);
    if (error?.code !== 'unknown_payment') showError(error);
  }
}

// -- home: balances, what is on its way, history --------------------------------------------------

const STATUS_TEXT = {
  pending: 'on its way', forwarded: 'on its way', completed: 'done', refunded: 'refunded', failed: 'failed',
};

function renderBalance(client) {
  const { user, pendingIn, pendingOut } = client.balance(ETH);
  const balance = byId('home-balance');
  balance.textContent = `${formatEther(user)} ETH`;
  balance.dataset.state = 'ready';
  balance.dataset.wei = user.toString();
  const pending = byId('home-pending');
  const parts = [];
  if (pendingIn > 0n) parts.push(`${formatEther(pendingIn)} ETH coming in`);
  if (pendingOut > 0n) parts.push(`${formatEther(pendingOut)} ETH going out`);
  pending.textContent = parts.join(' · ');
  pending.hidden = parts.length === 0;
  const tokens = [];
  for (const [assetId, held] of Object.entries(client.balances())) {
    if (assetId.toLowerCase() === ETH || (held.user === 0n && held.pendingIn === 0n && held.pendingOut === 0n)) continue;
    const item = document.createElement('li');
    item.dataset.asset = assetId;
    item.dataset.wei = held.user.toString();
    item.textContent = `${formatEther(held.user)} ${nameOf(assetId)}`;
    tokens.push(item);
  }
  byId('home-tokens').replaceChildren(...tokens);
  byId('home-tokens').hidden = tokens.length === 0;
}

function historyItem(payment) {
  const item = document.createElement('li');
  const incoming = payment.direction === 'incoming';
  item.dataset.paymentId = payment.paymentId;
  item.dataset.status = payment.status;
  const what = document.createElement('span');
  what.className = 'what';
  what.textContent = incoming ? `from ${short(payment.sender)}` : `to ${short(payment.recipient)}`;
  const amount = document.createElement('span');
  amount.className = 'amount';
  amount.textContent = `${incoming ? '+' : '−'}${formatEther(payment.amount)} ETH`;
  const status = document.createElement('span');
  status.className = 'status';
  status.textContent = STATUS_TEXT[payment.status] ?? payment.status;
  item.append(what, amount, status);
  return item;
}

let historyTurn = 0;

async function renderHistory(client) {
  const turn = ++historyTurn;
  const list = byId('home-history');
  let payments;
  try {
    payments = await client.history({ limit: 30 });
  } catch (error) {
    showError(error);
    return;
  }
  if (turn !== historyTurn || state.client !== client) return; // a newer render, or another card
  if (payments.length === 0) {
    const empty = document.createElement('li');
    empty.className = 'empty';
    empty.textContent = 'No payments yet.';
    list.replaceChildren(empty);
  } else {
    list.replaceChildren(...payments.map(historyItem));
  }
}

function refreshHome() {
  if (!state.client) return;
  renderBalance(state.client);
  renderHistory(state.client);
}

/** A payment to this card arrived: say so on the home screen, whichever screen is open. */
function noticeIncoming(payment) {
  if (payment.direction !== 'incoming' || payment.status !== 'completed') return;
  const notice = byId('home-notice');
  notice.textContent = `Received ${formatEther(payment.amount)} ETH from ${short(payment.sender)}.`;
  notice.dataset.kind = 'success';
  notice.hidden = false;
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
      const { scanCamera } = await import('./scan.js');
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
      const { decodePicture } = await import('./scan.js');
      opened(await decodePicture(file));
    } catch (error) {
      message.textContent = error.message;
      message.dataset.kind = 'error';
    }
  });
}

// -- swaps: the screen, the auto-swap of ETH deposits ---------------------------------------------

const contracts = () => state.client?.config?.contracts ?? {};
const nameOf = (assetId) => swaps.assetName(assetId, contracts());

function swapDirection() {
  const key = byId('swap-direction').value;
  return swaps.directions(state.rates, contracts()).find((d) => d.key === key) ?? null;
}

/** The node's refusal of a swap in the card's words, its own message kept. */
function swapRefusal(error, giveName = '') {
  if (error?.code === 'slippage_exceeded') return 'The node’s price moved more than 1 % since the quote: nothing was swapped. Try again.';
  const bound = error?.details?.maxGive;
  const limit = /^[0-9]+$/.test(String(bound ?? '')) ? ` (one swap gives at most ${formatEther(BigInt(bound))}${giveName ? ` ${giveName}` : ''})` : '';
  return error?.status ? `The node refused the swap: ${error.message}${limit}` : error?.message || String(error);
}

function renderSwap() {
  const select = byId('swap-direction');
  const rate = byId('swap-rate');
  const receive = byId('swap-receive');
  const limits = byId('swap-limits');
  const shown = swaps.directions(state.rates, contracts());
  receive.hidden = true;
  limits.hidden = true;
  if (!state.client || !state.rates || !shown.length) {
    select.disabled = true;
    rate.textContent = !state.client ? 'connecting…' : !state.rates ? 'Loading the node’s rates…' : 'This node offers no swaps.';
    return;
  }
  const keys = shown.map((d) => d.key).join(' ');
  if (select.dataset.keys !== keys) {
    const previous = select.value;
    select.replaceChildren(...shown.map((d) => new Option(d.label, d.key)));
    select.value = shown.some((d) => d.key === previous) ? previous : shown[0].key;
    select.dataset.keys = keys;
  }
  select.disabled = false;
  const { give, entry } = swapDirection();
  byId('swap-give-label').textContent = `You give (${nameOf(give)})`;
  rate.textContent = swaps.rateText(entry, contracts());
  rate.dataset.rate = `${entry.rate.numerator}/${entry.rate.denominator}`;
  limits.textContent = `${swaps.limitsText(entry, contracts())} Your card holds ${formatEther(state.client.balance(give).user)} ${nameOf(give)}.`;
  limits.hidden = false;
  let amount = 0n;
  try {
    amount = parseEther(byId('swap-form').elements.amount.value);
  } catch {
    amount = 0n;
  }
  if (amount > 0n) {
    receive.textContent = swaps.receiveText(amount, entry, contracts());
    receive.dataset.wei = swaps.received(amount, entry).toString();
    receive.hidden = false;
  }
  byId('swap-form').elements.amount.placeholder = give.toLowerCase() === ETH ? '0.01' : '10';
}

function renderAutoSwap() {
  const box = byId('autoswap');
  const setting = swaps.autoSwapSetting();
  const offered = swaps.directions(state.rates, contracts()).filter((d) => d.give.toLowerCase() === ETH);
  const chosen = offered.find((d) => setting && d.take.toLowerCase() === setting.toLowerCase()) ?? offered[0] ?? null;
  box.checked = Boolean(setting);
  box.disabled = !chosen;
  box.dataset.token = chosen?.take ?? '';
  byId('autoswap-label').textContent = chosen
    ? `Swap ETH deposits into ${nameOf(chosen.take)}`
    : `Swap ETH deposits into a token${state.rates ? ' (this node offers none)' : ''}`;
}

async function loadRates(client) {
  try {
    const rates = await client.swapRates();
    if (state.client !== client) return;
    state.rates = rates;
  } catch (error) {
    if (state.client === client && byId('card').dataset.screen === 'swap') showError(error);
  }
  renderSwap();
  renderAutoSwap();
}

/** Said on the deposit screen and the home screen's notice. */
function sayAutoSwap(text, kind) {
  const line = byId('deposit-swap');
  line.textContent = text;
  line.dataset.kind = kind;
  const notice = byId('home-notice');
  notice.textContent = text;
  notice.dataset.kind = kind;
  notice.hidden = false;
}

/** An ETH deposit was credited: with the setting on, swap it (at most one swap's maxGive) into the token. */
function autoSwap(client, amount) {
  state.autoSwaps = state.autoSwaps.then(async () => {
    const token = swaps.autoSwapSetting();
    if (!token || state.client !== client) return;
    try {
      const rates = state.rates ?? (await client.swapRates());
      const direction = swaps.directions(rates, contracts()).find((d) => d.give.toLowerCase() === ETH && d.take.toLowerCase() === token.toLowerCase());
      if (!direction) throw new Error(`the node no longer swaps ETH for ${nameOf(token)}`);
      const give = swaps.autoSwapGive(amount, direction.entry, client.balance(ETH).user);
      if (give === 0n) return;
      sayAutoSwap(`Auto-swap: swapping ${formatEther(give)} ETH of your deposit into ${nameOf(token)}…`, 'info');
      const got = await client.swap(give, ETH, direction.take);
      sayAutoSwap(`Auto-swap: ${formatEther(give)} ETH of your deposit swapped for ${formatEther(got)} ${nameOf(token)}.`, 'success');
    } catch (error) {
      sayAutoSwap(`Auto-swap: your deposit stays ETH. ${swapRefusal(error, 'ETH')}`, 'error');
    }
    refreshHome();
    renderSwap();
  });
}

function wireSwaps() {
  const form = byId('swap-form');
  form.elements.amount.addEventListener('input', renderSwap);
  byId('swap-direction').addEventListener('change', renderSwap);
  onSubmit('swap-form', 'Swapping…', async (fields) => {
    const client = needClient();
    const direction = swapDirection();
    if (!direction) throw new Error('The node offers no swap to choose.');
    const give = checkedAmount(fields.amount);
    const [giveName, takeName] = [nameOf(direction.give), nameOf(direction.take)];
    const held = client.balance(direction.give).user;
    if (give > held) throw new LinkError(`You have ${formatEther(held)} ${giveName} in your card; that is less than ${formatEther(give)}.`);
    let got;
    try {
      got = await withProgress(form, 'swap', { collateral: `The node is moving ${takeName} into your channel first…` }, (c) =>
        c.swap(give, direction.give, direction.take),
      );
    } catch (error) {
      throw new Error(swapRefusal(error, giveName));
    }
    form.elements.amount.value = '';
    say(form, `Swapped ${formatEther(give)} ${giveName} for ${formatEther(got)} ${takeName}.`, 'success');
    refreshHome();
    renderSwap();
  });
  byId('autoswap').addEventListener('change', (event) => {
    const box = event.currentTarget;
    swaps.setAutoSwap(box.checked ? box.dataset.token : null);
    const name = nameOf(box.dataset.token);
    say(byId('autoswap-form'), box.checked ? `On: each ETH deposit is swapped into ${name}.` : 'Off: deposits stay ETH.', 'success');
  });
}

const ENTER = {
  swap() {
    renderSwap();
    if (state.client) loadRates(state.client);
  },
  settings() {
    renderAutoSwap();
  },
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
  deposit() {
    watchDeposits();
  },
  home() {
    byId('home-notice').hidden = true;
    refreshHome();
  },
  redeem(params) {
    byId('redeem-locked').hidden = Boolean(state.account);
    try {
      state.redeem = redeemFields(params);
      byId('redeem-payment-id').textContent = state.redeem.paymentId;
      byId('redeem-status').textContent = 'checking…';
      byId('redeem-status').dataset.status = 'checking';
      checkLink(state.redeem);
    } catch (error) {
      state.redeem = null;
      byId('redeem-payment-id').textContent = '';
      byId('redeem-status').textContent = `This link is not valid: ${error.message}`;
      byId('redeem-status').dataset.status = 'invalid';
    }
  },
};

let depositWatch = 0;

/** While the deposit screen is open: each deposit to the channel's address is credited and said. */
async function watchDeposits() {
  const client = state.client;
  const progress = byId('deposit-progress');
  if (!client) {
    progress.textContent = NOT_CONNECTED;
    return;
  }
  const watch = ++depositWatch;
  const open = () => watch === depositWatch && state.client === client && byId('card').dataset.screen === 'deposit';
  const steps = {
    waiting_for_chain: 'Waiting for your deposit to reach this address…',
    crediting: 'Seen on chain; the node is crediting it to your card…',
  };
  let credited = false; // once a deposit is credited, that stays said until the next one is seen
  const stop = client.on('progress', (event) => {
    if (event.action !== 'deposit' || !(event.step in steps) || !open()) return;
    if (event.step === 'waiting_for_chain' && credited) return;
    progress.textContent = steps[event.step];
    progress.dataset.kind = 'info';
  });
  try {
    progress.textContent = steps.waiting_for_chain;
    while (open()) {
      try {
        const deposit = await client.waitForDeposit({ assetId: ETH, timeoutMs: 120_000 });
        if (watch === depositWatch) {
          credited = true;
          progress.textContent = `Credited ${formatEther(deposit.amount)} ETH. Send more to the same address any time.`;
          progress.dataset.kind = 'success';
        }
        refreshHome();
      } catch (error) {
        if (!stillMoving(error)) throw error;
      }
    }
  } catch (error) {
    if (open()) showError(error);
  } finally {
    stop();
  }
}

const CONNECTION_TEXT = { connected: 'online', synced: 'online' };

/** The protocol client, once connected (null when locked or gone): the money screens work, the
 *  home screen follows its events live. */
export function attachClient(client) {
  state.clientListeners.forEach((stop) => stop());
  state.clientListeners = [];
  state.client = client;
  state.rates = null;
  renderSwap();
  const connection = byId('connection');
  connection.dataset.state = client ? 'online' : 'offline';
  connection.textContent = client ? 'online' : 'connecting…';
  if (!client) return;
  const on = (event, listener) => state.clientListeners.push(client.on(event, listener));
  on('balance', () => renderBalance(client));
  on('payment', (payment) => {
    noticeIncoming(payment);
    renderBalance(client);
    renderHistory(client);
  });
  on('connection', (event) => {
    connection.dataset.state = event.status === 'lost' ? 'offline' : 'online';
    connection.textContent =
      CONNECTION_TEXT[event.status] ?? `reconnecting${event.retryInMs ? ` in ${Math.ceil(event.retryInMs / 1000)} s` : '…'}`;
  });
  on('swap.rates', (rates) => {
    state.rates = rates;
    renderSwap();
    renderAutoSwap();
  });
  on('progress', (event) => {
    if (event.action === 'deposit' && event.step === 'credited' && event.assetId.toLowerCase() === ETH) autoSwap(client, event.amount);
  });
  on('refused', (event) => showError(`The card refused to sign what the node proposed (${event.code}): ${event.message}`));
  on('error', (error) => showError(error));
  showDepositAddress(client.depositAddress);
  for (const form of document.querySelectorAll('form .message')) {
    if (form.textContent.startsWith('connecting…')) form.textContent = '';
  }
  refreshHome();
  loadRates(client);
  if (byId('card').dataset.screen === 'deposit') watchDeposits();
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
  byId('link-cap').textContent = formatEther(BigInt(root.dataset.linkMaxWei || '0'));
  wireVault();
  wireMoney();
  wireSwaps();
  wireScan();
  setAccount(null);
  window.addEventListener('hashchange', route);
  route();
  root.dataset.state = 'ready';
}
