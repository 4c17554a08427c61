// Toasts (what happened and what to do) and the two short animations: a batch completed,
// a connection closed.

const box = () => document.getElementById("toasts");

/** Shows a toast; kind is "error", "ok" or "info". Errors stay until closed or 15 s. */
export function toast(title, { hint = "", kind = "info", timeout } = {}) {
  const el = document.createElement("div");
  el.className = `toast ${kind}`;
  el.setAttribute("role", kind === "error" ? "alert" : "status");
  const t = document.createElement("div");
  t.className = "toast-title";
  t.textContent = title;
  el.append(t);
  if (hint) {
    const h = document.createElement("div");
    h.className = "toast-hint";
    h.textContent = hint;
    el.append(h);
  }
  const close = document.createElement("button");
  close.className = "toast-close";
  close.setAttribute("aria-label", "Dismiss");
  close.textContent = "×";
  const dismiss = () => {
    el.classList.add("leaving");
    setTimeout(() => el.remove(), 220);
  };
  close.addEventListener("click", dismiss);
  el.append(close);
  box().append(el);
  // Keep the stack short: the oldest go first.
  while (box().children.length > 5) box().firstElementChild.remove();
  setTimeout(dismiss, timeout ?? (kind === "error" ? 15000 : 6000));
  return el;
}

/** A toast for a command's error ({kind, message, hint} from Rust, or anything thrown). */
export function errorToast(err, context) {
  const message = typeof err === "string" ? err : err?.message || String(err);
  const hint = typeof err === "object" && err?.hint ? err.hint : "";
  return toast(context ? `${context}: ${message}` : message, { kind: "error", hint });
}

function play(id, ms) {
  const el = document.getElementById(id);
  el.hidden = false;
  // Restart the CSS animations even if the last run has not finished.
  el.style.animation = "none";
  void el.offsetWidth;
  el.style.animation = "";
  for (const n of el.querySelectorAll("*")) {
    n.style.animation = "none";
    void n.getBoundingClientRect();
    n.style.animation = "";
  }
  clearTimeout(el._timer);
  el._timer = setTimeout(() => (el.hidden = true), ms);
}

/** The batch-completed animation. */
export function celebrate(text) {
  document.getElementById("success-text").textContent = text;
  play("success-anim", 1900);
}

/** The connection-closed animation. */
export function connectionClosed() {
  play("closed-anim", 1900);
}
