// The Engine panel: Local (this computer, the default, with its threads) or Remote
// (nodes by address, trust on first connection, tokens, connecting with visible
// attempts, a status per node, "Close connection"). Draws from the store.

import * as ipc from "./ipc.js";
import { flushEdits } from "./debounce.js";
import { connectionClosed, errorToast, toast } from "./toast.js";

const $ = (id) => document.getElementById(id);

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

const secs = (ms) => `${(ms / 1000).toFixed(1)} s`;

const plural = (k, word) => `${k} ${word}${k === 1 ? "" : "s"}`;

const MEMBER_STATE = {
  connecting: "connecting",
  ready: "ready",
  draining: "draining",
  lost: "lost",
  unreachable: "unreachable",
};

function memberDetail(m) {
  if (m.state === "ready") return plural(m.cores, "core");
  if (m.state === "draining") return "left DNS: finishing its images";
  if (m.state === "lost" || m.state === "unreachable") return m.message;
  return "";
}

function fleetDetail(n) {
  const members = n.members || [];
  const ready = members.filter((m) => m.state === "ready");
  const cores = ready.reduce((sum, m) => sum + m.cores, 0);
  const lookup = n.lookupFailed ? ` Lookups fail now (the members go on): ${n.lookupFailed}` : "";
  return `Fleet: ${ready.length} of ${plural(members.length, "member")} ready, ${plural(cores, "core")}.${lookup}`;
}

function detailText(n, retry) {
  const s = n.status;
  if (n.fleet && s.status === "connected") return fleetDetail(n);
  if (s.status === "connected") return `${s.cores} ${s.cores === 1 ? "core" : "cores"}, Prism ${s.version}`;
  if (s.status === "connecting") return `Waiting up to ${secs(retry.timeoutMs)} for an answer…`;
  if (s.status === "failed") return `${s.message}. ${s.hint}`;
  if (s.status === "untrusted") return "Check its fingerprint to trust it.";
  if (!n.fingerprint)
    return n.fleet
      ? "A fleet: every address this name lists. Not trusted yet: Connect shows their fingerprint."
      : "Not trusted yet: Connect shows its fingerprint.";
  if (!n.hasToken) return "Needs its token.";
  return "";
}

/** Wires the panel to `store`. */
export function initEngine(store) {
  // What only this panel shows: which token fields are open, which nodes wait for the
  // user to compare their fingerprint.
  const tokenOpen = new Set();
  let trustQueue = [];

  function nodeRow(address) {
    return $("nodes").querySelector(`.node[data-address="${CSS.escape(address)}"]`);
  }

  /** A node's row, made once: later changes update it in place, so a token being typed
   *  (and the focus) survive the status events that arrive while connecting. */
  function makeRow(address) {
    const el = document.createElement("div");
    el.className = "node";
    el.dataset.address = address;
    el.innerHTML = `
      <div class="node-head">
        <span class="node-address"></span>
        <span class="node-status"></span>
      </div>
      <ol class="node-attempts" hidden></ol>
      <div class="node-detail"></div>
      <ul class="node-members" aria-label="Fleet members" hidden></ul>
      <div class="node-actions">
        <button class="btn token-btn"></button>
        <button class="btn ghost remove-btn">Remove</button>
      </div>`;
    el.querySelector(".node-address").textContent = address;
    // Names that say which node: several rows have these buttons.
    el.querySelector(".remove-btn").setAttribute("aria-label", `Remove ${address}`);
    el.querySelector(".token-btn").addEventListener("click", () => openToken(address));
    el.querySelector(".remove-btn").addEventListener("click", () => removeNode(address));
    return el;
  }

  function updateRow(el, n) {
    el.querySelector(".node-address").title = n.fingerprint ? `Pinned fingerprint: ${n.fingerprint}` : "Not trusted yet";
    const st = el.querySelector(".node-status");
    st.dataset.status = n.status.status;
    st.textContent = statusText(n.status);
    const detail = el.querySelector(".node-detail");
    detail.textContent = detailText(n, store.settings.retry);
    detail.classList.toggle("node-hint", n.status.status === "failed" || (!n.hasToken && Boolean(n.fingerprint)));
    // Each failed attempt of the last Connect, as it happened.
    const attempts = store.attempts.get(n.address) || [];
    const list = el.querySelector(".node-attempts");
    list.hidden = attempts.length === 0;
    list.replaceChildren(
      ...attempts.map((a) => {
        const li = document.createElement("li");
        const next = a.retryInMs == null ? "" : `; again in ${secs(a.retryInMs)}`;
        li.textContent = `Attempt ${a.attempt} of ${a.attempts}: ${a.reason}${next}`;
        return li;
      }),
    );
    renderMembers(el.querySelector(".node-members"), n.members || []);
    el.dataset.fleet = n.fleet ? "1" : "";
    const tokenBtn = el.querySelector(".token-btn");
    tokenBtn.textContent = n.hasToken ? "Change token" : "Enter token";
    tokenBtn.setAttribute("aria-label", `${tokenBtn.textContent} for ${n.address}`);
    const form = el.querySelector(".token-row");
    if (tokenOpen.has(n.address) && !form) {
      const row = document.createElement("form");
      row.className = "token-row";
      row.innerHTML = `<input class="token-input" type="password" placeholder="token" autocomplete="off" spellcheck="false" aria-label="Token" />
        <button class="btn primary save-token" type="submit">Save</button>`;
      row.addEventListener("submit", (e) => {
        e.preventDefault();
        saveToken(n.address, row.querySelector(".token-input").value);
      });
      el.append(row);
    } else if (!tokenOpen.has(n.address) && form) {
      form.remove();
    }
  }

  /** A fleet's members, one row each, updated in place by address. */
  function renderMembers(list, members) {
    list.hidden = members.length === 0;
    const byAddress = new Map([...list.children].map((li) => [li.dataset.member, li]));
    const listed = new Set(members.map((m) => m.address));
    for (const [a, li] of byAddress) if (!listed.has(a)) li.remove();
    members.forEach((m, i) => {
      let li = byAddress.get(m.address);
      if (!li) {
        li = document.createElement("li");
        li.className = "member";
        li.dataset.member = m.address;
        li.innerHTML = `<span class="member-address"></span><span class="member-state"></span><span class="member-detail"></span>`;
        li.querySelector(".member-address").textContent = m.address;
      }
      const st = li.querySelector(".member-state");
      st.dataset.state = m.state;
      st.textContent = MEMBER_STATE[m.state] || m.state;
      li.querySelector(".member-detail").textContent = memberDetail(m);
      if (list.children[i] !== li) list.insertBefore(li, list.children[i] || null);
    });
  }

  function renderNodes() {
    const box = $("nodes");
    const listed = new Set(store.nodes.map((n) => n.address));
    for (const el of [...box.children]) if (!listed.has(el.dataset.address)) el.remove();
    store.nodes.forEach((n, i) => {
      const el = nodeRow(n.address) || makeRow(n.address);
      updateRow(el, n);
      // Moved only when out of place: moving a row would take the focus out of it.
      if (box.children[i] !== el) box.insertBefore(el, box.children[i] || null);
    });
    renderChip();
  }

  function renderNode(address) {
    const n = store.node(address);
    const el = n && nodeRow(address);
    if (el) updateRow(el, n);
    else renderNodes();
    renderChip();
  }

  function openToken(address) {
    tokenOpen.add(address);
    renderNodes();
    nodeRow(address)?.querySelector(".token-input")?.focus();
  }

  function renderChip() {
    const s = store.settings;
    const chip = $("engine-chip");
    const connected = store.nodes.filter((n) => n.status.status === "connected").length;
    chip.classList.toggle("remote", s.engine === "remote");
    chip.textContent =
      s.engine === "local" ? "Local" : `Remote · ${connected} connected${s.useLocalToo ? " + this computer" : ""}`;
    $("engine-local").hidden = s.engine !== "local";
    $("engine-remote").hidden = s.engine !== "remote";
    $("close-connection").disabled =
      connected === 0 && !store.nodes.some((n) => n.status.status === "connecting");
  }

  function renderSettings() {
    const s = store.settings;
    for (const r of document.querySelectorAll('input[name="engine"]')) r.checked = r.value === s.engine;
    $("use-local-too").checked = s.useLocalToo;
    $("retry-attempts").value = s.retry.attempts;
    $("retry-delay").value = s.retry.delayMs / 1000;
    $("retry-timeout").value = s.retry.timeoutMs / 1000;
    $("fleet-resolve").value = s.fleet.resolveEveryMs / 1000;
    $("fleet-dns").value = s.fleet.dnsServer ?? "";
    const threads = String(s.threads);
    $("threads").value = threads;
    if ($("threads").value !== threads) {
      $("threads").append(new Option(threads, threads));
      $("threads").value = threads;
    }
    renderChip();
  }

  async function removeNode(address) {
    try {
      tokenOpen.delete(address);
      store.setNodes(await ipc.removeNode(address));
    } catch (e) {
      errorToast(e, "Node not removed");
    }
  }

  async function saveToken(address, token) {
    try {
      const list = await ipc.setToken(address, token);
      tokenOpen.delete(address);
      store.setNodes(list);
      const where =
        store.tokenPlace === "keyring"
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
        store.setNodeStatus(e.address, e.status);
        if (e.status.status === "untrusted") trustQueue.push({ address: e.address, fingerprint: e.status.fingerprint });
        break;
      case "attemptFailed":
        store.attemptFailed(e.address, e);
        break;
      case "members":
        store.setMembers(e.address, e.members, e.lookupFailed);
        break;
      case "finished": {
        $("connect").disabled = false;
        showNextTrust();
        if (!$("trust-dialog").hidden) break;
        const failed = store.nodes.filter((n) => n.status.status === "failed");
        if (failed.length) {
          const f = failed[0];
          toast(`${f.address}: ${f.status.message}`, { kind: "error", hint: f.status.hint });
        } else if (e.connected > 0) {
          toast(`Connected to ${e.connected} node${e.connected === 1 ? "" : "s"}`, { kind: "ok" });
        }
        break;
      }
    }
  }

  // Where focus was before the trust dialog opened: it goes back there when it closes.
  let trustReturn = null;

  function showNextTrust() {
    const next = trustQueue.shift();
    if (!next) {
      closeTrust();
      return;
    }
    if ($("trust-dialog").hidden) trustReturn = document.activeElement;
    $("trust-address").textContent = next.address;
    // Groups of four hex digits are easier to compare by eye.
    $("trust-fingerprint").textContent = next.fingerprint.match(/.{1,4}/g).join(" ");
    $("trust-fingerprint").dataset.raw = next.fingerprint;
    $("trust-dialog").dataset.address = next.address;
    $("trust-dialog").hidden = false;
    $("trust-accept").focus();
  }

  /** Hides the trust dialog and gives focus back to where it was (else Connect). */
  function closeTrust() {
    const dlg = $("trust-dialog");
    if (dlg.hidden) return;
    dlg.hidden = true;
    const usable = (el) => el && el !== document.body && el.isConnected && !el.disabled;
    const back = usable(trustReturn) ? trustReturn : $("connect");
    trustReturn = null;
    back.focus();
  }

  /** Not trusted: the next node waiting to be compared, if any, else close. */
  function cancelTrust() {
    if (trustQueue.length) showNextTrust();
    else closeTrust();
  }

  async function acceptTrust() {
    const dlg = $("trust-dialog");
    const address = dlg.dataset.address;
    closeTrust();
    try {
      store.setNodes(await ipc.trustNode(address, $("trust-fingerprint").dataset.raw));
      const n = store.node(address);
      if (n && !n.hasToken) {
        openToken(address);
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
    store.clearAttempts();
    renderNodes();
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
      store.setNodes(await ipc.nodes());
      if (n > 0) connectionClosed();
      else toast("No connection was open");
    } catch (e) {
      errorToast(e, "Connection not closed");
    }
  }

  async function patch(p, what) {
    try {
      // Settings come back whole: chain edits still waiting go first, or this answer
      // would carry the chain from before them.
      await flushEdits();
      store.setSettings(await ipc.updateSettings(p));
    } catch (e) {
      errorToast(e, what);
      // Put the fields back to what is saved.
      renderSettings();
    }
  }

  // ---------- the panel opens from the top bar's chip ----------

  const pop = $("engine-panel");
  const chip = $("engine-chip");
  const modalOpen = () => document.querySelector(".modal-backdrop:not([hidden])");
  function setOpen(open, focusChip = false) {
    pop.hidden = !open;
    chip.setAttribute("aria-expanded", String(open));
    if (!open && focusChip) chip.focus();
  }
  chip.addEventListener("click", () => setOpen(pop.hidden));
  $("engine-close").addEventListener("click", () => setOpen(false, true));
  // A click elsewhere closes it; dialogs it opened (trust) and toasts do not.
  document.addEventListener("pointerdown", (e) => {
    if (pop.hidden || pop.contains(e.target) || chip.contains(e.target)) return;
    if (e.target.closest(".modal-backdrop, .toasts")) return;
    setOpen(false);
  });
  // Escape closes it before anything else (the inspector) hears the key.
  window.addEventListener(
    "keydown",
    (e) => {
      if (e.key !== "Escape" || pop.hidden || modalOpen()) return;
      e.preventDefault();
      e.stopPropagation();
      setOpen(false, true);
    },
    true,
  );

  store.on("settings", renderSettings);
  store.on("nodes", renderNodes);
  store.on("node", renderNode);

  for (const r of document.querySelectorAll('input[name="engine"]')) {
    r.addEventListener("change", () => r.checked && patch({ engine: r.value }, "Engine not changed"));
  }
  $("use-local-too").addEventListener("change", () =>
    patch({ useLocalToo: $("use-local-too").checked }, "Setting not changed"),
  );
  $("threads").addEventListener("change", () => patch({ threads: Number($("threads").value) }, "Threads not changed"));
  const saveRetry = () => {
    const attempts = parseInt($("retry-attempts").value, 10);
    const delayMs = Math.round(parseFloat($("retry-delay").value) * 1000);
    const timeoutMs = Math.round(parseFloat($("retry-timeout").value) * 1000);
    if (![attempts, delayMs, timeoutMs].every(Number.isFinite)) return;
    patch({ retry: { attempts, delayMs, timeoutMs } }, "Retries not changed");
  };
  for (const id of ["retry-attempts", "retry-delay", "retry-timeout"]) $(id).addEventListener("change", saveRetry);
  const saveFleet = () => {
    const resolveEveryMs = Math.round(parseFloat($("fleet-resolve").value) * 1000);
    if (!Number.isFinite(resolveEveryMs)) return;
    const dns = $("fleet-dns").value.trim();
    patch({ fleet: { resolveEveryMs, dnsServer: dns || null } }, "Fleet setting not changed");
  };
  for (const id of ["fleet-resolve", "fleet-dns"]) $(id).addEventListener("change", saveFleet);
  $("add-node-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    try {
      store.setNodes(await ipc.addNode($("node-address").value));
      $("node-address").value = "";
    } catch (err) {
      errorToast(err, "Node not added");
    }
  });
  $("connect").addEventListener("click", connect);
  $("close-connection").addEventListener("click", closeConnections);
  $("trust-accept").addEventListener("click", acceptTrust);
  $("trust-cancel").addEventListener("click", cancelTrust);
  // A modal: Escape cancels, Tab and Shift+Tab stay on its buttons.
  $("trust-dialog").addEventListener("keydown", (e) => {
    if (e.key === "Escape") {
      // Handled here: the panel's and the inspector's Escape must not fire too.
      e.preventDefault();
      e.stopPropagation();
      cancelTrust();
    } else if (e.key === "Tab") {
      const order = [$("trust-cancel"), $("trust-accept")];
      const i = order.indexOf(document.activeElement);
      e.preventDefault();
      const next = i < 0 ? order[1] : order[(i + (e.shiftKey ? order.length - 1 : 1)) % order.length];
      next.focus();
    }
  });

  // A fleet's members change at any time (lookups during and between batches): this
  // page hears of it from now on. Events that come before the answer wait for it.
  (async () => {
    const early = [];
    let waiting = true;
    try {
      const list = await ipc.watchNodes((e) => (waiting ? early.push(e) : onConnEvent(e)));
      waiting = false;
      if (store.settings) store.setNodes(list);
      for (const e of early) onConnEvent(e);
    } catch (e) {
      errorToast(e, "Fleet members will not update");
    }
  })();

  // A node was lost during a batch: say so and show its new status.
  store.on("nodeLost", async ({ address, message }) => {
    toast(`Lost ${address}: ${message}`, {
      kind: "error",
      hint: "Its images went to the other workers. Connect again when the node is back.",
    });
    try {
      store.setNodes(await ipc.nodes());
    } catch (e) {
      errorToast(e, "Could not read the nodes");
    }
  });
}
