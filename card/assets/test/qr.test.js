import assert from 'node:assert/strict';
import { test } from 'node:test';

import encodeQR from 'qr';
import decodeQR from 'qr/decode.js';

import { requestLink } from '../links.js';
import { parseScanned, qrImageSource } from '../qr.js';

const ORIGIN = 'https://node.example';
const ADDRESS = '0x52908400098527886E0F7030069857D2E4169EE7';

/** The QR's modules as RGBA pixels, `scale` pixels a module (what a camera frame gives the decoder). */
function pixels(text, scale = 4) {
  const modules = encodeQR(text, 'raw', { ecc: 'medium', border: 4 });
  const size = modules.length * scale;
  const data = new Uint8ClampedArray(size * size * 4).fill(255);
  for (let y = 0; y < size; y++) {
    for (let x = 0; x < size; x++) {
      if (modules[Math.floor(y / scale)][Math.floor(x / scale)]) data.fill(0, (y * size + x) * 4, (y * size + x) * 4 + 3);
    }
  }
  return { width: size, height: size, data };
}

test("a request link's QR reads back as the same link, which opens a prefilled send", () => {
  const link = requestLink(ORIGIN, { to: ADDRESS, amount: '10000000000000000' });
  const read = decodeQR(pixels(link));
  assert.equal(read, link);
  assert.deepEqual(parseScanned(read, ORIGIN).route, `#send?to=${ADDRESS}&amount=10000000000000000`);
});

test('the QR image is a GIF data URL made in the page', () => {
  const source = qrImageSource(ADDRESS);
  assert.match(source, /^data:image\/gif;base64,R0lGOD/);
});
