// Op pickers and parameter forms, built from the engine's catalogue (ops, params, types,
// ranges, defaults): the UI never hard-codes an op.

/** "edge-detection" -> "Edge detection". */
export function opLabel(id) {
  const s = id.replace(/-/g, " ");
  return s.charAt(0).toUpperCase() + s.slice(1);
}

/** The op with every parameter at its default, as the engine expects it. */
export function defaultOp(info) {
  const params = {};
  for (const p of info.params) params[p.key] = p.default;
  return { op: info.id, params };
}

/** Fills a <select> with the catalogue's ops; `extra` options go first. */
export function fillOpSelect(select, ops, extra = []) {
  select.replaceChildren();
  for (const [value, label] of extra) select.append(new Option(label, value));
  for (const info of ops) {
    const o = new Option(opLabel(info.id), info.id);
    o.title = info.summary;
    select.append(o);
  }
}

function labelFor(p) {
  const key = p.key.replace(/-/g, " ");
  const range = p.type === "choice" || p.type === "bool" ? "" : ` (${p.min}–${p.max})`;
  return key + range;
}

/**
 * Draws one field per parameter of `info` into `container`, showing `params`;
 * `onChange(op)` gets the whole op each time a value changes and parses.
 */
export function renderParams(container, info, params, onChange) {
  container.replaceChildren();
  for (const p of info.params) {
    const field = document.createElement("label");
    field.className = "field";
    field.title = p.help;
    const name = document.createElement("span");
    name.textContent = labelFor(p);
    let input;
    const value = params[p.key] ?? p.default;
    if (p.type === "choice") {
      input = document.createElement("select");
      for (const c of p.choices) input.append(new Option(c, c));
      input.value = value;
    } else if (p.type === "bool") {
      input = document.createElement("input");
      input.type = "checkbox";
      input.checked = Boolean(value);
      field.classList.add("inline");
    } else {
      input = document.createElement("input");
      input.type = "number";
      input.min = p.min;
      input.max = p.max;
      input.step = p.type === "odd-int" ? 2 : p.type === "int" ? 1 : "any";
      input.value = value;
    }
    input.dataset.key = p.key;
    input.addEventListener("change", () => {
      const op = readParams(container, info);
      if (op) onChange(op);
    });
    field.append(name, input);
    container.append(field);
  }
}

/** Reads the form back as an op; null (and the field marked) when a number does not parse. */
export function readParams(container, info) {
  const params = {};
  let ok = true;
  for (const p of info.params) {
    const input = container.querySelector(`[data-key="${CSS.escape(p.key)}"]`);
    if (!input) continue;
    input.classList.remove("invalid");
    let v;
    if (p.type === "bool") v = input.checked;
    else if (p.type === "choice") v = input.value;
    else {
      v = p.type === "float" ? parseFloat(input.value) : parseInt(input.value, 10);
      if (!Number.isFinite(v)) {
        input.classList.add("invalid");
        ok = false;
      }
    }
    params[p.key] = v;
  }
  return ok ? { op: info.id, params } : null;
}

/** Highlights the field the engine refused. */
export function markInvalid(container, key) {
  const input = container.querySelector(`[data-key="${CSS.escape(key)}"]`);
  if (input) input.classList.add("invalid");
}
