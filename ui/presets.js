// The sidebar's presets: named chains with their output format, kept in the settings.
// Use one, save the current chain as one, delete, export to and import from JSON files
// (the format `prism process --preset FILE` reads).

import * as ipc from "./ipc.js";
import { chainLabel } from "./chain.js";
import { flushEdits } from "./debounce.js";
import { errorToast, toast } from "./toast.js";

const $ = (id) => document.getElementById(id);

/** Draws the presets panel from `store.settings.presets`. */
export function initPresets(store) {
  function render() {
    const list = $("preset-list");
    const presets = store.settings.presets || [];
    const keep = list.value;
    list.replaceChildren();
    if (!presets.length) list.append(new Option("No presets yet", ""));
    for (const p of presets) {
      const o = new Option(p.name, p.name);
      o.title = `${chainLabel(p.steps)}; format ${p.format}`;
      list.append(o);
    }
    if (presets.some((p) => p.name === keep)) list.value = keep;
    const none = !presets.length;
    list.disabled = none;
    for (const id of ["preset-apply", "preset-export", "preset-delete"]) $(id).disabled = none;
    $("preset-save").disabled = !$("preset-name").value.trim();
  }

  const chosen = () => $("preset-list").value;

  async function run(what, fn, hint) {
    try {
      return await fn();
    } catch (e) {
      errorToast(hint && typeof e === "object" ? { ...e, hint } : e, what);
      return null;
    }
  }

  for (const ev of ["input", "change"]) $("preset-name").addEventListener(ev, render);
  $("preset-name").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !$("preset-save").disabled) $("preset-save").click();
  });
  $("preset-save").addEventListener("click", () =>
    run("Preset not saved", async () => {
      const name = $("preset-name").value.trim();
      // The chain as shown, even if its debounced save has not gone out yet.
      await flushEdits();
      await ipc.setGlobalChain(store.settings.globalOps);
      store.setSettings(await ipc.savePreset(name));
      $("preset-name").value = "";
      $("preset-list").value = name;
      render();
      toast(`Saved the preset "${name}"`, { kind: "ok" });
    }),
  );
  $("preset-apply").addEventListener("click", () =>
    run("Preset not used", async () => {
      const name = chosen();
      // A chain edit still waiting to be saved must not land over the preset afterwards.
      await flushEdits();
      store.setSettings(await ipc.applyPreset(name));
      toast(`Using the preset "${name}"`, { kind: "ok" });
    }),
  );
  $("preset-delete").addEventListener("click", () =>
    run("Preset not deleted", async () => {
      const name = chosen();
      store.setSettings(await ipc.deletePreset(name));
      toast(`Deleted the preset "${name}"`);
    }),
  );
  $("preset-export").addEventListener("click", () =>
    run("Preset not exported", async () => {
      const name = chosen();
      const dest = await ipc.pickPresetExport(name);
      if (!dest) return;
      const path = await ipc.exportPreset(name, dest);
      toast(`Exported "${name}"`, { kind: "ok", hint: path });
    }),
  );
  $("preset-import").addEventListener("click", () =>
    run("Preset not imported", async () => {
      const path = await ipc.pickPresetImport();
      if (!path) return;
      const r = await ipc.importPreset(path);
      store.setSettings(r.settings);
      $("preset-list").value = r.name;
      render();
      toast(`Imported the preset "${r.name}"`, { kind: "ok", hint: 'Press "Use" to run it.' });
    }, "Nothing was changed. Fix the file, or pick one Prism exported (the README describes the format)."),
  );
  store.on("settings", render);
}
