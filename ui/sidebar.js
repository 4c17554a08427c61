// The sidebar's batch part: the operation for all images, the output format, Process
// all / Cancel / Retry failed / Save all, and the progress of the running batch.

import * as ipc from "./ipc.js";
import { defaultOp, fillOpSelect, markInvalid, renderParams } from "./params.js";
import { celebrate, errorToast, toast } from "./toast.js";

const $ = (id) => document.getElementById(id);

function debounce(fn, ms) {
  let t;
  return (...a) => {
    clearTimeout(t);
    t = setTimeout(() => fn(...a), ms);
  };
}

function plural(n, word) {
  return `${n} ${word}${n === 1 ? "" : "s"}`;
}

function seconds(ms) {
  return ms < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(1)} s`;
}

/** Draws the batch panel from `store`; `actions` start and cancel batches. */
export function initSidebar(store, actions) {
  function renderGlobal() {
    const s = store.settings;
    const op = s.globalOp;
    const info = store.opById.get(op.op);
    if ($("global-op").options.length !== store.ops.length) fillOpSelect($("global-op"), store.ops);
    $("global-op").value = op.op;
    $("global-op-summary").textContent = info ? info.summary : "";
    // Redrawn only when the op changes: a redraw would drop a half-typed value.
    const params = $("global-params");
    if (info && params.dataset.op !== op.op) {
      renderParams(params, info, op.params, saveGlobalOp);
      params.dataset.op = op.op;
    }
    $("output-format").value = s.outputFormat;
  }

  const saveGlobalOp = debounce(async (op) => {
    try {
      store.setSettings(await ipc.setGlobalOp(op));
    } catch (e) {
      if (e && e.field) markInvalid($("global-params"), e.field);
      errorToast(e, "Operation not changed");
    }
  }, 250);

  function updateControls() {
    const busy = store.busy();
    const any = store.order.length > 0;
    $("process-all").disabled = busy || !any;
    $("cancel").disabled = !busy;
    $("retry-failed").disabled = busy || !store.anyFailed();
    // Saving while a batch runs could copy a result the batch is replacing.
    $("save-all").disabled = busy || !store.anyResult();
    $("clear-all").disabled = busy || !any;
  }

  function renderProgress() {
    const bar = $("progress");
    const fill = $("progress-fill");
    const text = $("progress-text");
    const j = store.job;
    if (!j) {
      const r = store.lastRun;
      if (!r) return;
      const secs = seconds(r.wallMs);
      bar.classList.remove("running");
      fill.style.width = "100%";
      bar.setAttribute("aria-valuenow", "100");
      text.textContent = r.cancelled
        ? `Cancelled after ${secs}: ${r.done} done, ${r.failed} not finished.`
        : `Finished in ${secs}: ${r.done} done` + (r.failed ? `, ${r.failed} failed.` : ".");
      return;
    }
    const ended = j.done + j.failed;
    const pct = j.total ? Math.round((ended / j.total) * 100) : 0;
    bar.classList.add("running");
    fill.style.width = `${pct}%`;
    bar.setAttribute("aria-valuenow", String(pct));
    text.textContent =
      `${ended} / ${j.total} done` + (j.failed ? `, ${j.failed} failed` : "") + (j.running ? `, ${j.running} running` : "");
  }

  /** What the user hears when a batch ends. */
  function announce(r) {
    const secs = seconds(r.wallMs);
    if (r.cancelled) {
      toast(`Cancelled: ${r.done} done, ${r.failed} stopped`, {
        hint: 'Press "Retry failed" to run the stopped ones again.',
      });
    } else if (r.failures.length) {
      const f = r.failures[0];
      const name = store.image(f.id)?.name || "an image";
      const others = r.failures.length > 1 ? ` (and ${plural(r.failures.length - 1, "other")})` : "";
      toast(`${name}${others} failed: ${f.message}`, { kind: "error", hint: f.hint });
    } else if (r.done > 0) {
      celebrate(`${plural(r.done, "image")} processed in ${secs}`);
    }
  }

  async function saveAll() {
    try {
      const dir = await ipc.pickSaveAllFolder(store.saveAllFolder);
      if (!dir) return;
      const r = await ipc.saveAll(dir, $("on-exists").value);
      const skipped = r.skipped.length ? `; ${plural(r.skipped.length, "image")} skipped (name taken)` : "";
      if (r.failed.length) {
        const f = r.failed[0];
        toast(
          `Saved ${plural(r.files.length, "image")}${skipped}; ${plural(r.failed.length, "image")} not saved: ${f.message}`,
          {
            kind: "error",
            hint: "Check that the folder is writable and the disk has space, then save again.",
          },
        );
      } else {
        toast(`Saved ${plural(r.files.length, "image")}${skipped}`, { kind: "ok", hint: r.folder });
      }
    } catch (e) {
      errorToast(e, "Not saved");
    }
  }

  let lastAnnounced = null;
  store.on("settings", renderGlobal);
  store.on("images", updateControls);
  store.on("image", updateControls);
  store.on("job", () => {
    renderProgress();
    updateControls();
    if (!store.job && store.lastRun && store.lastRun !== lastAnnounced) {
      lastAnnounced = store.lastRun;
      announce(store.lastRun);
    }
  });

  $("process-all").addEventListener("click", () => actions.startJob("all"));
  $("retry-failed").addEventListener("click", () => actions.startJob("failed"));
  $("cancel").addEventListener("click", async () => {
    if (!store.job) return;
    $("cancel").disabled = true;
    $("progress-text").textContent = "Cancelling…";
    try {
      await ipc.cancel(store.job.id);
    } catch (e) {
      errorToast(e, "Could not cancel");
    }
  });
  $("save-all").addEventListener("click", saveAll);
  $("clear-all").addEventListener("click", () => actions.removeImages([...store.order]));
  $("global-op").addEventListener("change", () => {
    const info = store.opById.get($("global-op").value);
    // Shown at once; saved (debounced) like a parameter change.
    store.setSettings({ ...store.settings, globalOp: defaultOp(info) });
    saveGlobalOp(store.settings.globalOp);
  });
  $("output-format").addEventListener("change", async () => {
    try {
      store.setSettings(await ipc.updateSettings({ outputFormat: $("output-format").value }));
    } catch (e) {
      errorToast(e, "Format not changed");
    }
  });
}
