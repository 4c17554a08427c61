// Debounced saves the page can flush: edits are saved 250 ms after the last keystroke, but
// whatever acts on the saved state (Process, using a preset) must first send the edits
// still waiting, and wait for those already sent, or it would act on the older state.

const waiting = new Set(); // the flush functions of calls not sent yet
const sent = new Set(); // the promises of calls sent and not answered yet

/**
 * `fn` called `ms` after the last call, with that call's arguments. Each call waits for
 * the answer to the one before: Rust may run two commands at once, and an older edit
 * saved (or answered) after a newer one would put the older state back.
 */
export function debounce(fn, ms) {
  let timer = null;
  let args = null;
  let last = Promise.resolve();
  const flush = () => {
    clearTimeout(timer);
    waiting.delete(flush);
    if (!args) return last;
    const a = args;
    args = null;
    const call = last.catch(() => {}).then(() => fn(...a));
    last = call;
    sent.add(call);
    call.finally(() => sent.delete(call)).catch(() => {});
    return call;
  };
  return (...a) => {
    args = a;
    clearTimeout(timer);
    timer = setTimeout(flush, ms);
    waiting.add(flush);
  };
}

/** Sends every debounced call still waiting, and resolves when every sent one is done. */
export function flushEdits() {
  const flushed = [...waiting].map((f) => f());
  return Promise.all([...flushed, ...sent]);
}
