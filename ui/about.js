// The about box: version, licence and how the engine runs here (the SIMD path taken on
// this CPU). Opened by the "i" button in the top bar; Escape or Close shuts it and gives
// focus back to the button.

import * as ipc from "./ipc.js";

const $ = (id) => document.getElementById(id);

async function open() {
  const dlg = $("about-dialog");
  try {
    const a = await ipc.about();
    $("about-version").textContent = a.version;
    $("about-license").textContent = a.license;
    $("about-build").textContent = `${a.target}, ${a.profile}`;
    $("about-simd").textContent =
      a.simd_path === "avx2+fma"
        ? "AVX2 + FMA (found at run time)"
        : a.simd_forced
          ? "Baseline SSE2 (chosen by PRISM_KERNELS)"
          : "Baseline SSE2 (no AVX2 + FMA on this CPU)";
    $("about-cpu").textContent = a.cpu_features.length ? a.cpu_features.join(", ") : "none detected";
  } catch (e) {
    $("about-build").textContent = `unknown (${e})`;
  }
  dlg.hidden = false;
  $("about-close").focus();
}

function close() {
  $("about-dialog").hidden = true;
  $("about-open").focus();
}

$("about-open").addEventListener("click", open);
$("about-close").addEventListener("click", close);
$("about-dialog").addEventListener("click", (e) => {
  if (e.target === e.currentTarget) close();
});
$("about-dialog").addEventListener("keydown", (e) => {
  if (e.key === "Escape") {
    // Handled here: the page's own Escape (closing the image inspector) must not fire too.
    e.stopPropagation();
    e.preventDefault();
    close();
  } else if (e.key === "Tab") {
    // Close is the only control: keep focus in the dialog.
    e.preventDefault();
    $("about-close").focus();
  }
});
