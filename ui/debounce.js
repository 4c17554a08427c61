// Debounced saves the page can flush: edits are saved 250 ms after the last keystroke, but
// whatever acts on the saved state (Process, using a preset) must first send the edits
// still waiting, or it would act on the older state.

const waiting = new Set(); // the flush functions of calls not sent yet

/** `fn` called `ms` after the last call, with that call's arguments. */
export function debounce(fn, ms) {
  let timer = null;
  let args = null;
  const flush = () => {
    clearTimeout(timer);
    waiting.delete(flush);
    if (!args) return Promise.resolve();
    const a = args;
    args = null;
    return Promise.resolve(fn(...a));
  };
  return (...a) => {
    args = a;
    clearTimeout(timer);
    timer = setTimeout(flush, ms);
    waiting.add(flush);
  };
}

/** Sends every debounced call still waiting, and resolves when they are done. */
export function flushEdits() {
  return Promise.all([...waiting].map((f) => f()));
}
