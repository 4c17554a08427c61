// The image grid: one card per image, drawn from the store; a click selects the image
// (the inspector opens on it), the card's × removes it.
//
// Virtualised: only the rows in sight (and a few either side) have cards in the page, so
// 10 000 images cost as much to draw and to update as a screenful. Every card has the same
// height (a failure's reason sits over the thumbnail, not under it), so a row's place
// follows from its number, and padding above and below the drawn rows keeps the
// scrollbar true to the whole list.

import * as ipc from "./ipc.js";
import { chainLabel } from "./chain.js";

const $ = (id) => document.getElementById(id);

/** Rows drawn beyond the visible ones on each side, so a scroll shows cards at once. */
const OVERSCAN_ROWS = 3;

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
  const scroller = grid.parentElement;
  const cards = new Map(); // id -> card, for the images in the drawn window only
  let rowHeight = 0; // a card's height plus the gap; measured from a drawn card
  let columns = 1;
  let wasBusy = false;

  function makeCard(id) {
    const card = document.createElement("div");
    card.className = "card";
    card.dataset.id = id;
    card.tabIndex = 0;
    // A list item that opens in the inspector (Enter or Space); its Remove button is
    // its own control beside that, named after the image.
    card.setAttribute("role", "listitem");
    card.innerHTML = `
      <div class="thumb"><img alt="" loading="lazy" decoding="async" /><div class="card-reason" hidden></div></div>
      <span class="state"></span>
      <button class="card-remove" title="Remove" aria-label="Remove">×</button>
      <div class="card-body">
        <div class="card-name"></div>
        <div class="card-meta"><span class="badge op"></span></div>
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

  /** Brings a drawn card up to date; images out of the window have no card to update. */
  function renderCard(id) {
    const v = store.image(id);
    const card = cards.get(id);
    if (!v || !card) return;
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
    const label = chainLabel(store.effectiveChain(v));
    badge.textContent = v.override ? `own: ${label}` : label;
    badge.classList.toggle("override", Boolean(v.override));
    badge.title = v.override
      ? `This image uses its own operations in batches: ${label}`
      : `Uses the operations for all images: ${label}`;
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

  function gridMetrics() {
    const css = getComputedStyle(grid);
    const gap = parseFloat(css.rowGap) || 0;
    const minColumn = parseFloat(css.getPropertyValue("--card-min")) || 170;
    // What `repeat(auto-fill, minmax(--card-min, 1fr))` makes of this width.
    columns = Math.max(1, Math.floor((grid.clientWidth + gap) / (minColumn + gap)));
    return gap;
  }

  /** The rows `[first, last)` to draw for the current scroll position. */
  function windowRows(totalRows) {
    if (!rowHeight) return [0, Math.min(totalRows, 1)];
    const top = scroller.scrollTop - grid.offsetTop;
    const first = Math.floor(top / rowHeight) - OVERSCAN_ROWS;
    const last = Math.ceil((top + scroller.clientHeight) / rowHeight) + OVERSCAN_ROWS;
    return [Math.max(0, Math.min(first, totalRows)), Math.max(0, Math.min(last, totalRows))];
  }

  /** Draws the cards of the rows in sight, keeping those already drawn (and focus). */
  function drawWindow() {
    const gap = gridMetrics();
    const n = store.order.length;
    const totalRows = Math.ceil(n / columns);
    let [first, last] = windowRows(totalRows);
    place(first, last, totalRows);
    // A first card tells the row height; then draw what really fits.
    const sample = grid.querySelector(".card");
    const measured = sample ? sample.offsetHeight + gap : 0;
    if (measured && measured !== rowHeight) {
      rowHeight = measured;
      [first, last] = windowRows(totalRows);
      place(first, last, totalRows);
    }
  }

  function place(first, last, totalRows) {
    const ids = store.order.slice(first * columns, last * columns);
    const keep = new Set(ids);
    for (const [id, card] of cards) {
      if (!keep.has(id)) {
        card.remove();
        cards.delete(id);
      }
    }
    // Drawn cards keep their relative order, so new ones only go in between: nothing
    // already in the page moves out of it (a focused card stays focused).
    let next = grid.firstElementChild;
    for (const id of ids) {
      let card = cards.get(id);
      if (card && card === next) {
        next = next.nextElementSibling;
        continue;
      }
      if (!card) {
        card = makeCard(id);
        cards.set(id, card);
        grid.insertBefore(card, next);
        renderCard(id);
      } else {
        grid.insertBefore(card, next);
      }
    }
    grid.style.paddingTop = `${first * rowHeight}px`;
    grid.style.paddingBottom = `${Math.max(0, totalRows - last) * rowHeight}px`;
  }

  let pending = false;
  function drawSoon() {
    if (pending) return;
    pending = true;
    requestAnimationFrame(() => {
      pending = false;
      drawWindow();
    });
  }

  /** Scrolls the least that puts image `id`'s row in sight. */
  function reveal(id) {
    const i = store.order.indexOf(id);
    if (i < 0 || !rowHeight) return;
    const top = grid.offsetTop + Math.floor(i / columns) * rowHeight;
    const bottom = top + rowHeight;
    if (top < scroller.scrollTop) scroller.scrollTop = top;
    else if (bottom > scroller.scrollTop + scroller.clientHeight) {
      scroller.scrollTop = bottom - scroller.clientHeight;
    }
    drawWindow();
  }

  function renderAll() {
    drawWindow();
    for (const id of cards.keys()) renderCard(id);
    $("empty").hidden = store.order.length > 0;
  }

  scroller.addEventListener("scroll", drawSoon, { passive: true });
  // The window, the sidebar or the inspector's split changed the grid's width or height.
  new ResizeObserver(drawSoon).observe(scroller);
  store.on("images", renderAll);
  store.on("image", renderCard);
  // Badges name the global op.
  store.on("settings", () => cards.forEach((_, id) => renderCard(id)));
  store.on("selection", ({ prev, id }) => {
    if (prev != null) renderCard(prev);
    if (id == null) return;
    // After the inspector took its room: the card stepped to stays in sight.
    requestAnimationFrame(() => {
      reveal(id);
      renderCard(id);
    });
    renderCard(id);
  });
  store.on("job", () => {
    // Most events only move counts: the buttons change when a batch starts or ends.
    if (store.busy() === wasBusy) return;
    wasBusy = store.busy();
    for (const b of grid.querySelectorAll(".card-remove")) b.disabled = wasBusy;
  });
}
