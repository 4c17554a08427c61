// Prism's page: one store owns the state (a mirror of what Rust holds), the views draw
// from it (grid, inspector, sidebar, engine panel), and the actions here change it
// through commands and job events.

import * as ipc from "./ipc.js";
import { flushEdits } from "./debounce.js";
import { initEngine } from "./engine.js";
import { initGrid } from "./grid.js";
import { initInspector } from "./inspector.js";
import { initPresets } from "./presets.js";
import { initSidebar } from "./sidebar.js";
import { Store } from "./store.js";
import { errorToast, toast } from "./toast.js";

const $ = (id) => document.getElementById(id);

function plural(n, word) {
  return `${n} ${word}${n === 1 ? "" : "s"}`;
}

const store = new Store();

/** What views ask for: each calls Rust, then changes the store. */
const actions = {
  async addPaths(paths) {
    if (!paths.length) return;
    try {
      const report = await ipc.addPaths(paths);
      store.addImages(report.added);
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
  },

  async removeImages(ids) {
    try {
      await ipc.removeImages(ids);
      store.removeImages(ids);
    } catch (e) {
      errorToast(e, "Could not remove");
    }
  },

  async startJob(target) {
    try {
      // The batch runs what is saved: edits still waiting to be saved go first.
      await flushEdits();
      store.jobStarted(await ipc.process(target, (e) => store.jobEvent(e)));
    } catch (e) {
      errorToast(e, "Could not start");
    }
  },
};

function bind() {
  $("add-images").addEventListener("click", async () => {
    try {
      actions.addPaths(await ipc.pickImages());
    } catch (e) {
      errorToast(e, "Could not open the file dialog");
    }
  });
  $("add-folder").addEventListener("click", async () => {
    try {
      actions.addPaths(await ipc.pickFoldersToAdd());
    } catch (e) {
      errorToast(e, "Could not open the folder dialog");
    }
  });
  ipc.onFileDrop(
    (over) => ($("drop-overlay").hidden = !over),
    (paths) => actions.addPaths(paths),
  );
}

async function main() {
  initGrid(store, actions);
  initInspector(store, actions);
  initSidebar(store, actions);
  initPresets(store);
  initEngine(store);
  bind();
  try {
    const [ops, snap] = await Promise.all([ipc.catalogue(), ipc.snapshot()]);
    store.load(ops, snap);
    // A batch still running (the page was reloaded): take its events from here on.
    // Events that come before the answer wait for it, so they apply to its state.
    const early = [];
    let attaching = true;
    const attached = await ipc.attachJob((e) => (attaching ? early.push(e) : store.jobEvent(e)));
    if (attached) store.jobAttached(attached);
    attaching = false;
    for (const e of early) store.jobEvent(e);
    if (snap.warning) toast(snap.warning, { kind: "error", hint: "Your earlier settings were reset." });
    document.body.dataset.ready = "1";
  } catch (e) {
    errorToast(e, "Prism could not start");
  }
}

main();
