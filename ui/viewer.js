// The result views: original and processed side by side, or one over the other with a
// before/after slider. One zoom/pan state drives both images, so they stay in step.
//
// Each image opens with its display rendition (small, made with the grid's thumbnail, so
// a click shows it at once) and changes to its zoom preview once zoomed in past the
// rendition's own pixels. Both images are laid out at the size of the first rendition
// shown (the "logical" size), so a sharper one replacing it moves nothing.

const MAX_ZOOM = 16;

/** Writes a pane's note: a title, what happened, what to do. */
function fillNote(el, { title, text = "", hint = "", failed = false }) {
  el.classList.toggle("failed", failed);
  const line = (cls, t) => {
    const d = document.createElement("div");
    d.className = cls;
    d.textContent = t;
    return d;
  };
  el.replaceChildren(line("pane-empty-title", title));
  if (text) el.append(line("pane-empty-text", text));
  if (hint) el.append(line("pane-empty-hint", hint));
}

/** `zoom` as the viewer keeps it: a list of {url, edge}; a lone URL's edge is unknown. */
function zoomList(zoom) {
  if (!zoom) return [];
  return Array.isArray(zoom) ? zoom : [{ url: zoom, edge: Infinity }];
}

export class Viewer {
  constructor(root) {
    this.root = root;
    this.panes = [...root.querySelectorAll(".pane")];
    this.stages = this.panes.map((p) => p.querySelector(".stage"));
    this.before = root.querySelector("#img-before");
    this.after = root.querySelector("#img-after");
    this.afterEmpty = root.querySelector("#after-empty");
    this.beforeEmpty = root.querySelector("#before-empty");
    this.diff = root.querySelector("#img-diff");
    this.diffEmpty = root.querySelector("#diff-empty");
    this.diffUrl = null;
    this.handle = root.querySelector("#slider-handle");
    // The pixel probe: a point of the image as fractions (u, v) of its width and height,
    // marked in every pane; `onProbe(u, v)` (or `onProbe(null)`) hears where it goes.
    this.probe = null;
    this.onProbe = null;
    this.fullSize = null; // the full-resolution size, once the readout said it
    this.zoomLabel = document.getElementById("zoom-level");
    this.mode = "side";
    this.split = 50; // slider position, % of the width
    this.view = { s: 1, tx: 0, ty: 0 };
    this.fitted = true;
    this.natural = { w: 0, h: 0 }; // the logical size both images are laid out at
    this.urls = new Map([
      [this.before, null],
      [this.after, null],
    ]); // img -> {display, zoom, asked}

    const onLoad = (img) => {
      if (!img.naturalWidth) return;
      // The original's rendition sets the size: a live preview that comes first may be a
      // small first pass. Only when the original cannot be shown does another image.
      if (!this.natural.w && (img === this.before || this.before.hidden)) {
        this.natural = { w: img.naturalWidth, h: img.naturalHeight };
        for (const i of [this.before, this.after, this.diff]) this.layout(i);
      }
      this.layout(img);
      if (this.fitted) this.fit();
      else this.apply();
    };
    this.before.addEventListener("load", () => {
      this.before.hidden = false;
      this.beforeEmpty.hidden = true;
      onLoad(this.before);
    });
    this.after.addEventListener("load", () => onLoad(this.after));
    this.diff.addEventListener("load", () => {
      this.diffEmpty.hidden = true;
      onLoad(this.diff);
    });
    this.diff.addEventListener("error", () => {
      if (!this.diff.getAttribute("src")) return;
      this.diff.hidden = true;
      fillNote(this.diffEmpty, { title: "No difference to show", hint: "Process the image again." });
      this.diffEmpty.hidden = false;
    });
    // No broken-image icons: a pane that cannot show its image says why instead.
    this.before.addEventListener("error", () => {
      if (!this.before.getAttribute("src")) return;
      this.before.hidden = true;
      this.beforeEmpty.hidden = false;
      // What loaded while the original was awaited now sets the size.
      for (const i of [this.after, this.diff]) if (i.complete && i.getAttribute("src")) onLoad(i);
    });
    this.after.addEventListener("error", () => {
      if (!this.after.getAttribute("src")) return;
      this.after.hidden = true;
      fillNote(this.afterEmpty, { title: "No preview of the result", hint: "Process the image again." });
      this.afterEmpty.hidden = false;
    });

    for (const pane of this.panes) this.bindPane(pane);
    this.bindHandle();
    this.bindKeys();
    new ResizeObserver(() => (this.fitted ? this.fit() : this.apply())).observe(root);
  }

  /**
   * Shows an original and (if any) its result; keeps the zoom when only the result
   * changes. Without a result the Processed pane shows `afterNote`; when the original
   * cannot be shown its pane shows `brokenNote` (notes are {title, text, hint, failed}).
   */
  show(before, after, { afterNote, brokenNote } = {}) {
    fillNote(this.beforeEmpty, brokenNote || { title: "No preview" });
    const sameImage = this.urls.get(this.before)?.display === before.display;
    if (!sameImage) {
      this.fitted = true;
      this.natural = { w: 0, h: 0 };
      this.fullSize = null;
      this.setProbe(null);
      this.before.hidden = false;
      this.beforeEmpty.hidden = true;
      this.urls.set(this.before, { ...before, zoom: zoomList(before.zoom) });
      this.before.src = before.display;
    }
    if (after) {
      this.after.hidden = false;
      if (this.urls.get(this.after)?.display !== after.display) {
        this.urls.set(this.after, { ...after, zoom: zoomList(after.zoom) });
        this.after.src = after.display;
        this.layout(this.after);
      }
      this.afterEmpty.hidden = true;
    } else {
      this.after.hidden = true;
      this.urls.set(this.after, null);
      this.after.removeAttribute("src");
      fillNote(this.afterEmpty, afterNote || { title: "Not processed yet" });
      this.afterEmpty.hidden = false;
    }
  }

  clear() {
    for (const img of [this.before, this.after]) {
      this.urls.set(img, null);
      img.removeAttribute("src");
    }
    this.showDiff(null);
    this.setProbe(null);
  }

  /**
   * The difference image (display size) of the shown original and result, loaded only
   * while the difference view is on; null with `note` when there is none.
   */
  showDiff(url, note) {
    this.diffUrl = url;
    this.diffNote = note;
    this.loadDiff();
  }

  loadDiff() {
    if (this.mode !== "diff") return;
    if (!this.diffUrl) {
      this.diff.hidden = true;
      this.diff.removeAttribute("src");
      fillNote(this.diffEmpty, this.diffNote || { title: "Not processed yet", hint: "Process the image to compare." });
      this.diffEmpty.hidden = false;
      return;
    }
    this.diff.hidden = false;
    if (this.diff.getAttribute("src") !== this.diffUrl) {
      // Computed from the full-resolution images: a moment on a big one.
      fillNote(this.diffEmpty, { title: "Computing the difference…" });
      this.diffEmpty.hidden = false;
      this.diff.src = this.diffUrl;
      this.layout(this.diff);
    }
  }

  /** Moves the probe to (u, v), or removes it (null). */
  setProbe(u, v) {
    const inside = u != null && u >= 0 && u <= 1 && v >= 0 && v <= 1;
    const next = inside ? { u, v } : null;
    if (!next && !this.probe) return;
    this.probe = next;
    this.placeProbe();
    if (this.onProbe) this.onProbe(next);
  }

  /** The image point under a client position in `pane`, as fractions. */
  toImage(pane, clientX, clientY) {
    const r = pane.getBoundingClientRect();
    const { s, tx, ty } = this.view;
    const { w, h } = this.natural;
    if (!w) return null;
    return { u: (clientX - r.left - tx) / s / w, v: (clientY - r.top - ty) / s / h };
  }

  placeProbe() {
    const { s, tx, ty } = this.view;
    for (const pane of this.panes) {
      const mark = pane.querySelector(".probe");
      if (!mark) continue;
      mark.hidden = !this.probe;
      if (!this.probe) continue;
      mark.style.left = `${tx + this.probe.u * this.natural.w * s}px`;
      mark.style.top = `${ty + this.probe.v * this.natural.h * s}px`;
    }
  }

  /** Arrow keys move the probe by one pixel of the full-resolution image (Shift: ten). */
  stepProbe(dx, dy) {
    const size = this.fullSize || this.natural;
    if (!size.w) return;
    let { u, v } = this.probe || { u: 0.5, v: 0.5 };
    // From the pixel's centre to the centre of the one `dx, dy` away.
    const x = Math.min(size.w - 1, Math.max(0, Math.floor(u * size.w) + dx));
    const y = Math.min(size.h - 1, Math.max(0, Math.floor(v * size.h) + dy));
    this.setProbe((x + 0.5) / size.w, (y + 0.5) / size.h);
  }

  /** Lays an image out at the logical size, whatever rendition it holds. */
  layout(img) {
    const { w, h } = this.natural;
    img.style.width = w ? `${w}px` : "";
    img.style.height = h ? `${h}px` : "";
  }

  /** The longest edge of the logical size (the display rendition's), 0 before one loaded. */
  logicalEdge() {
    return Math.max(this.natural.w, this.natural.h);
  }

  /**
   * The device pixels the images are shown at now (never more than the logical size):
   * what a rendition needs to look sharp.
   */
  screenSize() {
    const dpr = window.devicePixelRatio || 1;
    if (!this.natural.w) {
      const { w, h } = this.paneSize();
      return { width: Math.max(1, Math.ceil(w * dpr)), height: Math.max(1, Math.ceil(h * dpr)) };
    }
    const k = Math.min(1, this.view.s * dpr);
    return {
      width: Math.max(1, Math.ceil(this.natural.w * k)),
      height: Math.max(1, Math.ceil(this.natural.h * k)),
    };
  }

  /**
   * Swaps in a sharper image once the screen shows more pixels than the one shown holds:
   * the smallest of `zoom` (each {url, edge}, smallest first) that is enough, else the
   * sharpest.
   */
  sharpen() {
    const dense = this.view.s * (window.devicePixelRatio || 1);
    const logical = this.logicalEdge();
    for (const [img, urls] of this.urls) {
      if (!urls || !urls.zoom.length || !img.naturalWidth || !logical) continue;
      const has = Math.max(img.naturalWidth, img.naturalHeight);
      if (dense * logical <= has * 1.05) continue;
      const need = (dense * logical) / 1.05;
      const next = urls.zoom.find((z) => z.edge >= need) || urls.zoom[urls.zoom.length - 1];
      // Each asked for once: zooming back and forth must not start its render again.
      urls.asked ??= new Set();
      if (next.edge <= has || urls.asked.has(next.url)) continue;
      urls.asked.add(next.url);
      // Loaded aside, then swapped: the pane never shows a half-loaded image, and never
      // a less sharp one than it has (two upgrades may finish in either order).
      const pre = new Image();
      pre.onload = () => {
        if (this.urls.get(img) === urls && pre.naturalWidth > img.naturalWidth) img.src = next.url;
      };
      pre.src = next.url;
    }
  }

  setMode(mode) {
    this.mode = mode;
    this.root.classList.toggle("side", mode === "side");
    this.root.classList.toggle("slider", mode === "slider");
    this.root.classList.toggle("diff", mode === "diff");
    this.handle.hidden = mode !== "slider";
    this.loadDiff();
    requestAnimationFrame(() => (this.fitted ? this.fit() : this.apply()));
  }

  paneSize() {
    // The first pane on screen (the difference view hides the other two).
    const pane = this.panes.find((p) => p.offsetWidth > 0) || this.panes[0];
    const r = pane.getBoundingClientRect();
    return { w: r.width, h: r.height };
  }

  fit() {
    const { w, h } = this.paneSize();
    const { w: iw, h: ih } = this.natural;
    if (!iw || !w) return;
    const s = Math.min(w / iw, h / ih);
    this.view = { s, tx: (w - iw * s) / 2, ty: (h - ih * s) / 2 };
    this.fitScale = s;
    this.fitted = true;
    this.apply();
  }

  /** Zooms by `factor` around a point of the pane (its centre by default). */
  zoomBy(factor, cx, cy) {
    const { w, h } = this.paneSize();
    if (cx === undefined) [cx, cy] = [w / 2, h / 2];
    const min = (this.fitScale || 1) * 0.5;
    const s = Math.min(MAX_ZOOM, Math.max(min, this.view.s * factor));
    const f = s / this.view.s;
    this.view = { s, tx: cx - (cx - this.view.tx) * f, ty: cy - (cy - this.view.ty) * f };
    this.fitted = false;
    this.apply();
  }

  apply() {
    const { s, tx, ty } = this.view;
    const t = `translate(${tx}px, ${ty}px) scale(${s})`;
    for (const st of this.stages) st.style.transform = t;
    const rel = this.fitScale ? s / this.fitScale : 1;
    this.zoomLabel.textContent = this.fitted ? "fit" : `${rel.toFixed(rel < 10 ? 1 : 0)}×`;
    this.sharpen();
    this.placeProbe();
    const afterPane = this.panes[1];
    if (this.mode === "slider") {
      afterPane.style.clipPath = `inset(0 0 0 ${this.split}%)`;
      this.handle.style.left = `${this.split}%`;
      this.handle.setAttribute("aria-valuenow", String(Math.round(this.split)));
    } else {
      afterPane.style.clipPath = "";
    }
  }

  bindPane(pane) {
    let drag = null;
    pane.addEventListener("wheel", (e) => {
      e.preventDefault();
      const r = pane.getBoundingClientRect();
      this.zoomBy(Math.exp(-e.deltaY * 0.0015), e.clientX - r.left, e.clientY - r.top);
    });
    pane.addEventListener("pointerdown", (e) => {
      if (e.button !== 0) return;
      drag = { x: e.clientX, y: e.clientY, tx: this.view.tx, ty: this.view.ty };
      pane.setPointerCapture(e.pointerId);
      pane.classList.add("dragging");
    });
    pane.addEventListener("pointermove", (e) => {
      if (!drag) {
        const p = this.toImage(pane, e.clientX, e.clientY);
        if (p) this.setProbe(p.u, p.v);
        return;
      }
      this.view.tx = drag.tx + e.clientX - drag.x;
      this.view.ty = drag.ty + e.clientY - drag.y;
      this.fitted = false;
      this.apply();
    });
    const end = () => {
      drag = null;
      pane.classList.remove("dragging");
    };
    pane.addEventListener("pointerup", end);
    pane.addEventListener("pointercancel", end);
    pane.addEventListener("pointerleave", () => {
      if (!drag && document.activeElement !== pane) this.setProbe(null);
    });
    pane.addEventListener("dblclick", () => this.fit());
    pane.addEventListener("focus", () => this.probe || this.stepProbe(0, 0));
    pane.addEventListener("keydown", (e) => {
      if (e.ctrlKey || e.metaKey) return;
      const n = e.shiftKey ? 10 : 1;
      const move = { ArrowLeft: [-n, 0], ArrowRight: [n, 0], ArrowUp: [0, -n], ArrowDown: [0, n] }[e.key];
      if (e.altKey) {
        // Alt + arrows pan, as dragging does: the arrows alone belong to the probe.
        if (!move) return;
        const d = e.shiftKey ? 120 : 40;
        this.view.tx -= Math.sign(move[0]) * d;
        this.view.ty -= Math.sign(move[1]) * d;
        this.fitted = false;
        this.apply();
      } else if (move) this.stepProbe(...move);
      else if (e.key === "+" || e.key === "=") this.zoomBy(1.25);
      else if (e.key === "-") this.zoomBy(0.8);
      else if (e.key === "0") this.fit();
      else return;
      // Arrows here move the probe, not the selection.
      e.preventDefault();
      e.stopPropagation();
    });
  }

  /** The keyboard does what the mouse does: the slider's handle moves with the arrow
   *  keys (Home, End); a focused pane moves the pixel probe with them (bindPane). */
  bindKeys() {
    const h = this.handle;
    h.tabIndex = 0;
    h.setAttribute("role", "slider");
    h.setAttribute("aria-label", "Before / after split (arrow keys move it)");
    h.setAttribute("aria-valuemin", "0");
    h.setAttribute("aria-valuemax", "100");
    h.setAttribute("aria-valuenow", String(this.split));
    h.addEventListener("keydown", (e) => {
      const step = e.shiftKey ? 20 : 5;
      const to = {
        ArrowLeft: this.split - step,
        ArrowDown: this.split - step,
        ArrowRight: this.split + step,
        ArrowUp: this.split + step,
        Home: 0,
        End: 100,
      }[e.key];
      if (to === undefined) return;
      // Handled: the inspector's arrow keys (next/previous image) must not fire too.
      e.preventDefault();
      e.stopPropagation();
      this.split = Math.min(100, Math.max(0, to));
      this.apply();
    });
    // A focused pane's keys (the probe, zoom, fit) are bound with its pointer in bindPane.
  }

  bindHandle() {
    let dragging = false;
    const move = (e) => {
      const r = this.root.getBoundingClientRect();
      this.split = Math.min(100, Math.max(0, ((e.clientX - r.left) / r.width) * 100));
      this.apply();
    };
    this.handle.addEventListener("pointerdown", (e) => {
      dragging = true;
      this.handle.setPointerCapture(e.pointerId);
      e.stopPropagation();
    });
    this.handle.addEventListener("pointermove", (e) => dragging && move(e));
    this.handle.addEventListener("pointerup", () => (dragging = false));
    this.handle.addEventListener("pointercancel", () => (dragging = false));
  }
}
