// Reading QR codes, from the camera or a picture, with the `qr` package's decoder: a chunk of its own
// (import('./scan.js')), fetched the first time the scan screen is used, so the card opens without it.
import decodeQR from 'qr/decode.js';
import { QRCanvas, frameLoop, rearCamera } from 'qr/dom.js';

/** The text of the QR code in a picture (a File or Blob), or an Error when there is none. */
export async function decodePicture(file) {
  const bitmap = await createImageBitmap(file);
  const canvas = document.createElement('canvas');
  canvas.width = bitmap.width;
  canvas.height = bitmap.height;
  const context = canvas.getContext('2d', { willReadFrequently: true });
  context.drawImage(bitmap, 0, 0);
  bitmap.close();
  try {
    return decodeQR(context.getImageData(0, 0, canvas.width, canvas.height), { effort: Infinity, timeLimit: Infinity });
  } catch {
    throw new Error('No QR code found in this picture.');
  }
}

/** Reads the rear camera into `video` until a frame decodes; calls onText(text) once, then stops.
 *  Returns stop(), which releases the camera. getUserMedia's refusal rejects with its own error. */
export async function scanCamera(video, onText) {
  if (!navigator.mediaDevices?.getUserMedia) throw new Error('This browser gives the page no camera.');
  const camera = await rearCamera(video);
  const canvas = new QRCanvas();
  let reading = false;
  let cancel = () => {};
  let stopped = false;
  const stop = () => {
    if (stopped) return;
    stopped = true;
    cancel();
    camera.stop();
  };
  cancel = frameLoop(() => {
    if (reading) return;
    reading = true;
    Promise.resolve(camera.readFrame(canvas))
      .then(
        (decoded) => decoded,
        () => undefined, // a frame that does not decode: the next one may
      )
      .then((decoded) => {
        reading = false;
        if (typeof decoded !== 'string') return;
        stop();
        onText(decoded);
      });
  });
  return stop;
}
