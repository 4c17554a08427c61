// The sidebar's batch part: the chain of operations for all images, the output format,
// Process all / Cancel / Retry failed / Save all, and the progress of the running batch.

import * as ipc from "./ipc.js";
import { debounce, flushEdits } from "./debounce.js";
import { ChainEditor } from "./chain.js";
import { celebrate, errorToast, toast } from "./toast.js";

const $ = (id) => document.getElementById(id);


function plural(n, word) {
  return `${n} ${word}${n === 1 ? "" : "s"}`;
}

function seconds(ms) {
  return ms < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(1)} s`;
}

/** Draws the batch panel from `store`; `actions` start and cancel batches. */
export function initSidebar(store, actions) {
  // The chain shown but not saved yet: settings that come back meanwhile (a format
  // change) must not draw the older chain over it.
  let pending = null;
  const withPending = (s) => (pending ? { ...s, globalOps: pending } : s);
  const chain = new ChainEditor($("global-chain"), {
    prefix: "global",
    store,
    label: "Steps for all images",
    onChange: (ops) => {
      // Shown at once; saved (debounced) so typing does not write settings per key.
      pending = ops;
      store.setSettings({ ...store.settings, globalOps: ops });
      saveGlobalChain(ops);
    },
  });

  function renderGlobal() {
    const s = store.settings;
    chain.render(s.globalOps);
    $("output-format").value = s.outputFormat;
  }

  const saveGlobalChain = debounce(async (ops) => {
    try {
      const saved = await ipc.setGlobalChain(ops);
      if (pending === ops) pending = null;
      store.setSettings(withPending(saved));
    } catch (e) {
      if (pending === ops) pending = null;
      if (e && e.field && e.step) chain.markInvalid(e.step, e.field);
      errorToast(e, "Operations not changed");
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
  $("output-format").addEventListener("change", async () => {
    try {
      // Chain edits still waiting are saved first: answers to two writes in flight may
      // come back in either order, and an older chain must not win in the page.
      const format = $("output-format").value;
      await flushEdits();
      store.setSettings(withPending(await ipc.updateSettings({ outputFormat: format })));
    } catch (e) {
      errorToast(e, "Format not changed");
    }
  });
}
