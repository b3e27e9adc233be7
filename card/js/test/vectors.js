// Loads the shared vectors (tests/vectors/*.json) for the tests; Node-only, never bundled.
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const DIR = fileURLToPath(new URL('../../../tests/vectors/', import.meta.url));

const cache = new Map();
export function load(name) {
  if (!cache.has(name)) cache.set(name, JSON.parse(readFileSync(`${DIR}${name}.json`, 'utf8')));
  return cache.get(name);
}

export const common = () => load('common');
export const chainId = () => BigInt(common().chainId);
export const account = (name) => common().accounts.find((a) => a.name === name);
export const keyOf = (address) => common().accounts.find((a) => a.address === address).privateKey;
export const keyByName = (name) => account(name).privateKey;

/** Run `fn` and return the ProtocolError code it threw (fails the test when it did not throw). */
export function codeOf(fn) {
  try {
    fn();
  } catch (error) {
    if (error && typeof error.code === 'string' && error.constructor && error.constructor.code === error.code) {
      return error.code;
    }
    throw error;
  }
  throw new Error('expected a ProtocolError, nothing was thrown');
}
