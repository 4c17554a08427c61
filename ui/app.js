// Prism's page: the image grid, the sidebar (global op, batch controls, engine), the
// inspector (one image's op, result views, save). State lives in Rust; this keeps a
// mirror of it for drawing, updated from command results and job events.

import * as ipc from "./ipc.js";
import { defaultOp, fillOpSelect, markInvalid, opLabel, renderParams } from "./params.js";
import { Viewer } from "./viewer.js";
import { celebrate, errorToast, toast } from "./toast.js";
import { initEngine, nodeLost } from "./engine.js";

const $ = (id) => document.getElementById(id);

const S = {
  ops: [],
  opById: new Map(),
  images: new Map(), // id -> ImageView from Rust
  order: [],
  settings: null,
  job: null, // { id, total, done, failed, failures, seen }
  finishedJobs: new Set(),
  selected: null,
};

let viewer;

// ---------- helpers ----------

function debounce(fn, ms) {
  let t;
  return (...a) => {
    clearTimeout(t);
    t = setTimeout(() => fn(...a), ms);
  };
}

function effectiveOp(view) {
  return view.override || S.settings.globalOp;
}

function plural(n, word) {
  return `${n} ${word}${n === 1 ? "" : "s"}`;
}

function featureText(result) {
  if (result.keypoints == null) return "";
  const id = result.op.op;
  const what = id === "sift" ? "SIFT keypoints" : id === "corner-detection" ? "corners" : "keypoints";
  return `${result.keypoints.toLocaleString()} ${what}`;
}

// ---------- grid ----------

function stateLabel(st) {
  switch (st.state) {
    case "queued":
      return "queued";
    case "running":
      return st.worker === "local" ? "running" : `running on ${st.worker}`;
    case "done":
      return "done";
    case "failed":
      return st.kind === "cancelled" ? "cancelled" : "failed";
    default:
      return "";
  }
}

function makeCard(id) {
  const card = document.createElement("div");
  card.className = "card";
  card.dataset.id = id;
  card.tabIndex = 0;
  card.innerHTML = `
    <div class="thumb"><img alt="" loading="lazy" decoding="async" /></div>
    <span class="state"></span>
    <button class="card-remove" title="Remove" aria-label="Remove">×</button>
    <div class="card-body">
      <div class="card-name"></div>
      <div class="card-meta"><span class="badge op"></span></div>
      <div class="card-reason" hidden></div>
    </div>`;
  const img = card.querySelector("img");
  // The img stays (hidden) so a later result or a repaired file can still show.
  img.addEventListener("error", () => {
    if (card.querySelector(".thumb-error")) return;
    const msg = document.createElement("div");
    msg.className = "thumb-error";
    msg.textContent = "No preview: the file may be damaged or not an image";
    img.hidden = true;
    img.after(msg);
  });
  img.addEventListener("load", () => {
    img.hidden = false;
    card.querySelector(".thumb-error")?.remove();
  });
  card.addEventListener("click", () => openInspector(id));
  card.addEventListener("keydown", (e) => e.key === "Enter" && openInspector(id));
  card.querySelector(".card-remove").addEventListener("click", (e) => {
    e.stopPropagation();
    removeImages([id]);
  });
  return card;
}

function renderCard(id) {
  const v = S.images.get(id);
  if (!v) return;
  let card = $("grid").querySelector(`.card[data-id="${id}"]`);
  if (!card) {
    card = makeCard(id);
    $("grid").append(card);
  }
  const img = card.querySelector(".thumb img");
  if (img) {
    const src = v.result ? ipc.pixelUrl("result-thumb", id, v.result.rev) : ipc.pixelUrl("thumb", id);
    if (img.getAttribute("src") !== src) img.src = src;
  }
  card.querySelector(".card-name").textContent = v.name;
  card.querySelector(".card-name").title = v.path;
  const st = card.querySelector(".state");
  st.dataset.state = v.state.state;
  st.textContent = stateLabel(v.state);
  card.dataset.state = v.state.state;
  const badge = card.querySelector(".badge.op");
  const op = effectiveOp(v);
  badge.textContent = v.override ? `own: ${opLabel(op.op)}` : opLabel(op.op);
  badge.classList.toggle("override", Boolean(v.override));
  badge.title = v.override
    ? "This image uses its own operation in batches"
    : "Uses the operation for all images";
  card.dataset.override = v.override ? "1" : "0";
  const reason = card.querySelector(".card-reason");
  if (v.state.state === "failed") {
    reason.hidden = false;
    reason.textContent = v.state.message;
    reason.title = `${v.state.message}\n${v.state.hint}`;
  } else {
    reason.hidden = true;
  }
  card.classList.toggle("selected", S.selected === id);
}

function renderAll() {
  const grid = $("grid");
  for (const card of [...grid.children]) {
    if (!S.images.has(Number(card.dataset.id))) card.remove();
  }
  for (const id of S.order) renderCard(id);
  $("empty").hidden = S.order.length > 0;
  updateControls();
}

function upsert(view) {
  if (!S.images.has(view.id)) S.order.push(view.id);
  S.images.set(view.id, view);
}

// ---------- adding and removing ----------

async function addPaths(paths) {
  if (!paths.length) return;
  try {
    const report = await ipc.addPaths(paths);
    for (const v of report.added) upsert(v);
    renderAll();
    if (report.skipped.length) {
      const first = report.skipped
        .slice(0, 3)
        .map((s) => `${s.path.split(/[\\/]/).pop()}: ${s.reason}`)
        .join("; ");
      const more = report.skipped.length > 3 ? ` and ${report.skipped.length - 3} more` : "";
      toast(`${plural(report.skipped.length, "path")} not added`, {
        hint: first + more,
        kind: report.added.length ? "info" : "error",
      });
    }
  } catch (e) {
    errorToast(e, "Could not add images");
  }
}

async function removeImages(ids) {
  try {
    await ipc.removeImages(ids);
    for (const id of ids) {
      S.images.delete(id);
      if (S.selected === id) closeInspector();
    }
    S.order = S.order.filter((id) => S.images.has(id));
    renderAll();
  } catch (e) {
    errorToast(e, "Could not remove");
  }
}

// ---------- batches ----------

function newJob(id, total) {
  return { id, total, done: 0, failed: 0, failures: [], seen: new Set() };
}

async function startJob(target) {
  try {
    const started = await ipc.process(target, onJobEvent);
    if (S.finishedJobs.has(started.job)) return;
    if (!S.job || S.job.id !== started.job) S.job = newJob(started.job, started.ids.length);
    for (const id of started.ids) {
      const v = S.images.get(id);
      if (v && !S.job.seen.has(id)) {
        v.state = { state: "queued" };
        renderCard(id);
      }
    }
    renderProgress();
    updateControls();
  } catch (e) {
    errorToast(e, "Could not start");
  }
}

function setState(id, state) {
  const v = S.images.get(id);
  if (!v) return;
  v.state = state;
  if (S.job) S.job.seen.add(id);
  renderCard(id);
  if (S.selected === id) refreshInspector();
}

function onJobEvent(e) {
  switch (e.event) {
    case "started":
      if (!S.job || S.job.id !== e.job) S.job = newJob(e.job, e.total);
      S.job.total = e.total;
      break;
    case "running":
      setState(e.id, { state: "running", worker: e.worker });
      break;
    case "done": {
      const v = S.images.get(e.id);
      if (v) v.result = e.result;
      setState(e.id, { state: "done" });
      break;
    }
    case "failed":
      setState(e.id, { state: "failed", kind: e.kind, message: e.message, hint: e.hint });
      if (S.job && e.kind !== "cancelled") S.job.failures.push(e);
      break;
    case "progress":
      if (S.job) {
        S.job.ended = e.done;
        S.job.total = e.total;
      }
      break;
    case "nodeLost":
      nodeLost(e.address, e.message);
      break;
    case "finished":
      finishJob(e);
      return;
  }
  if (S.job) {
    S.job.done = [...S.job.seen].filter((id) => S.images.get(id)?.state.state === "done").length;
    S.job.failed = [...S.job.seen].filter((id) => S.images.get(id)?.state.state === "failed").length;
  }
  renderProgress();
}

function finishJob(e) {
  S.finishedJobs.add(e.job);
  const failures = S.job ? S.job.failures : [];
  S.job = null;
  const secs = e.wallMs < 1000 ? `${Math.round(e.wallMs)} ms` : `${(e.wallMs / 1000).toFixed(1)} s`;
  renderProgress({ done: e.done, failed: e.failed, total: e.done + e.failed, secs, cancelled: e.cancelled });
  updateControls();
  if (e.cancelled) {
    toast(`Cancelled: ${e.done} done, ${e.failed} stopped`, {
      hint: 'Press "Retry failed" to run the stopped ones again.',
    });
  } else if (failures.length) {
    const f = failures[0];
    const name = S.images.get(f.id)?.name || "an image";
    const others = failures.length > 1 ? ` (and ${plural(failures.length - 1, "other")})` : "";
    toast(`${name}${others} failed: ${f.message}`, { kind: "error", hint: f.hint });
  } else if (e.done > 0) {
    celebrate(`${plural(e.done, "image")} processed in ${secs}`);
  }
}

function renderProgress(final) {
  const bar = $("progress");
  const fill = $("progress-fill");
  const text = $("progress-text");
  if (final) {
    bar.classList.remove("running");
    fill.style.width = "100%";
    bar.setAttribute("aria-valuenow", "100");
    text.textContent = final.cancelled
      ? `Cancelled after ${final.secs}: ${final.done} done, ${final.failed} not finished.`
      : `Finished in ${final.secs}: ${final.done} done` + (final.failed ? `, ${final.failed} failed.` : ".");
    return;
  }
  const j = S.job;
  if (!j) return;
  const ended = j.done + j.failed;
  const pct = j.total ? Math.round((ended / j.total) * 100) : 0;
  bar.classList.add("running");
  fill.style.width = `${pct}%`;
  bar.setAttribute("aria-valuenow", String(pct));
  const running = [...j.seen].filter((id) => S.images.get(id)?.state.state === "running").length;
  text.textContent =
    `${ended} / ${j.total} done` + (j.failed ? `, ${j.failed} failed` : "") + (running ? `, ${running} running` : "");
}

function updateControls() {
  const busy = Boolean(S.job);
  const any = S.order.length > 0;
  const failed = S.order.some((id) => S.images.get(id).state.state === "failed");
  const results = S.order.some((id) => S.images.get(id).result);
  $("process-all").disabled = busy || !any;
  $("cancel").disabled = !busy;
  $("retry-failed").disabled = busy || !failed;
  // Saving while a batch runs could copy a result the batch is replacing.
  $("save-all").disabled = busy || !results;
  $("clear-all").disabled = busy || !any;
  $("process-one").disabled = busy;
  $("remove-one").disabled = busy;
  const sel = S.selected != null && S.images.get(S.selected);
  $("save-one").disabled = busy || !(sel && sel.result);
  for (const b of document.querySelectorAll(".card-remove")) b.disabled = busy;
}

// ---------- global op ----------

function renderGlobal() {
  const op = S.settings.globalOp;
  const info = S.opById.get(op.op);
  $("global-op").value = op.op;
  $("global-op-summary").textContent = info ? info.summary : "";
  if (info) renderParams($("global-params"), info, op.params, saveGlobalOp);
  $("output-format").value = S.settings.outputFormat;
  $("threads").value = String(S.settings.threads);
  if ($("threads").value !== String(S.settings.threads)) {
    $("threads").append(new Option(String(S.settings.threads), String(S.settings.threads)));
    $("threads").value = String(S.settings.threads);
  }
}

const saveGlobalOp = debounce(async (op) => {
  try {
    S.settings = await ipc.setGlobalOp(op);
    for (const id of S.order) renderCard(id);
    if (S.selected != null) refreshInspector();
  } catch (e) {
    if (e && e.field) markInvalid($("global-params"), e.field);
    errorToast(e, "Operation not changed");
  }
}, 250);

// ---------- inspector ----------

function openInspector(id) {
  const prev = S.selected;
  S.selected = id;
  if (prev != null) renderCard(prev);
  renderCard(id);
  $("inspector").hidden = false;
  refreshInspector(true);
}

function closeInspector() {
  const prev = S.selected;
  S.selected = null;
  $("inspector").hidden = true;
  viewer.clear();
  if (prev != null) renderCard(prev);
  updateControls();
}

function refreshInspector(full = false) {
  const v = S.images.get(S.selected);
  if (!v) return;
  $("inspector-name").textContent = v.name;
  $("inspector-path").textContent = v.path;
  $("inspector-path").title = v.path;
  const sel = $("inspector-op");
  const globalLabel = `All images' operation (${opLabel(S.settings.globalOp.op)})`;
  if (full || sel.options[0]?.textContent !== globalLabel) {
    fillOpSelect(sel, S.ops, [["", globalLabel]]);
  }
  sel.value = v.override ? v.override.op : "";
  const params = $("inspector-params");
  if (v.override) {
    const info = S.opById.get(v.override.op);
    if (full || params.dataset.op !== v.override.op) {
      renderParams(params, info, v.override.params, (op) => saveOverride(v.id, op));
      params.dataset.op = v.override.op;
    }
  } else {
    params.replaceChildren();
    params.dataset.op = "";
  }
  const status = $("inspector-status");
  status.className = "small";
  const st = v.state;
  if (st.state === "failed") {
    status.classList.add("failed");
    status.textContent = `${st.kind === "cancelled" ? "Cancelled" : "Failed"}: ${st.message}. ${st.hint}`;
  } else if (st.state === "running") {
    status.textContent = `Running on ${st.worker}…`;
  } else if (st.state === "queued") {
    status.textContent = "Queued…";
  } else if (v.result) {
    const t = v.result.timingsMs;
    status.textContent =
      `${opLabel(v.result.op.op)} on ${v.result.worker}: ` +
      `decode ${t.decode.toFixed(0)} ms, op ${t.op.toFixed(0)} ms, encode ${t.encode.toFixed(0)} ms`;
  } else {
    status.textContent = "";
  }
  const feats = $("features");
  const ft = v.result ? featureText(v.result) : "";
  feats.replaceChildren();
  if (ft) {
    const b = document.createElement("strong");
    b.textContent = ft;
    feats.append(b, " found");
  }
  viewer.show(
    ipc.pixelUrl("source", v.id),
    v.result ? ipc.pixelUrl("result", v.id, v.result.rev) : null,
  );
  updateControls();
}

async function setOverrideOp(id, op) {
  try {
    const view = await ipc.setOverride(id, op);
    // Only the override is news: job events may have moved the state on meanwhile.
    const cur = S.images.get(id);
    S.images.set(id, cur ? { ...cur, override: view.override } : view);
    renderCard(id);
    refreshInspector();
  } catch (e) {
    if (e && e.field) markInvalid($("inspector-params"), e.field);
    errorToast(e, "Operation not changed");
  }
}

// One debounce per image: an edit to one image must not be dropped by a quick edit to
// the next one.
const overrideSavers = new Map();
function saveOverride(id, op) {
  if (!overrideSavers.has(id)) overrideSavers.set(id, debounce((op) => setOverrideOp(id, op), 250));
  overrideSavers.get(id)(op);
}

async function saveOne() {
  const v = S.images.get(S.selected);
  if (!v || !v.result) return;
  try {
    const dest = await ipc.pickSaveFile(v.result.suggestedName);
    if (!dest) return;
    const path = await ipc.saveOne(v.id, dest);
    toast(`Saved ${path.split(/[\\/]/).pop()}`, { kind: "ok", hint: path });
  } catch (e) {
    errorToast(e, "Not saved");
  }
}

async function saveAll() {
  try {
    const dir = await ipc.pickFolder(`Save all into a folder (inside "${S.saveAllFolder}")`);
    if (!dir) return;
    const r = await ipc.saveAll(dir, $("on-exists").value);
    const skipped = r.skipped.length ? `; ${plural(r.skipped.length, "image")} skipped (name taken)` : "";
    if (r.failed.length) {
      const f = r.failed[0];
      toast(`Saved ${plural(r.files.length, "image")}${skipped}; ${plural(r.failed.length, "image")} not saved: ${f.message}`, {
        kind: "error",
        hint: "Check that the folder is writable and the disk has space, then save again.",
      });
    } else {
      toast(`Saved ${plural(r.files.length, "image")}${skipped}`, { kind: "ok", hint: r.folder });
    }
  } catch (e) {
    errorToast(e, "Not saved");
  }
}

// ---------- wiring ----------

function bind() {
  $("add-images").addEventListener("click", async () => {
    try {
      addPaths(await ipc.pickImages());
    } catch (e) {
      errorToast(e, "Could not open the file dialog");
    }
  });
  $("add-folder").addEventListener("click", async () => {
    try {
      addPaths(await ipc.pickFoldersToAdd());
    } catch (e) {
      errorToast(e, "Could not open the folder dialog");
    }
  });
  $("clear-all").addEventListener("click", () => removeImages([...S.order]));
  $("process-all").addEventListener("click", () => startJob("all"));
  $("retry-failed").addEventListener("click", () => startJob("failed"));
  $("cancel").addEventListener("click", async () => {
    if (!S.job) return;
    $("cancel").disabled = true;
    $("progress-text").textContent = "Cancelling…";
    try {
      await ipc.cancel(S.job.id);
    } catch (e) {
      errorToast(e, "Could not cancel");
    }
  });
  $("save-all").addEventListener("click", saveAll);
  $("global-op").addEventListener("change", () => {
    const info = S.opById.get($("global-op").value);
    const op = defaultOp(info);
    S.settings.globalOp = op;
    renderGlobal();
    saveGlobalOp(op);
  });
  $("output-format").addEventListener("change", async () => {
    try {
      S.settings = await ipc.updateSettings({ outputFormat: $("output-format").value });
    } catch (e) {
      errorToast(e, "Format not changed");
    }
  });
  $("threads").addEventListener("change", async () => {
    try {
      S.settings = await ipc.updateSettings({ threads: Number($("threads").value) });
    } catch (e) {
      errorToast(e, "Threads not changed");
    }
  });

  $("inspector-close").addEventListener("click", closeInspector);
  $("inspector-op").addEventListener("change", () => {
    const id = S.selected;
    const value = $("inspector-op").value;
    setOverrideOp(id, value ? defaultOp(S.opById.get(value)) : null);
  });
  $("process-one").addEventListener("click", () => S.selected != null && startJob({ ids: [S.selected] }));
  $("save-one").addEventListener("click", saveOne);
  $("remove-one").addEventListener("click", () => S.selected != null && removeImages([S.selected]));
  for (const r of document.querySelectorAll('input[name="view"]')) {
    r.addEventListener("change", () => viewer.setMode(r.value));
  }
  $("zoom-in").addEventListener("click", () => viewer.zoomBy(1.25));
  $("zoom-out").addEventListener("click", () => viewer.zoomBy(0.8));
  $("zoom-fit").addEventListener("click", () => viewer.fit());
  document.addEventListener("keydown", (e) => {
    if (e.key === "Escape" && S.selected != null) closeInspector();
  });

  ipc.onFileDrop(
    (over) => ($("drop-overlay").hidden = !over),
    (paths) => addPaths(paths),
  );
}

async function main() {
  viewer = new Viewer($("viewer"));
  bind();
  try {
    const [ops, snap] = await Promise.all([ipc.catalogue(), ipc.snapshot()]);
    S.ops = ops;
    for (const o of ops) S.opById.set(o.id, o);
    S.settings = snap.settings;
    S.saveAllFolder = snap.saveAllFolder;
    for (const v of snap.images) upsert(v);
    fillOpSelect($("global-op"), ops);
    renderGlobal();
    renderAll();
    initEngine(
      { getSettings: () => S.settings, setSettings: (s) => (S.settings = s), tokenPlace: snap.tokenPlace },
      snap.nodes,
    );
    if (snap.warning) toast(snap.warning, { kind: "error", hint: "Your earlier settings were reset." });
    document.body.dataset.ready = "1";
  } catch (e) {
    errorToast(e, "Prism could not start");
  }
}

main();
