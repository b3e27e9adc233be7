// QR codes in the page, drawn by the `qr` package (a GIF data URL: no network, no inline markup).
// Reading them (the camera, a picture) is in scan.js, loaded when the scan screen first needs it.
// What a scan may open is decided by parseScanned.
import encodeQR from 'qr';

export { parseScanned } from './links.js';

/** An <img> source for the QR of `text`: an uncompressed GIF with its own white quiet zone. */
export function qrImageSource(text) {
  return encodeQR(text, 'data-url', { ecc: 'medium', border: 4, scale: 8 });
}
