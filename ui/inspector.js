// The inspector: the selected image's own op, Process / Save / Remove, its status, and
// the result views (side by side or before/after, one zoom for both).

import * as ipc from "./ipc.js";
import { debounce } from "./debounce.js";
import { ChainEditor, chainLabel } from "./chain.js";
import { errorToast, toast } from "./toast.js";
import { Viewer } from "./viewer.js";

const $ = (id) => document.getElementById(id);


function featureText(result) {
  if (result.keypoints == null) return "";
  // Features come from the chain's last op that finds any.
  const id = result.ops
    .map((o) => o.op)
    .reverse()
    .find((op) => op === "sift" || op === "corner-detection");
  const what = id === "sift" ? "SIFT keypoints" : id === "corner-detection" ? "corners" : "keypoints";
  return `${result.keypoints.toLocaleString()} ${what}`;
}

/** Draws the inspector of `store.selected`; `actions` start batches and remove images. */
export function initInspector(store, actions) {
  const viewer = new Viewer($("viewer"));

  function updateControls() {
    const busy = store.busy();
    const v = store.selected != null && store.image(store.selected);
    $("process-one").disabled = busy;
    $("remove-one").disabled = busy;
    $("save-one").disabled = busy || !(v && v.result);
  }

  // ---------- previous / next ----------

  /** The image `delta` places from the selected one in the grid's order, or null. */
  function neighbour(delta) {
    const i = store.order.indexOf(store.selected);
    return i < 0 ? null : (store.order[i + delta] ?? null);
  }

  function step(delta) {
    const id = neighbour(delta);
    if (id != null) store.select(id);
  }

  function renderNav() {
    const i = store.order.indexOf(store.selected);
    $("inspector-pos").textContent = i < 0 ? "" : `${i + 1} of ${store.order.length} ·`;
    $("inspector-prev").disabled = neighbour(-1) == null;
    $("inspector-next").disabled = neighbour(1) == null;
  }

  // ---------- the split between grid and inspector ----------

  const split = $("inspector-split");
  const MIN_PANEL = 360; // px: the inspector's controls need this much
  const MIN_GRID = 220; // px: one column of cards with the grid's padding
  const KEY_STEP = 40;
  const WIDTH_KEY = "prism.inspectorWidth";
  // The width the user chose (px), or null for the default share of the room.
  let wanted = Number(localStorage.getItem(WIDTH_KEY)) || null;

  function layoutWidth() {
    const room = document.querySelector(".layout").clientWidth - document.querySelector(".sidebar").offsetWidth;
    const most = room - split.offsetWidth - MIN_GRID;
    const w = wanted ?? Math.round(room * 0.55);
    return Math.round(Math.max(Math.min(w, most), Math.min(MIN_PANEL, most)));
  }

  function applyWidth() {
    const w = layoutWidth();
    const root = document.documentElement.style;
    root.setProperty("--inspector-w", `${w}px`);
    // What the inspector takes from the right edge, for whatever must stay clear of it.
    root.setProperty("--inspector-space", split.hidden ? "0px" : `${w + split.offsetWidth}px`);
    split.setAttribute("aria-valuenow", String(w));
    return w;
  }

  function keepWidth(w) {
    wanted = w;
    if (w == null) localStorage.removeItem(WIDTH_KEY);
    else localStorage.setItem(WIDTH_KEY, String(w));
    applyWidth();
  }

  split.addEventListener("pointerdown", (e) => {
    if (e.button !== 0) return;
    e.preventDefault();
    split.setPointerCapture(e.pointerId);
    split.classList.add("dragging");
    document.body.classList.add("resizing");
    const right = document.querySelector(".layout").getBoundingClientRect().right;
    const move = (ev) => {
      wanted = right - ev.clientX - split.offsetWidth / 2;
      applyWidth();
    };
    const end = () => {
      split.removeEventListener("pointermove", move);
      split.classList.remove("dragging");
      document.body.classList.remove("resizing");
      keepWidth(layoutWidth());
    };
    split.addEventListener("pointermove", move);
    split.addEventListener("pointerup", end, { once: true });
    split.addEventListener("pointercancel", end, { once: true });
  });
  split.addEventListener("dblclick", () => keepWidth(null));
  split.addEventListener("keydown", (e) => {
    // Left moves the split left: a wider inspector.
    const d = { ArrowLeft: KEY_STEP, ArrowRight: -KEY_STEP }[e.key];
    if (d === undefined) return;
    e.preventDefault();
    e.stopPropagation();
    keepWidth(layoutWidth() + d);
  });
  window.addEventListener("resize", applyWidth);

  // ---------- drawing ----------

  function refresh(full = false) {
    const v = store.image(store.selected);
    if (!v) return;
    renderNav();
    $("inspector-name").textContent = v.name;
    $("inspector-path").textContent = v.path;
    $("inspector-path").title = v.path;
    const globalLabel = `All images' operations (${chainLabel(store.settings.globalOps)})`;
    const relabel = chain.none[1] !== globalLabel;
    chain.none = ["", globalLabel];
    chain.render(v.override, full || relabel);
    const status = $("inspector-status");
    status.className = "small";
    const st = v.state;
    if (st.state === "failed") {
      status.classList.add("failed");
      const what = st.kind === "cancelled" ? "Cancelled" : "Failed";
      // Without a result the panes give the reason; with one, they show that result.
      status.textContent = v.result
        ? `${what}: ${st.message}. ${st.hint} The result shown is from an earlier run.`
        : `${what}.`;
    } else if (st.state === "running") {
      status.textContent = `Running on ${st.worker}…`;
    } else if (st.state === "queued") {
      status.textContent = "Queued…";
    } else if (v.result) {
      const t = v.result.timingsMs;
      status.textContent =
        `${chainLabel(v.result.ops)} on ${v.result.worker}: ` +
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
    const r = v.result;
    // A live preview lasts until another image is shown or a new result arrives.
    if (live && (live.id !== v.id || (r ? r.rev : null) !== live.rev)) live = null;
    let after = null;
    if (live) after = { display: live.url, zoom: live.zoom };
    else if (r) after = { display: ipc.pixelUrl("result-display", v.id, r.rev), zoom: ipc.pixelUrl("result", v.id, r.rev) };
    $("pane-after").classList.toggle("live", Boolean(live));
    $("after-label").textContent = live
      ? `Preview, not processed${live.approximate ? " (approximate: ops run on a scaled-down copy)" : ""}`
      : "Processed";
    viewer.show({ display: ipc.pixelUrl("display", v.id), zoom: ipc.pixelUrl("source", v.id) }, after, notes(v));
    const gain = $("diff-gain").value;
    $("diff-label").textContent = gain === "1" ? "|Original − Processed|" : `|Original − Processed| × ${gain}`;
    viewer.showDiff(r ? ipc.pixelUrl("diff", v.id, `${r.rev}/${gain}`) : null, diffNote(v));
    if (viewer.probe) readAt(viewer.probe);
    updateControls();
  }

  // ---------- live preview ----------

  // The preview in the Processed pane ({id, rev, url, zoom, approximate}), or null. Each
  // edit takes a generation from Rust, which stops the render of the one before; an
  // answer older than the latest shown is dropped.
  let live = null;
  let liveGen = 0;

  /**
   * Re-renders image `id` through `ops` (a pipeline, in order) at the size the pane shows
   * it. A slow chain comes first as a smaller pass Rust can make in time; the viewer then
   * sharpens it to the pane's size, and to the display rendition's once zoomed in.
   */
  async function livePreview(id, ops) {
    const v = store.image(id);
    if (!v || !ops.length) return;
    try {
      const size = viewer.screenSize();
      const plan = await ipc.setLive(id, ops, size);
      if (plan.gen < liveGen || store.selected !== id) return;
      liveGen = plan.gen;
      const rev = v.result ? v.result.rev : null;
      const url = (edge) => ipc.pixelUrl("live", id, `${plan.gen}/${edge}`);
      const want = Math.min(Math.max(size.width, size.height), plan.full);
      // The display rendition's size: sharper than the viewer can know before it loads.
      const zoom = [
        { url: url(want), edge: want },
        { url: url(plan.full), edge: Infinity },
      ];
      live = { id, rev, url: url(Math.min(plan.first, want)), zoom, approximate: plan.approximate };
      refresh();
    } catch (e) {
      errorToast(e, "No preview");
    }
  }

  /** The ops image `v` goes through in a batch, as a list. */
  const opsOf = (v) => store.effectiveChain(v);

  let lastGlobal = null;
  store.on("settings", () => {
    const now = JSON.stringify(store.settings.globalOps);
    const changed = lastGlobal !== null && now !== lastGlobal;
    lastGlobal = now;
    const v = store.selected != null && store.image(store.selected);
    // The sidebar's chain is the selected image's when it has none of its own.
    if (changed && v && !v.override) livePreview(v.id, opsOf(v));
  });

  /** What the difference view says without a result. */
  function diffNote(v) {
    const st = v.state;
    if (st.state === "queued" || st.state === "running") return { title: "Not processed yet", text: "Running…" };
    return { title: "Not processed yet", hint: "Process the image to compare it with its result." };
  }

  // ---------- the pixel readout ----------

  const CHANNELS = { 1: ["L"], 2: ["L", "A"], 3: ["R", "G", "B"], 4: ["R", "G", "B", "A"] };

  function valuesText(values) {
    const names = CHANNELS[values.length] || [];
    return values.map((x, i) => `${names[i] || "?"} ${x}`).join(" ");
  }

  /** |a − b| per colour channel (grey counts in each), alpha left out. */
  function deltaText(a, b) {
    const colour = (vals) => {
      const c = vals.length <= 2 ? [vals[0], vals[0], vals[0]] : vals.slice(0, 3);
      return c;
    };
    const grey = a.length <= 2 && b.length <= 2;
    const d = colour(a).map((x, i) => Math.abs(x - colour(b)[i]));
    return grey ? `L ${d[0]}` : d.map((x, i) => `${"RGB"[i]} ${x}`).join(" ");
  }

  function showReadout(r) {
    const el = $("readout");
    el.classList.remove("muted");
    const o = r.original;
    viewer.fullSize = { w: o.width, h: o.height };
    const part = (label, text) => {
      const b = document.createElement("b");
      b.textContent = label;
      return [b, ` ${text}`];
    };
    const bits = [`x ${o.x}, y ${o.y} of ${o.width}×${o.height} · `, ...part("Original", valuesText(o.values))];
    if (r.result) {
      const at = r.result.x !== o.x || r.result.y !== o.y ? ` (x ${r.result.x}, y ${r.result.y})` : "";
      bits.push(" · ", ...part("Processed", valuesText(r.result.values) + at));
      bits.push(" · ", ...part("|Δ|", deltaText(o.values, r.result.values)));
    }
    el.replaceChildren(...bits);
  }

  function readoutHint(text) {
    const el = $("readout");
    el.classList.add("muted");
    el.textContent = text;
  }

  // One request at a time; the latest position waits for it, the ones in between go.
  let pending = null;
  let reading = false;
  async function readAt(p) {
    const v = store.image(store.selected);
    if (!p || !v) {
      pending = null;
      readoutHint("Point at the image (or focus a pane and use the arrow keys) to read its pixel values.");
      return;
    }
    pending = { id: v.id, rev: v.result ? v.result.rev : null, u: p.u, v: p.v };
    if (reading) return;
    reading = true;
    try {
      while (pending) {
        const w = pending;
        pending = null;
        try {
          const r = await ipc.readout(w.id, w.rev, w.u, w.v);
          if (store.selected === w.id && viewer.probe) showReadout(r);
        } catch (e) {
          readoutHint(`No pixel values: ${e && e.message ? e.message : e}`);
        }
      }
    } finally {
      reading = false;
    }
  }
  viewer.onProbe = readAt;

  /** What the panes say when they have no image to show. */
  function notes(v) {
    const st = v.state;
    const failure =
      st.state === "failed"
        ? {
            title: st.kind === "cancelled" ? "Cancelled" : "Failed",
            text: st.message,
            hint: st.hint,
            failed: st.kind !== "cancelled",
          }
        : null;
    let afterNote = { title: "Not processed yet", hint: "Press Process, or Process all." };
    if (failure) afterNote = failure;
    else if (st.state === "queued") afterNote = { title: "Queued…" };
    else if (st.state === "running") afterNote = { title: `Running on ${st.worker}…` };
    const brokenNote =
      failure && failure.failed
        ? { ...failure, title: "No preview" }
        : {
            title: "No preview",
            text: "The file may be damaged or not an image.",
            hint: "Process it to see why, or remove it.",
            failed: true,
          };
    return { afterNote, brokenNote };
  }

  async function setOverrideChain(id, ops) {
    try {
      const view = await ipc.setOverride(id, ops);
      store.setOverride(id, view.override);
    } catch (e) {
      if (e && e.field && e.step && id === store.selected) chain.markInvalid(e.step, e.field);
      errorToast(e, "Operations not changed");
    }
  }

  // One debounce per image: an edit to one image must not be dropped by a quick edit to
  // the next one.
  const overrideSavers = new Map();
  function saveOverride(id, ops) {
    if (!overrideSavers.has(id)) overrideSavers.set(id, debounce((ops) => setOverrideChain(id, ops), 250));
    overrideSavers.get(id)(ops);
  }

  // The selected image's own chain; step 1's picker first offers all images' chain.
  const chain = new ChainEditor($("inspector-chain"), {
    prefix: "inspector",
    store,
    label: "Steps for this image",
    none: ["", "All images' operations"],
    onChange: (ops) => {
      const id = store.selected;
      if (id == null) return;
      // Shown at once (the grid's badge follows); saved debounced, in order; previewed
      // at once.
      store.setOverride(id, ops);
      saveOverride(id, ops);
      livePreview(id, opsOf(store.image(id)));
    },
  });

  async function saveOne() {
    const v = store.image(store.selected);
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

  // The inspector's first layout costs some 60 ms more than later ones (WebKit sets up
  // its fonts and form controls once): doing it unseen after the page's first paint keeps
  // that off the first click on a card.
  function warmUp() {
    const el = $("inspector");
    if (!el.hidden) return;
    el.style.visibility = "hidden";
    el.hidden = false;
    void el.offsetWidth;
    el.hidden = true;
    el.style.visibility = "";
  }
  if (document.readyState === "complete") setTimeout(warmUp, 0);
  else window.addEventListener("load", () => setTimeout(warmUp, 0), { once: true });

  store.on("selection", ({ id }) => {
    if (id == null) {
      $("inspector").hidden = true;
      split.hidden = true;
      applyWidth();
      viewer.clear();
      updateControls();
      return;
    }
    const opening = $("inspector").hidden;
    $("inspector").hidden = false;
    split.hidden = false;
    if (opening) applyWidth();
    refresh(true);
  });
  store.on("images", () => store.selected != null && renderNav());
  store.on("image", (id) => id === store.selected && refresh());
  store.on("settings", () => store.selected != null && refresh());
  store.on("job", updateControls);

  $("inspector-close").addEventListener("click", () => store.select(null));
  $("inspector-prev").addEventListener("click", () => step(-1));
  $("inspector-next").addEventListener("click", () => step(1));
  $("process-one").addEventListener("click", () => store.selected != null && actions.startJob({ ids: [store.selected] }));
  $("save-one").addEventListener("click", saveOne);
  $("remove-one").addEventListener("click", () => store.selected != null && actions.removeImages([store.selected]));
  for (const r of document.querySelectorAll('input[name="view"]')) {
    r.addEventListener("change", () => {
      $("diff-gain-field").hidden = r.value !== "diff";
      viewer.setMode(r.value);
    });
  }
  $("diff-gain").addEventListener("change", () => store.selected != null && refresh());
  $("zoom-in").addEventListener("click", () => viewer.zoomBy(1.25));
  $("zoom-out").addEventListener("click", () => viewer.zoomBy(0.8));
  $("zoom-fit").addEventListener("click", () => viewer.fit());
  // Keys that edit a field or move the split stay there.
  const typing = (el) => el && (el.isContentEditable || ["INPUT", "SELECT", "TEXTAREA"].includes(el.tagName));
  document.addEventListener("keydown", (e) => {
    if (store.selected == null || e.defaultPrevented) return;
    if (e.key === "Escape") {
      store.select(null);
    } else if (
      (e.key === "ArrowLeft" || e.key === "ArrowRight") &&
      !(e.altKey || e.ctrlKey || e.metaKey || e.shiftKey) &&
      !typing(e.target) &&
      !document.querySelector(".modal-backdrop:not([hidden])")
    ) {
      e.preventDefault();
      step(e.key === "ArrowLeft" ? -1 : 1);
    }
  });
}
