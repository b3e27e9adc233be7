// The overview's charts (uPlot, bundled by `make assets` into dashboard/static/dashboard/build/).
// The page works without them: every number is in its tables, and the window links reload the page.
import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";

const ETH = "0x0000000000000000000000000000000000000000";

function seconds(iso) {
  return Date.parse(iso) / 1000;
}

// Display only (amounts arrive as decimal strings of wei): to ETH, to the gwei.
function eth(wei) {
  return wei ? Number(BigInt(wei) / 10n ** 9n) / 1e9 : 0;
}

function columns(body) {
  const x = body.payments.map((point) => seconds(point.at));
  const count = body.payments.map((point) => point.count);
  const failed = body.payments.map((point) => point.failed);
  const volume = body.payments.map((point) => eth(point.volume[ETH]));
  const index = new Map(x.map((at, i) => [at, i]));
  // The value history has a point only for buckets in which a snapshot was taken: gaps stay null.
  const node = x.map(() => null);
  const users = x.map(() => null);
  const onChain = x.map(() => null);
  for (const row of body.collateral) {
    const i = index.get(seconds(row.at));
    if (i !== undefined && row.assetId === ETH) {
      node[i] = eth(row.node);
      users[i] = eth(row.users);
      onChain[i] = eth(row.onChain);
    }
  }
  return { x, count, failed, volume, node, users, onChain };
}

function draw(element, series, data) {
  element.replaceChildren();
  const width = Math.max(320, element.clientWidth || 480);
  return new uPlot(
    {
      width,
      height: 220,
      series: [{}, ...series],
      axes: [{}, { size: 60 }],
      scales: { x: { time: true } },
    },
    data,
    element,
  );
}

async function render(root, windowName) {
  const response = await fetch(`${root.dataset.seriesUrl}?window=${encodeURIComponent(windowName)}`, {
    credentials: "same-origin",
    headers: { Accept: "application/json" },
  });
  if (!response.ok) {
    root.dataset.state = "error";
    return;
  }
  const c = columns(await response.json());
  draw(document.getElementById("chart-count"), [
    { label: "payments", stroke: "#1a5fb4", width: 2 },
    { label: "failed or refunded", stroke: "#b00020", width: 2 },
  ], [c.x, c.count, c.failed]);
  draw(document.getElementById("chart-volume"), [
    { label: "completed volume (ETH)", stroke: "#26a269", fill: "rgba(38,162,105,0.15)", width: 2 },
  ], [c.x, c.volume]);
  draw(document.getElementById("chart-collateral"), [
    { label: "node's balance (ETH)", stroke: "#1a5fb4", width: 2 },
    { label: "users' balances (ETH)", stroke: "#a35200", width: 2 },
    { label: "on chain (ETH)", stroke: "#5e5c64", width: 1, dash: [4, 4] },
  ], [c.x, c.node, c.users, c.onChain]);
  root.dataset.window = windowName;
  root.dataset.state = "drawn";
}

function start() {
  const root = document.getElementById("charts");
  if (!root) return;
  const picker = document.getElementById("window-picker");
  picker?.addEventListener("click", (event) => {
    const link = event.target.closest("a[data-window]");
    if (!link) return;
    event.preventDefault();
    for (const other of picker.querySelectorAll("a")) {
      other.classList.toggle("current", other === link);
      other.toggleAttribute("aria-current", other === link);
    }
    history.replaceState(null, "", `?window=${link.dataset.window}`);
    render(root, link.dataset.window);
  });
  render(root, root.dataset.window);
}

if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
else start();
