// The card's bundle (esbuild → card/static/card/build/card.js and card.css).
import './card.css';
import { start } from './app.js';
import { startSession } from './session.js';

function begin() {
  startSession(); // listens for the unlock that start() may bring
  start();
}

if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', begin);
else begin();
