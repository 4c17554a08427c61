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

export class Viewer {
  constructor(root) {
    this.root = root;
    this.panes = [...root.querySelectorAll(".pane")];
    this.stages = this.panes.map((p) => p.querySelector(".stage"));
    this.before = root.querySelector("#img-before");
    this.after = root.querySelector("#img-after");
    this.afterEmpty = root.querySelector("#after-empty");
    this.beforeEmpty = root.querySelector("#before-empty");
    this.handle = root.querySelector("#slider-handle");
    this.zoomLabel = document.getElementById("zoom-level");
    this.mode = "side";
    this.split = 50; // slider position, % of the width
    this.view = { s: 1, tx: 0, ty: 0 };
    this.fitted = true;
    this.natural = { w: 0, h: 0 }; // the logical size both images are laid out at
    this.urls = new Map([
      [this.before, null],
      [this.after, null],
    ]); // img -> {display, zoom, upgrading}

    const onLoad = (img) => {
      if (!img.naturalWidth) return;
      if (!this.natural.w) {
        this.natural = { w: img.naturalWidth, h: img.naturalHeight };
        for (const i of [this.before, this.after]) this.layout(i);
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
    // No broken-image icons: a pane that cannot show its image says why instead.
    this.before.addEventListener("error", () => {
      if (!this.before.getAttribute("src")) return;
      this.before.hidden = true;
      this.beforeEmpty.hidden = false;
    });
    this.after.addEventListener("error", () => {
      if (!this.after.getAttribute("src")) return;
      this.after.hidden = true;
      fillNote(this.afterEmpty, { title: "No preview of the result", hint: "Process the image again." });
      this.afterEmpty.hidden = false;
    });

    for (const pane of this.panes) this.bindPane(pane);
    this.bindHandle();
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
      this.before.hidden = false;
      this.beforeEmpty.hidden = true;
      this.urls.set(this.before, { ...before });
      this.before.src = before.display;
    }
    if (after) {
      this.after.hidden = false;
      if (this.urls.get(this.after)?.display !== after.display) {
        this.urls.set(this.after, { ...after });
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
  }

  /** Lays an image out at the logical size, whatever rendition it holds. */
  layout(img) {
    const { w, h } = this.natural;
    img.style.width = w ? `${w}px` : "";
    img.style.height = h ? `${h}px` : "";
  }

  /** Swaps in the zoom previews once the screen shows more pixels than the renditions hold. */
  sharpen() {
    const dense = this.view.s * (window.devicePixelRatio || 1);
    for (const [img, urls] of this.urls) {
      if (!urls || urls.upgrading || !img.naturalWidth || !this.natural.w) continue;
      if (dense <= (img.naturalWidth / this.natural.w) * 1.05) continue;
      urls.upgrading = true;
      // Loaded aside, then swapped: the pane never shows a half-loaded image.
      const pre = new Image();
      pre.onload = () => {
        if (this.urls.get(img) === urls) img.src = urls.zoom;
      };
      pre.src = urls.zoom;
    }
  }

  setMode(mode) {
    this.mode = mode;
    this.root.classList.toggle("side", mode === "side");
    this.root.classList.toggle("slider", mode === "slider");
    this.handle.hidden = mode !== "slider";
    requestAnimationFrame(() => (this.fitted ? this.fit() : this.apply()));
  }

  paneSize() {
    const r = this.panes[0].getBoundingClientRect();
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
    const afterPane = this.panes[1];
    if (this.mode === "slider") {
      afterPane.style.clipPath = `inset(0 0 0 ${this.split}%)`;
      this.handle.style.left = `${this.split}%`;
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
      if (!drag) return;
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
    pane.addEventListener("dblclick", () => this.fit());
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
