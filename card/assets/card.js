// The card's bundle (esbuild → card/static/card/build/card.js and card.css).
import './card.css';
import { start } from './app.js';

if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
else start();
