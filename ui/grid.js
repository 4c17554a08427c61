// The image grid: one card per image, drawn from the store; a click selects the image
// (the inspector opens on it), the card's × removes it.

import * as ipc from "./ipc.js";
import { opLabel } from "./params.js";

const $ = (id) => document.getElementById(id);

function stateLabel(st) {
  switch (st.state) {
    case "queued":
      return "queued";
    case "running":
      return st.worker === "local" ? "running" : `running on ${st.worker}`;
    case "done":
      return "done";
    case "failed":
      return st.kind === "cancelled" ? "cancelled" : "failed";
    default:
      return "";
  }
}

/** Draws the grid from `store`; `actions.removeImages` removes. */
export function initGrid(store, actions) {
  const grid = $("grid");

  function makeCard(id) {
    const card = document.createElement("div");
    card.className = "card";
    card.dataset.id = id;
    card.tabIndex = 0;
    // A list item that opens in the inspector (Enter or Space); its Remove button is
    // its own control beside that, named after the image.
    card.setAttribute("role", "listitem");
    card.innerHTML = `
      <div class="thumb"><img alt="" loading="lazy" decoding="async" /></div>
      <span class="state"></span>
      <button class="card-remove" title="Remove" aria-label="Remove">×</button>
      <div class="card-body">
        <div class="card-name"></div>
        <div class="card-meta"><span class="badge op"></span></div>
        <div class="card-reason" hidden></div>
      </div>`;
    const img = card.querySelector("img");
    // The img stays (hidden) so a later result or a repaired file can still show.
    img.addEventListener("error", () => {
      if (card.querySelector(".thumb-error")) return;
      const msg = document.createElement("div");
      msg.className = "thumb-error";
      msg.textContent = "No preview: the file may be damaged or not an image";
      img.hidden = true;
      img.after(msg);
    });
    img.addEventListener("load", () => {
      img.hidden = false;
      card.querySelector(".thumb-error")?.remove();
    });
    card.addEventListener("click", () => store.select(id));
    card.addEventListener("keydown", (e) => {
      if (e.target !== card) return;
      if (e.key === "Enter" || e.key === " ") {
        e.preventDefault();
        store.select(id);
      } else if (e.key === "Delete" && !store.busy()) {
        e.preventDefault();
        actions.removeImages([id]);
      }
    });
    card.querySelector(".card-remove").addEventListener("click", (e) => {
      e.stopPropagation();
      actions.removeImages([id]);
    });
    return card;
  }

  function renderCard(id) {
    const v = store.image(id);
    if (!v) return;
    let card = grid.querySelector(`.card[data-id="${id}"]`);
    if (!card) {
      card = makeCard(id);
      grid.append(card);
    }
    const img = card.querySelector(".thumb img");
    const src = v.result ? ipc.pixelUrl("result-thumb", id, v.result.rev) : ipc.pixelUrl("thumb", id);
    if (img.getAttribute("src") !== src) img.src = src;
    card.querySelector(".card-name").textContent = v.name;
    card.setAttribute("aria-label", `${v.name}, ${stateLabel(v.state)}`);
    const remove = card.querySelector(".card-remove");
    remove.setAttribute("aria-label", `Remove ${v.name}`);
    remove.title = `Remove ${v.name} (Delete)`;
    card.querySelector(".card-name").title = v.path;
    const st = card.querySelector(".state");
    st.dataset.state = v.state.state;
    st.textContent = stateLabel(v.state);
    card.dataset.state = v.state.state;
    const badge = card.querySelector(".badge.op");
    const op = store.effectiveOp(v);
    badge.textContent = v.override ? `own: ${opLabel(op.op)}` : opLabel(op.op);
    badge.classList.toggle("override", Boolean(v.override));
    badge.title = v.override
      ? "This image uses its own operation in batches"
      : "Uses the operation for all images";
    card.dataset.override = v.override ? "1" : "0";
    const reason = card.querySelector(".card-reason");
    if (v.state.state === "failed") {
      reason.hidden = false;
      reason.textContent = v.state.message;
      reason.title = `${v.state.message}\n${v.state.hint}`;
    } else {
      reason.hidden = true;
    }
    card.classList.toggle("selected", store.selected === id);
    card.querySelector(".card-remove").disabled = store.busy();
  }

  function renderAll() {
    for (const card of [...grid.children]) {
      if (!store.images.has(Number(card.dataset.id))) card.remove();
    }
    for (const id of store.order) renderCard(id);
    $("empty").hidden = store.order.length > 0;
  }

  store.on("images", renderAll);
  store.on("image", renderCard);
  // Badges name the global op.
  store.on("settings", () => store.order.forEach(renderCard));
  store.on("selection", ({ prev, id }) => {
    if (prev != null) renderCard(prev);
    if (id == null) return;
    renderCard(id);
    // After the inspector took its room: the card stepped to stays in sight.
    requestAnimationFrame(() => grid.querySelector(`.card[data-id="${id}"]`)?.scrollIntoView({ block: "nearest" }));
  });
  store.on("job", () => {
    for (const b of grid.querySelectorAll(".card-remove")) b.disabled = store.busy();
  });
}
