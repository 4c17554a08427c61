// A chain editor: the ops an image goes through, in order, each with its parameter form,
// and buttons to add, remove and reorder steps. The sidebar (the chain for all images)
// and the inspector (one image's own chain) each hold one.
//
// Element ids follow the step: step 1's picker is `${prefix}-op` and its form
// `${prefix}-params`, step N's `${prefix}-op-N` and `${prefix}-params-N`.

import { defaultOp, fillOpSelect, markInvalid, opLabel, renderParams } from "./params.js";

/** "Edge detection → Dilation": a chain as people read it. */
export function chainLabel(ops) {
  return ops.map((o) => opLabel(o.op)).join(" → ");
}

const suffix = (i) => (i === 0 ? "" : `-${i + 1}`);

function button(text, label, cls = "btn ghost icon") {
  const b = document.createElement("button");
  b.type = "button";
  b.className = cls;
  b.textContent = text;
  b.setAttribute("aria-label", label);
  b.title = label;
  return b;
}

export class ChainEditor {
  /**
   * `container` gets the steps; `store` has the catalogue; `onChange(ops)` gets the whole
   * chain after each edit that parses. With `none` ([value, label]), step 1's picker
   * offers "no chain of its own" first: choosing it calls `onChange(null)`.
   */
  constructor(container, { prefix, store, onChange, none = null, label = "Steps" }) {
    this.el = container;
    this.prefix = prefix;
    this.store = store;
    this.onChange = onChange;
    this.none = none;
    this.label = label;
    this.ops = null;
    this.shape = null;
  }

  /**
   * Shows `ops` (null: no chain, only with `none`). Redrawn only when the steps change
   * (or `force`): a redraw would drop a half-typed value.
   */
  render(ops, force = false) {
    const shape = ops ? ops.map((o) => o.op).join(",") : "";
    this.ops = ops ? ops.map((o) => ({ op: o.op, params: { ...o.params } })) : null;
    if (!force && shape === this.shape && this.el.childElementCount) {
      this.sync();
      return;
    }
    this.shape = shape;
    this.draw();
  }

  /** Shows values that changed elsewhere (a preset used) in the fields, except the one
   *  being edited. */
  sync() {
    (this.ops || []).forEach((op, i) => {
      const form = this.el.querySelector(`#${CSS.escape(this.prefix + "-params" + suffix(i))}`);
      if (!form) return;
      for (const [key, value] of Object.entries(op.params)) {
        const input = form.querySelector(`[data-key="${CSS.escape(key)}"]`);
        if (!input || input === document.activeElement) continue;
        if (input.type === "checkbox") input.checked = Boolean(value);
        else if (input.value !== String(value) && Number(input.value) !== value) input.value = value;
      }
    });
  }

  /** The form of step `n` (from 1), to mark a field the engine refused. */
  markInvalid(step, key) {
    const form = this.el.querySelector(`#${CSS.escape(this.prefix + "-params" + suffix(step - 1))}`);
    if (form) markInvalid(form, key);
  }

  changed() {
    this.shape = this.ops ? this.ops.map((o) => o.op).join(",") : "";
    this.onChange(this.ops ? this.ops.map((o) => ({ op: o.op, params: { ...o.params } })) : null);
  }

  /** Redraws after a change of steps, keeping the keyboard where the user was. */
  edit(focusId) {
    this.changed();
    this.draw();
    const target = focusId && document.getElementById(focusId);
    (target && !target.disabled ? target : this.el.querySelector(`#${CSS.escape(this.prefix + "-add-step")}`))?.focus();
  }

  draw() {
    const { store, prefix } = this;
    this.el.replaceChildren();
    const ops = this.ops;
    const list = document.createElement("ol");
    list.className = "chain";
    list.setAttribute("aria-label", this.label);
    this.el.append(list);
    const steps = ops ?? [null];
    steps.forEach((op, i) => {
      const n = i + 1;
      const item = document.createElement("li");
      item.className = "chain-step";
      item.dataset.step = String(n);
      // The caption and the step's tools on one line, the picker full width below it.
      const head = document.createElement("div");
      head.className = "chain-head";
      const caption = document.createElement("label");
      caption.className = "chain-caption";
      caption.textContent = ops && ops.length > 1 ? `Step ${n}` : "Operation";
      const sel = document.createElement("select");
      sel.id = `${prefix}-op${suffix(i)}`;
      caption.htmlFor = sel.id;
      fillOpSelect(sel, store.ops, i === 0 && this.none ? [this.none] : []);
      sel.value = op ? op.op : "";
      sel.addEventListener("change", () => {
        if (!sel.value) {
          this.ops = null;
          this.edit(sel.id);
          return;
        }
        const fresh = defaultOp(store.opById.get(sel.value));
        this.ops = this.ops ? this.ops.map((o, j) => (j === i ? fresh : o)) : [fresh];
        this.edit(sel.id);
      });
      head.append(caption);
      if (ops) {
        const tools = document.createElement("div");
        tools.className = "chain-tools";
        const up = button("↑", `Move step ${n} up`);
        up.id = `${prefix}-up${suffix(i)}`;
        up.disabled = i === 0;
        up.addEventListener("click", () => {
          [this.ops[i - 1], this.ops[i]] = [this.ops[i], this.ops[i - 1]];
          this.edit(i - 1 === 0 ? `${prefix}-down` : `${prefix}-up${suffix(i - 1)}`);
        });
        const down = button("↓", `Move step ${n} down`);
        down.id = `${prefix}-down${suffix(i)}`;
        down.disabled = i === ops.length - 1;
        down.addEventListener("click", () => {
          [this.ops[i], this.ops[i + 1]] = [this.ops[i + 1], this.ops[i]];
          const last = i + 1 === this.ops.length - 1;
          this.edit(last ? `${prefix}-up${suffix(i + 1)}` : `${prefix}-down${suffix(i + 1)}`);
        });
        const remove = button("×", `Remove step ${n}`);
        remove.id = `${prefix}-remove${suffix(i)}`;
        // The last step of all images' chain stays: an image must go through something.
        remove.disabled = ops.length === 1 && !this.none;
        remove.addEventListener("click", () => {
          this.ops.splice(i, 1);
          if (!this.ops.length) this.ops = null;
          const next = this.ops && Math.min(i, this.ops.length - 1);
          this.edit(this.ops ? `${prefix}-remove${suffix(next)}` : `${prefix}-op`);
        });
        tools.append(up, down, remove);
        head.append(tools);
      }
      const field = document.createElement("div");
      field.className = "field";
      field.append(sel);
      item.append(head, field);
      if (op) {
        const info = store.opById.get(op.op);
        const summary = document.createElement("p");
        summary.className = "muted small";
        summary.id = `${prefix}-op-summary${suffix(i)}`;
        summary.textContent = info ? info.summary : "";
        const form = document.createElement("div");
        form.className = "params";
        form.id = `${prefix}-params${suffix(i)}`;
        if (info) {
          renderParams(form, info, op.params, (edited) => {
            this.ops[i] = edited;
            this.changed();
          });
        }
        item.append(summary, form);
      }
      list.append(item);
    });
    if (ops) {
      const add = button("+ Add step", "Add a step at the end", "btn");
      add.id = `${prefix}-add-step`;
      add.addEventListener("click", () => {
        const last = this.ops[this.ops.length - 1];
        // A new step starts as the catalogue's first op, unless that is the last step.
        const info = store.ops.find((o) => o.id !== last.op) ?? store.ops[0];
        this.ops.push(defaultOp(info));
        this.edit(`${prefix}-op${suffix(this.ops.length - 1)}`);
      });
      this.el.append(add);
    }
  }
}
