// The card's approval dialog: the one place where a page's request to the card's provider meets the
// user. Connecting asks for the card's passphrase (it unlocks the vault this origin keeps); every
// signature shows what is signed, for whom and for how much, and waits for Approve or Reject.
// Built with DOM calls only (the CSP allows no string HTML); a modal <dialog>, so the page behind it
// cannot be clicked meanwhile.
import * as vault from './vault.js';

const ACTIONS = { connect: 'Connect', message: 'Sign', typedData: 'Sign', transaction: 'Send' };

function element(document, tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(props)) {
    if (name === 'text') node.textContent = value;
    else if (name === 'dataset') Object.assign(node.dataset, value);
    else node.setAttribute(name, value);
  }
  node.append(...children);
  return node;
}

function build(document) {
  const title = element(document, 'h2', { id: 'approval-title' });
  const rows = element(document, 'dl', { class: 'approval-rows', id: 'approval-rows' });
  const passphrase = element(document, 'input', {
    type: 'password', name: 'passphrase', id: 'approval-passphrase', autocomplete: 'current-password',
  });
  const unlock = element(document, 'label', { id: 'approval-unlock' }, 'Card passphrase', passphrase);
  const message = element(document, 'p', { class: 'message', id: 'approval-message', role: 'status' });
  const reject = element(document, 'button', { type: 'button', id: 'approval-reject', text: 'Reject' });
  const approve = element(document, 'button', { type: 'submit', id: 'approval-approve', class: 'primary' });
  const form = element(
    document, 'form', { class: 'approval-form', novalidate: '' },
    element(document, 'p', { class: 'approval-brand', text: 'Card' }),
    title, rows, unlock, message,
    element(document, 'div', { class: 'approval-buttons' }, reject, approve),
  );
  const dialog = element(document, 'dialog', { class: 'approval', id: 'card-approval', 'aria-labelledby': 'approval-title' }, form);
  document.body.append(dialog);
  return { dialog, form, title, rows, unlock, passphrase, message, reject, approve };
}

function showRows(parts, rows) {
  parts.rows.replaceChildren(
    ...rows.flatMap(([label, value]) => [
      element(parts.dialog.ownerDocument, 'dt', { text: label }),
      element(parts.dialog.ownerDocument, 'dd', { text: value }),
    ]),
  );
}

/**
 * The wallet side of CardProvider: `connect()` → {address, privateKey} once the user unlocked the
 * card here, null if they declined; `confirm(request)` → true on Approve. One dialog, reused.
 */
export function dialogWallet(document, storage) {
  let parts = null;

  function open(kind, title, rows, onApprove) {
    parts ??= build(document);
    const { dialog, form, reject, approve, message, unlock, passphrase } = parts;
    dialog.dataset.kind = kind;
    parts.title.textContent = title;
    showRows(parts, rows);
    approve.textContent = ACTIONS[kind] ?? 'Approve';
    approve.hidden = !onApprove;
    reject.textContent = onApprove ? 'Reject' : 'Close';
    unlock.hidden = kind !== 'connect' || !onApprove;
    passphrase.value = '';
    message.textContent = '';
    message.dataset.kind = 'info';
    return new Promise((resolve) => {
      let busy = false;
      const finish = (answer) => {
        form.removeEventListener('submit', submitted);
        reject.removeEventListener('click', declined);
        dialog.removeEventListener('cancel', declined);
        passphrase.value = '';
        dialog.close();
        resolve(answer);
      };
      const declined = (event) => {
        event.preventDefault();
        if (!busy) finish(onApprove ? false : null);
      };
      const submitted = async (event) => {
        event.preventDefault();
        if (busy || !onApprove) return;
        busy = true;
        approve.disabled = true;
        message.textContent = '';
        try {
          finish(await onApprove());
        } catch (error) {
          message.textContent = error.message || String(error);
          message.dataset.kind = 'error';
        } finally {
          busy = false;
          approve.disabled = false;
        }
      };
      form.addEventListener('submit', submitted);
      reject.addEventListener('click', declined);
      dialog.addEventListener('cancel', declined); // Escape
      dialog.showModal();
      (unlock.hidden ? approve : passphrase).focus();
    });
  }

  return {
    async connect() {
      const page = `${document.location.origin}${document.location.pathname}`;
      if (!vault.hasVault(storage)) {
        const answer = await open('connect', 'No card in this browser', [
          ['Page', page],
          ['To connect', `Create or restore a card at ${document.location.origin}/card/ first.`],
        ]);
        return answer || null;
      }
      const rows = [['Request', 'Connect this page to your card'], ['Account', vault.storedAddress(storage)], ['Page', page]];
      const account = await open('connect', 'Connect to this page?', rows, () => vault.unlock(parts.passphrase.value, storage));
      return account || null;
    },
    async confirm(request) {
      return (await open(request.kind, `${ACTIONS[request.kind] ?? 'Approve'}?`, request.rows, async () => true)) === true;
    },
  };
}
