// The browser bundle esbuild makes of the core (minified, browser conditions: noble's AES instead of
// node:crypto) passes the vectors too, and stays within its share of the card's 150 KB gzipped budget.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { gzipSync } from 'node:zlib';
import { build } from 'esbuild';
import { keyByName, keyOf, load } from './vectors.js';

const CORE_BUDGET_GZIP = 100_000; // bytes; the whole card (core, keys, QR, screens) must stay within 150 KB

test('the minified browser bundle passes the vectors and fits its size budget', async (t) => {
  const result = await build({
    entryPoints: [fileURLToPath(new URL('../index.js', import.meta.url))],
    bundle: true,
    minify: true,
    format: 'esm',
    platform: 'browser',
    write: false,
    logLevel: 'silent',
  });
  const code = result.outputFiles[0].contents;
  const gzipped = gzipSync(code).length;
  t.diagnostic(`card core bundle: ${code.length} bytes, ${gzipped} bytes gzipped`);
  assert.ok(gzipped <= CORE_BUDGET_GZIP, `the core bundle is ${gzipped} bytes gzipped`);

  const dir = mkdtempSync(join(tmpdir(), 'card-core-'));
  try {
    const file = join(dir, 'card-core.js');
    writeFileSync(file, code);
    const core = await import(pathToFileURL(file).href);
    for (const c of load('ecies').cases) {
      assert.equal(core.ecies.decrypt(keyByName(c.recipient), c.ciphertext), c.message, c.name);
      assert.equal(core.ecies.encrypt(c.publicKey, c.message, { ephemeralKey: c.ephemeralKey, nonce: c.nonce }), c.ciphertext, c.name);
    }
    let state = null;
    for (const step of load('updates').steps) {
      const update = core.updateFromJson(step.update);
      state = core.applyUpdate(state, update, core.updateContextFromJson(step.context));
      assert.equal(core.channelStateHash(state), step.stateHash, step.name);
      assert.equal(core.signState(state, keyOf(update.initiator)), step.initiatorSignature, step.name);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
