// The only file that touches window.__TAURI__: every command, dialog, drop event and
// pixel URL the page uses goes through here, so the rest of the UI is plain DOM code.

const T = window.__TAURI__;
const invoke = (cmd, args) => T.core.invoke(cmd, args);

const IMAGE_EXTENSIONS = ["jpg", "jpeg", "png", "webp", "tif", "tiff", "bmp"];

// Pixel URLs: prism://localhost/... on Linux and macOS, http://prism.localhost/... on
// Windows; Tauri knows which, so ask it for the base once.
const PIXEL_BASE = T.core.convertFileSrc("", "prism");

/** URL of an image's thumbnail, preview ("source") or result preview. */
export function pixelUrl(kind, id, rev) {
  return PIXEL_BASE + (rev === undefined ? `${kind}/${id}` : `${kind}/${id}/${rev}`);
}

export const catalogue = () => invoke("catalogue");
export const snapshot = () => invoke("snapshot");
export const addPaths = (paths) => invoke("add_paths", { paths });
export const removeImages = (ids) => invoke("remove_images", { ids });
export const setGlobalChain = (ops) => invoke("set_global_chain", { ops });
export const setOverride = (id, ops) => invoke("set_override", { id, ops });
export const savePreset = (name) => invoke("save_preset", { name });
export const deletePreset = (name) => invoke("delete_preset", { name });
export const applyPreset = (name) => invoke("apply_preset", { name });
export const exportPreset = (name, dest) => invoke("export_preset", { name, dest });
export const importPreset = (path) => invoke("import_preset", { path });
export const updateSettings = (patch) => invoke("update_settings", { patch });
export const cancel = (job) => invoke("cancel", { job });
export const suggestedName = (id) => invoke("suggested_name", { id });
export const saveOne = (id, dest) => invoke("save_one", { id, dest });
export const saveAll = (dir, onExists) => invoke("save_all", { dir, onExists });
export const nodes = () => invoke("nodes");
export const addNode = (address) => invoke("add_node", { address });
export const removeNode = (address) => invoke("remove_node", { address });
export const setToken = (address, token) => invoke("set_token", { address, token });
export const trustNode = (address, fingerprint) => invoke("trust_node", { address, fingerprint });
export const closeConnections = () => invoke("close_connections");
export const about = () => invoke("about");
/**
 * A live preview of image `id` through `ops`, shown `width` x `height` device pixels;
 * resolves to {gen, approximate, first} (`first`: the longest edge of its first pass).
 */
export const setLive = (id, ops, { width, height }) => invoke("set_live", { id, ops, width, height });
/** Pixel values at (u, v), fractions of the image, in the original and result `rev`. */
export const readout = (id, rev, u, v) => invoke("readout", { id, rev, u, v });

/** Connects every node; `onEvent` gets each attempt and status change of this call. */
export function connectNodes(onEvent) {
  const onEventChannel = new T.core.Channel();
  onEventChannel.onmessage = onEvent;
  return invoke("connect_nodes", { onEvent: onEventChannel });
}

/** Node changes no call asked for (a fleet's members) go to `onEvent` from now on;
 *  resolves to the nodes as they are now. */
export function watchNodes(onEvent) {
  const onEventChannel = new T.core.Channel();
  onEventChannel.onmessage = onEvent;
  return invoke("watch_nodes", { onEvent: onEventChannel });
}

/**
 * Re-attaches this (reloaded) page to the running batch: `onEvent` gets its events from
 * now on. Resolves to {job, images} (where it stands), or null when none runs.
 */
export function attachJob(onEvent) {
  const onEventChannel = new T.core.Channel();
  // Rust sends a batch's events in groups (src-tauri/src/coalesce.rs).
  onEventChannel.onmessage = (group) => group.forEach(onEvent);
  return invoke("attach_job", { onEvent: onEventChannel });
}

/** Starts a batch ("all", "failed" or {ids}); `onEvent` gets this job's events only. */
export function process(target, onEvent) {
  const onEventChannel = new T.core.Channel();
  onEventChannel.onmessage = (group) => group.forEach(onEvent);
  return invoke("process", { target, onEvent: onEventChannel });
}

// Every file dialog starts in the folder last added from or saved into (else Pictures,
// else home), never in "Recent", and its title says what it is for.
const dialogStart = () => invoke("dialog_start");

/** Native multi-select file dialog; resolves to the chosen paths ([] if cancelled). */
export async function pickImages() {
  const picked = await T.dialog.open({
    multiple: true,
    directory: false,
    title: "Add images",
    defaultPath: (await dialogStart()) ?? undefined,
    filters: [{ name: "Images (JPEG, PNG, WebP, TIFF, BMP)", extensions: IMAGE_EXTENSIONS }],
  });
  return picked ? [].concat(picked) : [];
}

/** Native folder dialog for adding folders (searched recursively). */
export async function pickFoldersToAdd() {
  const picked = await T.dialog.open({
    multiple: true,
    directory: true,
    title: "Add folders (every image in them and their subfolders)",
    defaultPath: (await dialogStart()) ?? undefined,
  });
  return picked ? [].concat(picked) : [];
}

/** The folder Save all writes into (its "Processed Images" folder goes inside), or null. */
export async function pickSaveAllFolder(subfolder) {
  const title = `Save all: choose the folder to put "${subfolder}" in`;
  return (await invoke("pick_save_folder", { title, start: await dialogStart() })) || null;
}

/** Native save dialog proposing `defaultName`; resolves to a path or null. */
export async function pickSaveFile(defaultName) {
  const ext = defaultName.includes(".") ? defaultName.split(".").pop() : "png";
  const start = await dialogStart();
  return (
    (await T.dialog.save({
      title: "Save the processed image",
      defaultPath: start ? await T.path.join(start, defaultName) : defaultName,
      filters: [{ name: "Image", extensions: [ext] }],
    })) || null
  );
}

/** Save dialog for exporting a preset as `<name>.json`; resolves to a path or null. */
export async function pickPresetExport(name) {
  const file = `${name.replace(/[\\/:*?"<>|]+/g, "-")}.json`;
  const start = await dialogStart();
  return (
    (await T.dialog.save({
      title: `Export the preset "${name}"`,
      defaultPath: start ? await T.path.join(start, file) : file,
      filters: [{ name: "Prism preset (JSON)", extensions: ["json"] }],
    })) || null
  );
}

/** Open dialog for a preset file to import; resolves to a path or null. */
export async function pickPresetImport() {
  const picked = await T.dialog.open({
    multiple: false,
    directory: false,
    title: "Import a preset",
    defaultPath: (await dialogStart()) ?? undefined,
    filters: [{ name: "Prism preset (JSON)", extensions: ["json"] }],
  });
  return picked || null;
}

/**
 * Files and folders dropped on the window: `onOver(bool)` while dragging over it,
 * `onDrop(paths)` on drop.
 */
export function onFileDrop(onOver, onDrop) {
  return T.webview.getCurrentWebview().onDragDropEvent((e) => {
    const p = e.payload;
    if (p.type === "enter" || p.type === "over") onOver(true);
    else if (p.type === "leave") onOver(false);
    else if (p.type === "drop") {
      onOver(false);
      onDrop(p.paths || []);
    }
  });
}
