// A small event emitter for the card's screens: `on`, `once`, `off`, `emit`, and `next` (a promise of
// the next event matching a predicate). A listener that throws is reported on 'error' and never breaks
// the client; the client's own work never waits on a listener.

import { ClientTimeoutError } from './errors.js';

export class Emitter {
  #listeners = new Map();

  on(event, listener) {
    if (!this.#listeners.has(event)) this.#listeners.set(event, new Set());
    this.#listeners.get(event).add(listener);
    return () => this.off(event, listener);
  }

  once(event, listener) {
    const off = this.on(event, (payload) => {
      off();
      listener(payload);
    });
    return off;
  }

  off(event, listener) {
    this.#listeners.get(event)?.delete(listener);
  }

  emit(event, payload) {
    for (const listener of [...(this.#listeners.get(event) ?? [])]) {
      try {
        listener(payload);
      } catch (error) {
        if (event !== 'error') this.emit('error', { error, during: event });
      }
    }
  }

  /** The next `event` whose payload satisfies `predicate`; ClientTimeoutError after `timeoutMs`. Register
   * it before acting, so an event that comes fast is not missed. `.cancel()` stops waiting. */
  next(event, predicate = () => true, timeoutMs = 60_000) {
    let off = () => {};
    let timer = null;
    const promise = new Promise((resolve, reject) => {
      off = this.on(event, (payload) => {
        let matches = false;
        try {
          matches = predicate(payload);
        } catch {
          matches = false;
        }
        if (!matches) return;
        off();
        clearTimeout(timer);
        resolve(payload);
      });
      timer = setTimeout(() => {
        off();
        reject(new ClientTimeoutError(`no ${event} within ${timeoutMs} ms`));
      }, timeoutMs);
    });
    promise.cancel = () => {
      off();
      clearTimeout(timer);
    };
    return promise;
  }
}
