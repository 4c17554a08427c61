// The page's one state owner: a mirror of what Rust holds (images, settings, the running
// batch, the nodes), changed only through its methods, which tell the views what
// changed. Views draw from it and never keep copies; no DOM and no IPC here.

/** What each topic's listeners get: "images" (the list changed), "image" (an id),
 *  "settings", "job", "selection" ({prev, id}), "nodes" (the list changed), "node" (an
 *  address), "nodeLost" (the job's event). */
export class Store {
  constructor() {
    this.ops = [];
    this.opById = new Map();
    this.images = new Map(); // id -> ImageView from Rust
    this.order = [];
    this.settings = null;
    this.saveAllFolder = "";
    this.tokenPlace = "file";
    this.job = null; // { id, total, done, failed, running, failures, seen }
    // Kept as images change, so a batch event costs the same with 10 000 images as with 10.
    this.failedCount = 0;
    this.resultCount = 0;
    this.lastRun = null; // what the last batch ended with, for the progress line
    this.finishedJobs = new Set();
    this.selected = null;
    this.nodes = []; // NodeView from Rust
    this.attempts = new Map(); // address -> failed attempts of the current connect
    this.listeners = new Map();
  }

  /** Calls `fn(detail)` after each change of `topic`. */
  on(topic, fn) {
    if (!this.listeners.has(topic)) this.listeners.set(topic, []);
    this.listeners.get(topic).push(fn);
  }

  emit(topic, detail) {
    for (const fn of this.listeners.get(topic) || []) fn(detail);
  }

  /** Everything from the catalogue and a snapshot (start-up, reload). */
  load(ops, snap) {
    this.ops = ops;
    this.opById = new Map(ops.map((o) => [o.id, o]));
    this.settings = snap.settings;
    this.saveAllFolder = snap.saveAllFolder;
    this.tokenPlace = snap.tokenPlace;
    this.images = new Map();
    this.order = [];
    this.failedCount = this.resultCount = 0;
    for (const v of snap.images) this.upsert(v);
    this.nodes = snap.nodes || [];
    this.emit("settings");
    this.emit("images");
    this.emit("nodes");
  }

  // ---------- images ----------

  upsert(view) {
    const old = this.images.get(view.id);
    if (old) this.tally(old, -1);
    else this.order.push(view.id);
    this.images.set(view.id, view);
    this.tally(view, 1);
  }

  /** Adds (`sign` 1) or takes out (-1) what `view` counts for in the running totals. */
  tally(view, sign) {
    if (view.state.state === "failed") this.failedCount += sign;
    if (view.result) this.resultCount += sign;
    const j = this.job;
    if (j && j.seen.has(view.id)) {
      const s = view.state.state;
      if (s === "done" || s === "failed" || s === "running") j[s] += sign;
    }
  }

  image(id) {
    return this.images.get(id);
  }

  /** The chain of ops an image goes through in a batch. */
  effectiveChain(view) {
    return view.override || this.settings.globalOps;
  }

  addImages(views) {
    for (const v of views) this.upsert(v);
    this.emit("images");
  }

  removeImages(ids) {
    const gone = new Set(ids);
    for (const id of ids) {
      const v = this.images.get(id);
      if (v) this.tally(v, -1);
      this.images.delete(id);
    }
    this.order = this.order.filter((id) => !gone.has(id));
    if (gone.has(this.selected)) this.select(null);
    this.emit("images");
  }

  /** Only the override is news: job events may have moved the state on meanwhile. */
  setOverride(id, override) {
    const v = this.images.get(id);
    if (!v) return;
    v.override = override;
    this.emit("image", id);
  }

  /** A new state (and result, if given) for image `id`, which the running batch has seen. */
  setImageState(id, state, result) {
    const v = this.images.get(id);
    if (!v) return;
    this.tally(v, -1);
    v.state = state;
    if (result !== undefined) v.result = result;
    if (this.job) this.job.seen.add(id);
    this.tally(v, 1);
    this.emit("image", id);
  }

  anyFailed() {
    return this.failedCount > 0;
  }

  anyResult() {
    return this.resultCount > 0;
  }

  // ---------- settings ----------

  setSettings(settings) {
    this.settings = settings;
    this.emit("settings");
  }

  // ---------- selection ----------

  select(id) {
    if (this.selected === id) return;
    const prev = this.selected;
    this.selected = id;
    this.emit("selection", { prev, id });
  }

  // ---------- batches ----------

  busy() {
    return Boolean(this.job);
  }

  newJob(id, total) {
    return { id, total, done: 0, failed: 0, running: 0, failures: [], seen: new Set() };
  }

  /** `process` answered: the images it took are queued unless their events came first. */
  jobStarted(started) {
    if (this.finishedJobs.has(started.job)) return;
    if (!this.job || this.job.id !== started.job) this.job = this.newJob(started.job, started.ids.length);
    for (const id of started.ids) {
      const v = this.images.get(id);
      if (v && !this.job.seen.has(id)) {
        this.tally(v, -1);
        v.state = { state: "queued" };
        this.tally(v, 1);
        this.emit("image", id);
      }
    }
    this.emit("job");
  }

  /** A reloaded page found a batch running: where it stands, its images as they are. */
  jobAttached({ job, images }) {
    for (const v of images) this.upsert(v);
    this.job = this.newJob(job.job, job.ids.length);
    for (const id of job.ids) this.job.seen.add(id);
    // What the end-of-batch toast reports, as the first page would have gathered it.
    this.job.failures = images
      .filter((v) => v.state.state === "failed" && v.state.kind !== "cancelled")
      .map((v) => ({ id: v.id, message: v.state.message, hint: v.state.hint }));
    this.recount();
    this.emit("images");
    this.emit("job");
  }

  /** The batch's counts from scratch: once, when a reloaded page attaches to it. */
  recount() {
    const j = this.job;
    if (!j) return;
    j.done = j.failed = j.running = 0;
    for (const id of j.seen) {
      const s = this.images.get(id)?.state.state;
      if (s === "done" || s === "failed" || s === "running") j[s] += 1;
    }
  }

  /** One event of the job's channel. */
  jobEvent(e) {
    switch (e.event) {
      case "started":
        if (!this.job || this.job.id !== e.job) this.job = this.newJob(e.job, e.total);
        this.job.total = e.total;
        break;
      case "running":
        this.setImageState(e.id, { state: "running", worker: e.worker });
        break;
      case "done":
        this.setImageState(e.id, { state: "done" }, e.result);
        break;
      case "failed":
        this.setImageState(e.id, { state: "failed", kind: e.kind, message: e.message, hint: e.hint });
        if (this.job && e.kind !== "cancelled") this.job.failures.push(e);
        break;
      case "progress":
        if (this.job) this.job.total = e.total;
        break;
      case "nodeLost":
        this.emit("nodeLost", e);
        return;
      case "finished":
        this.finishedJobs.add(e.job);
        this.lastRun = { ...e, failures: this.job ? this.job.failures : [] };
        this.job = null;
        this.emit("job");
        return;
      default:
        return;
    }
    this.emit("job");
  }

  // ---------- nodes ----------

  setNodes(list) {
    this.nodes = list;
    this.emit("nodes");
  }

  node(address) {
    return this.nodes.find((n) => n.address === address);
  }

  setNodeStatus(address, status) {
    const n = this.node(address);
    if (!n) return;
    n.status = status;
    this.emit("node", address);
  }

  /** A fleet's members as they stand now (its Members event). */
  setMembers(address, members, lookupFailed) {
    const n = this.node(address);
    if (!n) return;
    n.members = members;
    n.lookupFailed = lookupFailed ?? null;
    this.emit("node", address);
  }

  /** A connect attempt failed and another follows. */
  attemptFailed(address, attempt) {
    if (!this.attempts.has(address)) this.attempts.set(address, []);
    this.attempts.get(address).push(attempt);
    this.emit("node", address);
  }

  /** A new Connect starts: earlier attempts are old news. */
  clearAttempts() {
    this.attempts.clear();
  }
}
