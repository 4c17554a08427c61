//! The commands the UI invokes: parse the arguments, call [`Core`], map errors.
//!
//! Synchronous commands run on the main thread, so only quick in-memory ones are
//! synchronous; every one that touches the disk (settings and token files, walking
//! folders, copying or deleting results) is async and does the work on a blocking
//! thread, never on the main thread or the async runtime's workers.

use std::path::PathBuf;
use std::sync::Arc;

use prism_engine::ops::OpInfo;
use prism_engine::output::OnExists;
use prism_engine::preset::parse_steps;
use prism_engine::Op;
use serde_json::Value;
use tauri::ipc::Channel;
use tauri::State;

use crate::coalesce::{self, coalesce};
use crate::core::{Attached, Core, SaveAllReport, SettingsPatch, Snapshot};
use crate::error::AppError;
use crate::jobs::{EventSink, JobEvent, JobStarted, Target};
use crate::library::{AddReport, ImageId, ImageView};
use crate::remote::{ConnEvent, ConnSink, NodeView};
use crate::settings::{check_chain, Settings};

/// Parses a chain the UI built (a bad value names its step, from 1, and its field).
pub fn parse_chain(ops: Vec<Value>) -> Result<Vec<Op>, AppError> {
    let ops = parse_steps(ops)?;
    check_chain(&ops)?;
    Ok(ops)
}

/// Parses which images a batch takes: `"all"`, `"failed"` or `{"ids": [..]}`.
pub fn parse_target(v: Value) -> Result<Target, AppError> {
    match &v {
        Value::String(s) if s == "all" => Ok(Target::All),
        Value::String(s) if s == "failed" => Ok(Target::Failed),
        Value::Object(m) if m.len() == 1 && m.contains_key("ids") => {
            serde_json::from_value::<Vec<ImageId>>(m["ids"].clone())
                .map(Target::Ids)
                .map_err(|e| AppError::BadRequest(format!("invalid image ids: {e}")))
        }
        _ => Err(AppError::BadRequest(format!(
            "invalid target {v} (\"all\", \"failed\" or {{\"ids\": [...]}})"
        ))),
    }
}

/// Runs `f` on the app state on a blocking thread: off the main thread and the async
/// runtime's workers.
async fn blocking<T: Send + 'static>(
    core: State<'_, Arc<Core>>,
    f: impl FnOnce(&Core) -> Result<T, AppError> + Send + 'static,
) -> Result<T, AppError> {
    let core = core.inner().clone();
    tauri::async_runtime::spawn_blocking(move || f(&core))
        .await
        .map_err(|e| AppError::Io(format!("background task failed: {e}")))?
}

/// Every op with its params (types, ranges, defaults): the UI builds its forms from it.
#[tauri::command]
pub fn catalogue() -> Vec<OpInfo> {
    Op::catalogue()
}

/// The whole state, to draw the UI from scratch.
#[tauri::command]
pub async fn snapshot(core: State<'_, Arc<Core>>) -> Result<Snapshot, AppError> {
    blocking(core, move |core| Ok(core.snapshot())).await
}

/// Adds files and folders (recursively): what the dialog and drag-and-drop both call.
#[tauri::command]
pub async fn add_paths(
    core: State<'_, Arc<Core>>,
    paths: Vec<PathBuf>,
) -> Result<AddReport, AppError> {
    blocking(core, move |core| Ok(core.add_paths(&paths))).await
}

/// Removes images from the library.
#[tauri::command]
pub async fn remove_images(core: State<'_, Arc<Core>>, ids: Vec<ImageId>) -> Result<(), AppError> {
    blocking(core, move |core| core.remove_images(&ids)).await
}

/// Sets the sidebar's chain: its ops, in order.
#[tauri::command]
pub async fn set_global_chain(
    core: State<'_, Arc<Core>>,
    ops: Vec<Value>,
) -> Result<Settings, AppError> {
    let ops = parse_chain(ops)?;
    blocking(core, move |core| core.set_global_chain(ops)).await
}

/// Sets (`ops`) or clears (`null`) one image's own chain.
#[tauri::command]
pub fn set_override(
    core: State<'_, Arc<Core>>,
    id: ImageId,
    ops: Option<Vec<Value>>,
) -> Result<ImageView, AppError> {
    let ops = ops.map(parse_chain).transpose()?;
    core.set_override(id, ops)
}

/// Saves the sidebar's chain and output format as a preset (replacing one so named).
#[tauri::command]
pub async fn save_preset(core: State<'_, Arc<Core>>, name: String) -> Result<Settings, AppError> {
    blocking(core, move |core| core.save_preset(&name)).await
}

/// Deletes a preset.
#[tauri::command]
pub async fn delete_preset(core: State<'_, Arc<Core>>, name: String) -> Result<Settings, AppError> {
    blocking(core, move |core| core.delete_preset(&name)).await
}

/// Makes a preset the sidebar's chain and output format.
#[tauri::command]
pub async fn apply_preset(core: State<'_, Arc<Core>>, name: String) -> Result<Settings, AppError> {
    blocking(core, move |core| core.apply_preset(&name)).await
}

/// Writes a preset where the save dialog said; returns the path written.
#[tauri::command]
pub async fn export_preset(
    core: State<'_, Arc<Core>>,
    name: String,
    dest: PathBuf,
) -> Result<String, AppError> {
    blocking(core, move |core| {
        core.export_preset(&name, &dest)
            .map(|p| p.display().to_string())
    })
    .await
}

/// What importing a preset gives the UI.
#[derive(serde::Serialize)]
pub struct Imported {
    /// The preset's name.
    name: String,
    /// The settings with it kept.
    settings: Settings,
}

/// Reads a preset file the open dialog gave and keeps it; a bad file changes nothing.
#[tauri::command]
pub async fn import_preset(
    core: State<'_, Arc<Core>>,
    path: PathBuf,
) -> Result<Imported, AppError> {
    blocking(core, move |core| {
        core.import_preset(&path)
            .map(|(name, settings)| Imported { name, settings })
    })
    .await
}

/// Changes output format, threads, engine mode or retries.
#[tauri::command]
pub async fn update_settings(
    core: State<'_, Arc<Core>>,
    patch: Value,
) -> Result<Settings, AppError> {
    let patch: SettingsPatch = serde_json::from_value(patch)
        .map_err(|e| AppError::BadRequest(format!("invalid settings: {e}")))?;
    blocking(core, move |core| core.update_settings(patch)).await
}

/// Starts a batch; its events arrive on `on_event`, for this job only.
#[tauri::command]
pub fn process(
    core: State<'_, Arc<Core>>,
    target: Value,
    on_event: Channel<Vec<JobEvent>>,
) -> Result<JobStarted, AppError> {
    let target = parse_target(target)?;
    core.process(target, job_sink(on_event))
}

/// The batch's events to the page, in groups (see [`crate::coalesce`]).
fn job_sink(on_event: Channel<Vec<JobEvent>>) -> EventSink {
    // A closed channel (window reloaded) must not stop the batch: its state stays in Core.
    coalesce(coalesce::WINDOW, move |group| {
        let _ = on_event.send(group);
    })
}

/// Re-attaches a reloaded page to the running batch: its events arrive on `on_event`
/// from now on; answers where it stands, or `null` when none runs.
#[tauri::command]
pub fn attach_job(
    core: State<'_, Arc<Core>>,
    on_event: Channel<Vec<JobEvent>>,
) -> Option<Attached> {
    core.attach_job(job_sink(on_event))
}

/// Stops a running batch; false when it already ended.
#[tauri::command]
pub fn cancel(core: State<'_, Arc<Core>>, job: u64) -> bool {
    core.cancel(job)
}

/// The name the save dialog proposes for an image's result.
#[tauri::command]
pub fn suggested_name(core: State<'_, Arc<Core>>, id: ImageId) -> Result<String, AppError> {
    core.suggested_name(id)
}

/// The folder file dialogs start in: the last one used, else Pictures, else home.
#[tauri::command]
pub async fn dialog_start<R: tauri::Runtime>(
    app: tauri::AppHandle<R>,
    core: State<'_, Arc<Core>>,
) -> Result<Option<String>, AppError> {
    use tauri::Manager;
    let fallbacks: Vec<PathBuf> = [app.path().picture_dir(), app.path().home_dir()]
        .into_iter()
        .flatten()
        .collect();
    blocking(core, move |core| {
        Ok(core
            .dialog_start(&fallbacks)
            .map(|d| d.display().to_string()))
    })
    .await
}

/// Asks for the folder Save all writes into; `None` if cancelled.
#[tauri::command]
pub async fn pick_save_folder<R: tauri::Runtime>(
    window: tauri::WebviewWindow<R>,
    title: String,
    start: Option<PathBuf>,
) -> Result<Option<PathBuf>, AppError> {
    crate::dialogs::pick_save_folder(window, title, start).await
}

/// Saves one result where the save dialog said; returns the path written.
#[tauri::command]
pub async fn save_one(
    core: State<'_, Arc<Core>>,
    id: ImageId,
    dest: PathBuf,
) -> Result<String, AppError> {
    blocking(core, move |core| {
        core.save_one(id, &dest).map(|p| p.display().to_string())
    })
    .await
}

/// Saves every result into `dir/Processed Images/`.
#[tauri::command]
pub async fn save_all(
    core: State<'_, Arc<Core>>,
    dir: PathBuf,
    on_exists: Option<OnExists>,
) -> Result<SaveAllReport, AppError> {
    let policy = on_exists.unwrap_or_default();
    blocking(core, move |core| core.save_all(&dir, policy)).await
}

/// Adds a remote node by `host:port`.
#[tauri::command]
pub async fn add_node(
    core: State<'_, Arc<Core>>,
    address: String,
) -> Result<Vec<NodeView>, AppError> {
    blocking(core, move |core| core.add_node(&address)).await
}

/// Removes a node with its pin and token.
#[tauri::command]
pub async fn remove_node(
    core: State<'_, Arc<Core>>,
    address: String,
) -> Result<Vec<NodeView>, AppError> {
    blocking(core, move |core| core.remove_node(&address)).await
}

/// Stores a node's token in the private token file.
#[tauri::command]
pub async fn set_token(
    core: State<'_, Arc<Core>>,
    address: String,
    token: String,
) -> Result<Vec<NodeView>, AppError> {
    blocking(core, move |core| core.set_token(&address, &token)).await
}

/// Pins the fingerprint the user compared and trusted.
#[tauri::command]
pub async fn trust_node(
    core: State<'_, Arc<Core>>,
    address: String,
    fingerprint: String,
) -> Result<Vec<NodeView>, AppError> {
    blocking(core, move |core| core.trust_node(&address, &fingerprint)).await
}

/// Connects every node; each attempt and status change arrives on `on_event`.
#[tauri::command]
pub async fn connect_nodes(
    core: State<'_, Arc<Core>>,
    on_event: Channel<ConnEvent>,
) -> Result<(), AppError> {
    let sink: ConnSink = Arc::new(move |e| {
        let _ = on_event.send(e);
    });
    blocking(core, move |core| core.connect_nodes(sink)).await
}

/// Sends node changes no call asked for (fleet members joining, draining, lost) to
/// `on_event` from now on; returns the nodes as they are now.
#[tauri::command]
pub async fn watch_nodes(
    core: State<'_, Arc<Core>>,
    on_event: Channel<ConnEvent>,
) -> Result<Vec<NodeView>, AppError> {
    let sink: ConnSink = Arc::new(move |e| {
        let _ = on_event.send(e);
    });
    blocking(core, move |core| Ok(core.watch_nodes(sink))).await
}

/// Closes every node connection; returns how many were open.
#[tauri::command]
pub async fn close_connections(core: State<'_, Arc<Core>>) -> Result<usize, AppError> {
    blocking(core, move |core| core.close_connections()).await
}

/// Every node with its status.
#[tauri::command]
pub async fn nodes(core: State<'_, Arc<Core>>) -> Result<Vec<NodeView>, AppError> {
    blocking(core, move |core| Ok(core.node_views())).await
}

/// The pixel values at `(u, v)` (fractions of the image across and down) in the original
/// and, with `rev`, in that result: from the full-resolution images.
#[tauri::command]
pub async fn readout(
    core: State<'_, Arc<Core>>,
    id: ImageId,
    rev: Option<u64>,
    u: f64,
    v: f64,
) -> Result<crate::compare::Readout, AppError> {
    blocking(core, move |core| core.readout(id, rev, u, v)).await
}

/// Takes an edit of the ops (a pipeline, in order) the image `id` goes through, shown
/// `width` x `height` pixels: the live preview's plan, rendered at
/// `prism://localhost/live/<id>/<gen>/<edge>` while it is the latest (the render of the
/// one before stops).
#[tauri::command]
pub fn set_live(
    core: State<'_, Arc<Core>>,
    id: ImageId,
    ops: Vec<Value>,
    width: u32,
    height: u32,
) -> Result<crate::live::LivePlan, AppError> {
    core.set_live(id, parse_chain(ops)?, width, height)
}

/// The about box: version, licence, and the engine's SIMD path on this CPU.
#[tauri::command]
pub fn about() -> crate::about::About {
    crate::about::About::here()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn chains_are_parsed_naming_the_step_at_fault() {
        let ops = parse_chain(vec![
            json!({"op": "edge-detection", "params": {}}),
            json!({"op": "dilation", "params": {"size": 3}}),
        ])
        .unwrap();
        assert_eq!(
            ops.iter().map(|o| o.id()).collect::<Vec<_>>(),
            ["edge-detection", "dilation"]
        );
        let e = parse_chain(vec![
            json!({"op": "edge-detection", "params": {}}),
            json!({"op": "dilation", "params": {"shape": "star"}}),
        ])
        .unwrap_err();
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(
            (v["step"].as_u64(), v["field"].as_str()),
            (Some(2), Some("shape"))
        );
        assert!(parse_chain(vec![]).is_err());
    }

    #[test]
    fn targets_are_parsed() {
        assert_eq!(parse_target(json!("all")).unwrap(), Target::All);
        assert_eq!(parse_target(json!("failed")).unwrap(), Target::Failed);
        assert_eq!(
            parse_target(json!({"ids": [3, 1]})).unwrap(),
            Target::Ids(vec![3, 1])
        );
        for bad in [
            json!("some"),
            json!({"ids": "x"}),
            json!({"ids": [1], "x": 1}),
            json!(3),
        ] {
            assert!(parse_target(bad.clone()).is_err(), "{bad}");
        }
    }

    #[test]
    fn catalogue_lists_every_engine_op() {
        let ids: Vec<_> = catalogue().iter().map(|o| o.id).collect();
        assert_eq!(ids, prism_engine::ops::OP_IDS);
    }
}
