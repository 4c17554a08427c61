// The Engine panel: Local (this computer, the default) or Remote (nodes by address,
// trust on first connection, tokens, connecting with visible attempts, a status per
// node, "Close connection").

import * as ipc from "./ipc.js";
import { connectionClosed, errorToast, toast } from "./toast.js";

const $ = (id) => document.getElementById(id);

let ctx; // { getSettings, setSettings, isBusy }
let nodes = []; // NodeView from Rust
const retryNote = new Map(); // address -> text of the last failed attempt
const tokenOpen = new Set(); // addresses whose token field is shown
let trustQueue = [];

function statusText(s) {
  switch (s.status) {
    case "connected":
      return "connected";
    case "connecting":
      return s.attempts > 1 ? `connecting ${s.attempt}/${s.attempts}` : "connecting";
    case "untrusted":
      return "not trusted";
    case "failed":
      return "failed";
    default:
      return "disconnected";
  }
}

function detailText(n) {
  const s = n.status;
  if (s.status === "connected") return `${s.cores} ${s.cores === 1 ? "core" : "cores"}, Prism ${s.version}`;
  if (s.status === "connecting") return retryNote.get(n.address) || "";
  if (s.status === "failed") return `${s.message}. ${s.hint}`;
  if (s.status === "untrusted") return "Check its fingerprint to trust it.";
  if (!n.fingerprint) return "Not trusted yet: Connect shows its fingerprint.";
  if (!n.hasToken) return "Needs its token.";
  return "";
}

function renderNodes() {
  const box = $("nodes");
  box.replaceChildren();
  for (const n of nodes) {
    const el = document.createElement("div");
    el.className = "node";
    el.dataset.address = n.address;
    el.innerHTML = `
      <div class="node-head">
        <span class="node-address"></span>
        <span class="node-status"></span>
      </div>
      <div class="node-detail"></div>
      <div class="node-actions">
        <button class="btn token-btn"></button>
        <button class="btn ghost remove-btn">Remove</button>
      </div>`;
    el.querySelector(".node-address").textContent = n.address;
    el.querySelector(".node-address").title = n.fingerprint
      ? `Pinned fingerprint: ${n.fingerprint}`
      : "Not trusted yet";
    const st = el.querySelector(".node-status");
    st.dataset.status = n.status.status;
    st.textContent = statusText(n.status);
    const detail = el.querySelector(".node-detail");
    detail.textContent = detailText(n);
    detail.classList.toggle("node-hint", n.status.status === "failed" || (!n.hasToken && Boolean(n.fingerprint)));
    const tokenBtn = el.querySelector(".token-btn");
    tokenBtn.textContent = n.hasToken ? "Change token" : "Enter token";
    tokenBtn.addEventListener("click", () => {
      tokenOpen.add(n.address);
      renderNodes();
      box.querySelector(`.node[data-address="${CSS.escape(n.address)}"] .token-input`)?.focus();
    });
    el.querySelector(".remove-btn").addEventListener("click", () => removeNode(n.address));
    if (tokenOpen.has(n.address)) {
      const row = document.createElement("form");
      row.className = "token-row";
      row.innerHTML = `<input class="token-input" type="password" placeholder="token" autocomplete="off" spellcheck="false" aria-label="Token" />
        <button class="btn primary save-token" type="submit">Save</button>`;
      row.addEventListener("submit", (e) => {
        e.preventDefault();
        saveToken(n.address, row.querySelector(".token-input").value);
      });
      el.append(row);
    }
    box.append(el);
  }
  renderChip();
}

function renderChip() {
  const s = ctx.getSettings();
  const chip = $("engine-chip");
  const connected = nodes.filter((n) => n.status.status === "connected").length;
  chip.classList.toggle("remote", s.engine === "remote");
  chip.textContent =
    s.engine === "local"
      ? "Local"
      : `Remote · ${connected} connected${s.useLocalToo ? " + this computer" : ""}`;
  $("engine-local").hidden = s.engine !== "local";
  $("engine-remote").hidden = s.engine !== "remote";
  $("close-connection").disabled = connected === 0 && !nodes.some((n) => n.status.status === "connecting");
}

function setNodes(list) {
  nodes = list;
  renderNodes();
}

function updateStatus(address, status) {
  const n = nodes.find((x) => x.address === address);
  if (!n) return;
  n.status = status;
  if (status.status !== "connecting") retryNote.delete(address);
  renderNodes();
}

async function removeNode(address) {
  try {
    tokenOpen.delete(address);
    setNodes(await ipc.removeNode(address));
  } catch (e) {
    errorToast(e, "Node not removed");
  }
}

async function saveToken(address, token) {
  try {
    setNodes(await ipc.setToken(address, token));
    tokenOpen.delete(address);
    renderNodes();
    const where =
      ctx.tokenPlace === "keyring"
        ? "It is stored in your system keyring."
        : "No system keyring answered: it is stored in a file only you can read.";
    toast(`Token saved for ${address}`, { kind: "ok", hint: where });
  } catch (e) {
    errorToast(e, "Token not saved");
  }
}

function onConnEvent(e) {
  switch (e.event) {
    case "status":
      updateStatus(e.address, e.status);
      if (e.status.status === "untrusted") trustQueue.push({ address: e.address, fingerprint: e.status.fingerprint });
      break;
    case "retrying":
      retryNote.set(
        e.address,
        `Attempt ${e.attempt} of ${e.attempts} failed (${e.reason}); retrying in ${(e.delayMs / 1000).toFixed(1)} s`,
      );
      renderNodes();
      break;
    case "finished":
      $("connect").disabled = false;
      showNextTrust();
      if ($("trust-dialog").hidden) {
        const failed = nodes.filter((n) => n.status.status === "failed");
        if (failed.length) {
          const f = failed[0];
          toast(`${f.address}: ${f.status.message}`, { kind: "error", hint: f.status.hint });
        } else if (e.connected > 0) {
          toast(`Connected to ${e.connected} node${e.connected === 1 ? "" : "s"}`, { kind: "ok" });
        }
      }
      break;
  }
}

function showNextTrust() {
  const next = trustQueue.shift();
  if (!next) return;
  $("trust-address").textContent = next.address;
  // Groups of four hex digits are easier to compare by eye.
  $("trust-fingerprint").textContent = next.fingerprint.match(/.{1,4}/g).join(" ");
  $("trust-fingerprint").dataset.raw = next.fingerprint;
  $("trust-dialog").dataset.address = next.address;
  $("trust-dialog").hidden = false;
  $("trust-accept").focus();
}

async function acceptTrust() {
  const dlg = $("trust-dialog");
  const address = dlg.dataset.address;
  dlg.hidden = true;
  try {
    setNodes(await ipc.trustNode(address, $("trust-fingerprint").dataset.raw));
    const n = nodes.find((x) => x.address === address);
    if (n && !n.hasToken) {
      tokenOpen.add(address);
      renderNodes();
      $("nodes").querySelector(`.node[data-address="${CSS.escape(address)}"] .token-input`)?.focus();
      toast(`${address} is trusted`, { kind: "ok", hint: "Now enter its token, then press Connect." });
    } else {
      connect();
    }
  } catch (e) {
    errorToast(e, "Not trusted");
  }
  showNextTrust();
}

async function connect() {
  trustQueue = [];
  $("connect").disabled = true;
  try {
    await ipc.connectNodes(onConnEvent);
  } catch (e) {
    $("connect").disabled = false;
    errorToast(e, "Cannot connect");
  }
}

async function closeConnections() {
  try {
    const n = await ipc.closeConnections();
    setNodes(await ipc.nodes());
    if (n > 0) connectionClosed();
    else toast("No connection was open");
  } catch (e) {
    errorToast(e, "Connection not closed");
  }
}

async function patch(p, what) {
  try {
    ctx.setSettings(await ipc.updateSettings(p));
  } catch (e) {
    errorToast(e, what);
  }
  renderAllSettings();
}

function renderAllSettings() {
  const s = ctx.getSettings();
  for (const r of document.querySelectorAll('input[name="engine"]')) r.checked = r.value === s.engine;
  $("use-local-too").checked = s.useLocalToo;
  $("retry-attempts").value = s.retry.attempts;
  $("retry-delay").value = s.retry.delayMs / 1000;
  renderChip();
}

/** A node was lost during a batch: show its new status. */
export async function nodeLost(address, message) {
  toast(`Lost ${address}: ${message}`, {
    kind: "error",
    hint: "Its images went to the other workers. Connect again when the node is back.",
  });
  setNodes(await ipc.nodes());
}

/** Wires the panel; `ctx` shares the page's settings mirror. */
export function initEngine(context, initialNodes) {
  ctx = context;
  nodes = initialNodes || [];
  for (const r of document.querySelectorAll('input[name="engine"]')) {
    r.addEventListener("change", () => r.checked && patch({ engine: r.value }, "Engine not changed"));
  }
  $("use-local-too").addEventListener("change", () =>
    patch({ useLocalToo: $("use-local-too").checked }, "Setting not changed"),
  );
  const saveRetry = () => {
    const attempts = parseInt($("retry-attempts").value, 10);
    const delayMs = Math.round(parseFloat($("retry-delay").value) * 1000);
    if (!Number.isFinite(attempts) || !Number.isFinite(delayMs)) return;
    patch({ retry: { attempts, delayMs } }, "Retries not changed");
  };
  $("retry-attempts").addEventListener("change", saveRetry);
  $("retry-delay").addEventListener("change", saveRetry);
  $("add-node-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    try {
      setNodes(await ipc.addNode($("node-address").value));
      $("node-address").value = "";
    } catch (err) {
      errorToast(err, "Node not added");
    }
  });
  $("connect").addEventListener("click", connect);
  $("close-connection").addEventListener("click", closeConnections);
  $("trust-accept").addEventListener("click", acceptTrust);
  $("trust-cancel").addEventListener("click", () => {
    $("trust-dialog").hidden = true;
    showNextTrust();
  });
  renderAllSettings();
  renderNodes();
}
