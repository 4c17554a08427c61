//! The app's state and everything the commands do, with no Tauri types in it, so it is
//! tested without a window. [`Core`] holds the owners of each part (the library, the
//! settings and their store, the running [`Job`], the remote nodes, the preview cache)
//! and is the one place that ties them together: the parts do not know each other.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prism_engine::exec::{Joins, LocalWorker, RunConfig, Worker};
use prism_engine::ops::{run_pipeline_timed, OpContext, OpError};
use prism_engine::output::OnExists;
use prism_engine::preset::{format_name, Preset};
use prism_engine::remote::fleet::parse_target;
use prism_engine::remote::tls::Fingerprint;
use prism_engine::{EngineError, Frame, Op};
use serde::{Deserialize, Serialize};

use crate::compare::{self, FrameCache, FrameKey, Readout};
use crate::error::AppError;
use crate::jobs::{EventSink, Job, JobId, JobSetup, JobStarted, JobView, OnLost, Plan, Target};
use crate::library::{AddReport, ImageId, ImageView, Library};
use crate::live::{self, Live, LivePlan};
use crate::preview::{
    encode_preview, fit_frame, render_all, PixelRequest, PreviewCache, Rendition, DISPLAY_EDGE,
};
use crate::remote::{is_fleet, parse_address, parse_token, ConnSink, NodeView, Remote};
use crate::save;
use crate::settings::{
    check_chain, EngineMode, FleetConfig, NodeConfig, RetryConfig, Settings, SettingsStore,
    TokenPlace,
};
use crate::sync::lock;

/// Everything the UI needs to draw itself from scratch (start-up, reload).
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Snapshot {
    /// Every image, in order.
    pub images: Vec<ImageView>,
    /// The settings.
    pub settings: Settings,
    /// The running batch's id, if one runs.
    pub job: Option<u64>,
    /// Something to tell the user once (settings that could not be read).
    pub warning: Option<String>,
    /// The folder Save all writes into, inside the chosen one.
    pub save_all_folder: &'static str,
    /// Remote nodes with their status.
    pub nodes: Vec<NodeView>,
    /// Where node tokens are kept.
    pub token_place: TokenPlace,
}

/// A running batch a page attached to, with its images as they are now.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Attached {
    /// Where the batch stands.
    pub job: JobView,
    /// Its images (states and results), read after attaching: events that follow may
    /// repeat what these already show, never miss anything.
    pub images: Vec<ImageView>,
}

/// Settings the UI may change besides the ops (each field optional).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct SettingsPatch {
    /// Output format name.
    pub output_format: Option<String>,
    /// Local threads, 0 = all cores.
    pub threads: Option<usize>,
    /// Local or remote.
    pub engine: Option<EngineMode>,
    /// Connection retries.
    pub retry: Option<RetryConfig>,
    /// How fleet names are looked up.
    pub fleet: Option<FleetConfig>,
    /// In remote mode, also use this computer's cores.
    pub use_local_too: Option<bool>,
}

/// What Save all wrote.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SaveAllReport {
    /// The "Processed Images" folder.
    pub folder: String,
    /// Every file written, in library order.
    pub files: Vec<String>,
    /// Names left alone because a file was there (policy `skip`).
    pub skipped: Vec<String>,
    /// Results that could not be written (the others were).
    pub failed: Vec<SaveFailure>,
}

/// One result Save all could not write.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SaveFailure {
    /// The name it would have had.
    pub name: String,
    /// Why not.
    pub message: String,
}

/// How long a batch whose fleets have no member left waits for one to join (at least
/// this, and at least two lookups) before the rest of its images fail: the CLI's wait.
const FLEET_WAIT: Duration = Duration::from_secs(30);

/// The app's state; commands are thin wrappers over its methods.
pub struct Core {
    /// Shared with the running job, which keeps its images' states in step.
    library: Arc<Mutex<Library>>,
    settings: Mutex<Settings>,
    store: SettingsStore,
    work_dir: PathBuf,
    /// The running batch, or the last one (finished: see [`Job::is_running`]).
    job: Mutex<Option<Arc<Job>>>,
    next_job: AtomicU64,
    local: Mutex<Option<(usize, Arc<LocalWorker>)>>,
    previews: PreviewCache,
    /// Full-resolution images the compare tools read.
    frames: FrameCache,
    /// The latest live preview asked for.
    live: Live,
    /// The display-size original of the image live previews are made of, with its size
    /// over the full image's.
    live_input: Mutex<Option<(ImageId, Arc<Frame>, f64)>>,
    warning: Mutex<Option<String>>,
    remote: Arc<Remote>,
}

/// Lowers the calling thread's CPU priority to nice 10: a batch's threads give way to
/// the window, the previews and the rest of the desktop, and still take every idle cycle
/// (with the cores to itself a batch runs as fast). Linux only: there one thread's nice
/// value is its own (elsewhere this call would lower the whole process).
pub fn background_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: no memory is touched; PRIO_PROCESS with `who` 0 names the calling thread.
    unsafe {
        libc::setpriority(libc::PRIO_PROCESS, 0, 10);
    }
}

/// Whether two paths name the same existing file (links and `..` resolved).
fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

impl Core {
    /// Loads settings from `config_dir` (tokens in its private file) and starts with an
    /// empty `work_dir`.
    pub fn new(config_dir: &Path, work_dir: &Path) -> Result<Arc<Core>, AppError> {
        Self::with_store(SettingsStore::new(config_dir), work_dir)
    }

    /// Loads settings from `store` and starts with an empty `work_dir` (results of an
    /// earlier run are the app's private copies, not the user's files).
    pub fn with_store(store: SettingsStore, work_dir: &Path) -> Result<Arc<Core>, AppError> {
        let (settings, warning) = store.load();
        if work_dir.exists() {
            std::fs::remove_dir_all(work_dir)
                .map_err(|e| AppError::Io(format!("cannot clear {}: {e}", work_dir.display())))?;
        }
        std::fs::create_dir_all(work_dir)
            .map_err(|e| AppError::Io(format!("cannot create {}: {e}", work_dir.display())))?;
        Ok(Arc::new(Core {
            library: Arc::new(Mutex::new(Library::new())),
            settings: Mutex::new(settings),
            store,
            work_dir: work_dir.to_path_buf(),
            job: Mutex::new(None),
            next_job: AtomicU64::new(1),
            local: Mutex::new(None),
            previews: PreviewCache::default(),
            frames: FrameCache::default(),
            live: Live::default(),
            live_input: Mutex::new(None),
            warning: Mutex::new(warning),
            remote: Arc::new(Remote::default()),
        }))
    }

    /// Stops a running batch and removes the work folder (the app is exiting; results
    /// not saved by the user were only previews of what Save would write).
    pub fn shutdown(&self) {
        if let Some(job) = self.running_job() {
            job.cancel();
        }
        self.remote.close_all();
        let _ = std::fs::remove_dir_all(&self.work_dir);
    }

    /// The whole state; the start-up warning is given once.
    pub fn snapshot(&self) -> Snapshot {
        // One lock at a time: a guard living to the end of a struct expression would
        // still be held when `node_views` takes the settings lock again.
        let images = lock(&self.library).views();
        let settings = lock(&self.settings).clone();
        let job = self.running_job().map(|j| j.id());
        let warning = lock(&self.warning).take();
        Snapshot {
            images,
            settings,
            job,
            warning,
            save_all_folder: save::SAVE_ALL_FOLDER,
            nodes: self.node_views(),
            token_place: self.store.token_place(),
        }
    }

    /// The batch that runs now, if one does.
    fn running_job(&self) -> Option<Arc<Job>> {
        lock(&self.job).as_ref().filter(|j| j.is_running()).cloned()
    }

    /// Starts a batch on its own thread; events go to `sink`. One batch at a time.
    pub fn process(&self, target: Target, sink: EventSink) -> Result<JobStarted, AppError> {
        // Held until the job is in place, so two calls cannot both start one.
        let mut slot = lock(&self.job);
        if slot.as_ref().is_some_and(|j| j.is_running()) {
            return Err(AppError::Busy);
        }
        let settings = lock(&self.settings).clone();
        let (workers, joins) = self.batch_workers()?;
        let plan = Plan::new(&lock(&self.library), target, &settings.global_ops)?;
        let id = self.next_job.fetch_add(1, Ordering::Relaxed);
        let mut config = RunConfig::new(self.work_dir.join(format!("job-{id}")));
        config.format = settings.output_format();
        // Keypoint counts come with each `done` event; no features file is needed.
        config.features = false;
        // The job's own work folder: a retry replaces its earlier result there.
        config.on_exists = OnExists::Overwrite;
        let remote = self.remote.clone();
        let on_lost: OnLost = Arc::new(move |address, message| remote.mark_lost(address, message));
        let job = Job::start(
            plan,
            JobSetup {
                id,
                workers,
                config,
                library: self.library.clone(),
                on_lost,
                sink,
                joins,
            },
        )?;
        let started = JobStarted {
            job: id,
            ids: job.ids().to_vec(),
        };
        *slot = Some(job);
        Ok(started)
    }

    /// Sends the running batch's events to `sink` from now on (the page was reloaded and
    /// its old channel is gone); `None` when no batch runs.
    pub fn attach_job(&self, sink: EventSink) -> Option<Attached> {
        let job = self.running_job()?;
        let view = job.attach(sink);
        let lib = lock(&self.library);
        let images = view.ids.iter().filter_map(|&id| lib.view(id)).collect();
        Some(Attached { job: view, images })
    }

    /// Asks the batch `job` to stop; false when it is not running.
    pub fn cancel(&self, job: JobId) -> bool {
        match self.running_job() {
            Some(j) if j.id() == job => {
                j.cancel();
                true
            }
            _ => false,
        }
    }

    /// Adds files and folders (recursively).
    pub fn add_paths(&self, paths: &[PathBuf]) -> AddReport {
        let (files, skipped) = crate::library::expand(paths);
        let report = lock(&self.library).insert(files, skipped);
        if !report.added.is_empty() {
            // Where the user picked or dragged from: the next file dialog starts there.
            if let Some(dir) = paths.first().and_then(|p| p.parent()) {
                self.remember_folder(dir);
            }
        }
        report
    }

    /// Keeps `dir` as the folder dialogs start in next (saved with the settings).
    fn remember_folder(&self, dir: &Path) {
        let Ok(dir) = dir.canonicalize() else { return };
        if !dir.is_dir() || lock(&self.settings).last_folder.as_ref() == Some(&dir) {
            return;
        }
        // Only a convenience: the add or save that led here succeeded either way.
        let _ = self.change_settings(|s| s.last_folder = Some(dir));
    }

    /// Where a file dialog starts: the folder last used while it exists, else the first
    /// of `fallbacks` (Pictures, home) that does.
    pub fn dialog_start(&self, fallbacks: &[PathBuf]) -> Option<PathBuf> {
        let last = lock(&self.settings).last_folder.clone();
        last.into_iter()
            .chain(fallbacks.iter().cloned())
            .find(|d| d.is_dir())
    }

    /// Removes images; refused while a batch runs.
    pub fn remove_images(&self, ids: &[ImageId]) -> Result<(), AppError> {
        // Held while removing, so no batch starts on images going away.
        let job = lock(&self.job);
        if job.as_ref().is_some_and(|j| j.is_running()) {
            return Err(AppError::Busy);
        }
        let outputs = lock(&self.library).take(ids);
        drop(job);
        for &id in ids {
            self.previews.forget(id);
            self.frames.forget(id);
            let mut input = lock(&self.live_input);
            if input.as_ref().is_some_and(|(held, ..)| *held == id) {
                *input = None;
            }
        }
        for output in outputs {
            crate::library::remove_output(&output);
        }
        Ok(())
    }

    /// Sets the sidebar's chain and saves it.
    pub fn set_global_chain(&self, ops: Vec<Op>) -> Result<Settings, AppError> {
        self.change_settings(|s| s.global_ops = ops)?;
        Ok(lock(&self.settings).clone())
    }

    /// Sets or clears one image's own chain.
    pub fn set_override(&self, id: ImageId, ops: Option<Vec<Op>>) -> Result<ImageView, AppError> {
        if let Some(ops) = &ops {
            check_chain(ops)?;
        }
        let mut lib = lock(&self.library);
        if !lib.set_override(id, ops) {
            return Err(AppError::UnknownImage(id));
        }
        lib.view(id).ok_or(AppError::UnknownImage(id))
    }

    /// Saves the sidebar's chain and output format as a preset named `name`, replacing a
    /// preset of that name.
    pub fn save_preset(&self, name: &str) -> Result<Settings, AppError> {
        let preset = {
            let s = lock(&self.settings);
            Preset::new(name, s.global_ops.clone(), s.output_format())?
        };
        self.keep_preset(preset)
    }

    /// Adds `preset`, or replaces the one of the same name where it stands.
    fn keep_preset(&self, preset: Preset) -> Result<Settings, AppError> {
        self.change_settings(
            |s| match s.presets.iter_mut().find(|p| p.name() == preset.name()) {
                Some(p) => *p = preset,
                None => s.presets.push(preset),
            },
        )?;
        Ok(lock(&self.settings).clone())
    }

    fn preset(&self, name: &str) -> Result<Preset, AppError> {
        lock(&self.settings)
            .presets
            .iter()
            .find(|p| p.name() == name)
            .cloned()
            .ok_or_else(|| AppError::BadRequest(format!("no preset named {name:?}")))
    }

    /// Deletes the preset named `name`.
    pub fn delete_preset(&self, name: &str) -> Result<Settings, AppError> {
        self.preset(name)?;
        self.change_settings(|s| s.presets.retain(|p| p.name() != name))?;
        Ok(lock(&self.settings).clone())
    }

    /// Makes the preset named `name` the sidebar's chain and output format.
    pub fn apply_preset(&self, name: &str) -> Result<Settings, AppError> {
        let preset = self.preset(name)?;
        self.change_settings(|s| {
            s.global_ops = preset.steps().to_vec();
            s.output_format = format_name(preset.format()).to_string();
        })?;
        Ok(lock(&self.settings).clone())
    }

    /// Writes the preset named `name` to `dest` as the JSON `prism process --preset`
    /// reads; returns the path written.
    pub fn export_preset(&self, name: &str, dest: &Path) -> Result<PathBuf, AppError> {
        let preset = self.preset(name)?;
        crate::save::write_text(dest, &preset.to_json())?;
        if let Some(dir) = dest.parent() {
            self.remember_folder(dir);
        }
        Ok(dest.to_path_buf())
    }

    /// Reads a preset file and keeps it (replacing a preset of the same name); a bad file
    /// changes nothing. Returns the preset's name and the settings.
    pub fn import_preset(&self, path: &Path) -> Result<(String, Settings), AppError> {
        let preset = Preset::from_file(path)?;
        let name = preset.name().to_string();
        let settings = self.keep_preset(preset)?;
        if let Some(dir) = path.parent() {
            self.remember_folder(dir);
        }
        Ok((name, settings))
    }

    /// Changes and saves settings.
    pub fn update_settings(&self, patch: SettingsPatch) -> Result<Settings, AppError> {
        let mut s = lock(&self.settings);
        let mut next = s.clone();
        if let Some(f) = patch.output_format {
            next.output_format = f;
        }
        if let Some(t) = patch.threads {
            next.threads = t;
        }
        if let Some(e) = patch.engine {
            next.engine = e;
        }
        if let Some(r) = patch.retry {
            next.retry = r;
        }
        if let Some(f) = patch.fleet {
            next.fleet = f;
        }
        if let Some(l) = patch.use_local_too {
            next.use_local_too = l;
        }
        next.validate()?;
        self.store.save(&next)?;
        *s = next.clone();
        Ok(next)
    }

    /// This machine's worker with the configured threads (rebuilt when they change).
    fn local_worker(&self) -> Result<Arc<LocalWorker>, AppError> {
        let threads = lock(&self.settings).threads;
        let mut local = lock(&self.local);
        if let Some((t, w)) = local.as_ref() {
            if *t == threads {
                return Ok(w.clone());
            }
        }
        let w = Arc::new(LocalWorker::with_start(threads, |_| background_priority())?);
        *local = Some((threads, w.clone()));
        Ok(w)
    }

    /// The encoded preview a `prism://` URL asks for, rendering it on a miss.
    /// Runs on the preview threads, never the UI thread.
    pub fn pixels(&self, req: PixelRequest) -> Result<Arc<Vec<u8>>, AppError> {
        if let Some(b) = self.previews.get(req) {
            return Ok(b);
        }
        if let PixelRequest::Live(id, gen, edge) = req {
            return Ok(Arc::new(self.render_live(id, gen, edge)?));
        }
        if let PixelRequest::Diff(id, rev, gain) = req {
            let bytes = Arc::new(self.render_difference(id, rev, gain)?);
            self.previews.put(req, bytes.clone());
            return Ok(bytes);
        }
        let path = self.pixels_path(req)?;
        // One decode makes what this request brings along (a thumbnail's display
        // rendition); a rendition made already is not made again.
        let wanted: Vec<PixelRequest> = req
            .made_with()
            .into_iter()
            .filter(|&r| r == req || self.previews.get(r).is_none())
            .collect();
        let sizes: Vec<Rendition> = wanted.iter().map(|r| r.rendition()).collect();
        let mut asked = None;
        for (r, bytes) in wanted.into_iter().zip(render_all(&path, &sizes)?) {
            let bytes = Arc::new(bytes);
            self.previews.put(r, bytes.clone());
            if r == req {
                asked = Some(bytes);
            }
        }
        asked.ok_or_else(|| AppError::Io("the preview was not rendered".into()))
    }

    /// The full-resolution original and, for `rev`, result of an image (decoded once
    /// while they are looked at).
    fn frames(
        &self,
        id: ImageId,
        rev: Option<u64>,
    ) -> Result<(Arc<Frame>, Option<Arc<Frame>>), AppError> {
        let source = self.pixels_path(PixelRequest::Display(id))?;
        let result = rev
            .map(|rev| self.pixels_path(PixelRequest::ResultDisplay(id, rev)))
            .transpose()?;
        let original = self
            .frames
            .get_or_decode(FrameKey { id, rev: None }, &source)?;
        let result = match (rev, result) {
            (Some(rev), Some(path)) => Some(
                self.frames
                    .get_or_decode(FrameKey { id, rev: Some(rev) }, &path)?,
            ),
            _ => None,
        };
        Ok((original, result))
    }

    /// The difference view: `|original - result| * gain` at full resolution, scaled
    /// to display size.
    fn render_difference(&self, id: ImageId, rev: u64, gain: u8) -> Result<Vec<u8>, AppError> {
        let (a, b) = self.frames(id, Some(rev))?;
        let b = b.ok_or_else(|| AppError::NoResult(format!("image {id} (rev {rev})")))?;
        let diff = Frame::new(compare::difference(&a.pixels, &b.pixels, gain)?);
        let edge = diff.pixels.width().max(diff.pixels.height());
        let (_, max_edge) = Rendition::Display.plan(edge);
        Ok(encode_preview(fit_frame(&diff, max_edge))?)
    }

    /// Takes an edit of the ops `id` goes through, to be shown `width` x `height` pixels:
    /// the live preview's next generation (the render of the one before stops).
    pub fn set_live(
        &self,
        id: ImageId,
        ops: Vec<Op>,
        width: u32,
        height: u32,
    ) -> Result<LivePlan, AppError> {
        if ops.is_empty() {
            return Err(AppError::BadRequest("a live preview needs an op".into()));
        }
        lock(&self.library)
            .get(id)
            .ok_or(AppError::UnknownImage(id))?;
        // Never more than the display rendition the preview is made from.
        Ok(self.live.set(id, ops, width, height, DISPLAY_EDGE))
    }

    /// Renders live preview `gen` of `id`: its ops on the display-size original scaled
    /// to fit `edge`. Stale (another edit came) before or while it runs:
    /// [`AppError::NoResult`].
    fn render_live(&self, id: ImageId, gen: u64, edge: u32) -> Result<Vec<u8>, AppError> {
        let stale = || AppError::NoResult(format!("live preview {gen} of image {id} (replaced)"));
        let (ops, cancel) = self.live.current(id, gen).ok_or_else(stale)?;
        let (display, factor) = self.live_input(id)?;
        let shown = display.pixels.width().max(display.pixels.height());
        let input = if edge < shown {
            Arc::new(fit_frame(&display, edge))
        } else {
            display
        };
        let long = input.pixels.width().max(input.pixels.height());
        let ops = live::scaled(&ops, factor * f64::from(long) / f64::from(shown));
        let ctx = OpContext {
            cancel,
            progress: None,
        };
        let mut took = Vec::with_capacity(ops.len());
        let out =
            match run_pipeline_timed(&ops, input.pixels.clone(), &ctx, &mut |_, t| took.push(t)) {
                Ok(out) => out,
                Err(OpError::Cancelled) => return Err(stale()),
                Err(e) => return Err(AppError::Engine(e.into())),
            };
        // Every op ran to the end: what it took tells the next plan.
        for (op, t) in ops.iter().zip(took) {
            self.live
                .record(op, input.pixels.width(), input.pixels.height(), t);
        }
        // As in a batch: alpha stays with colour outputs only.
        let alpha = input.alpha.clone().filter(|_| out.pixels.channels() == 3);
        Ok(encode_preview(Frame {
            pixels: out.pixels,
            alpha,
        })?)
    }

    /// The display-size original live previews start from (decoded once per image
    /// selected), and its size over the full image's.
    fn live_input(&self, id: ImageId) -> Result<(Arc<Frame>, f64), AppError> {
        if let Some((held, frame, factor)) = lock(&self.live_input).as_ref() {
            if *held == id {
                return Ok((frame.clone(), *factor));
            }
        }
        let path = self.pixels_path(PixelRequest::Display(id))?;
        let limits = prism_engine::codec::Limits::default();
        let bytes = prism_engine::codec::read_file(&path, &limits).map_err(EngineError::from)?;
        let format = prism_engine::codec::sniff(&bytes).map_err(EngineError::from)?;
        let (w, h) =
            prism_engine::codec::peek_dimensions(&bytes, format).map_err(EngineError::from)?;
        let edge = w.max(h);
        let (denom, max_edge) = Rendition::Display.plan(edge);
        let decoded = prism_engine::codec::decode_reduced(&bytes, &limits, denom)
            .map_err(EngineError::from)?;
        let frame = Arc::new(fit_frame(&decoded.frame, max_edge));
        let shown = frame.pixels.width().max(frame.pixels.height());
        let factor = f64::from(shown) / f64::from(edge);
        *lock(&self.live_input) = Some((id, frame.clone(), factor));
        Ok((frame, factor))
    }

    /// The pixel values at `(u, v)` (fractions across and down) of the original and of
    /// the result `rev`, from the full-resolution images.
    pub fn readout(
        &self,
        id: ImageId,
        rev: Option<u64>,
        u: f64,
        v: f64,
    ) -> Result<Readout, AppError> {
        let (a, b) = self.frames(id, rev)?;
        Ok(Readout {
            original: compare::sample(&a, u, v)?,
            result: b.map(|b| compare::sample(&b, u, v)).transpose()?,
        })
    }

    /// The file a request's pixels come from: the source, or the result of that revision.
    fn pixels_path(&self, req: PixelRequest) -> Result<PathBuf, AppError> {
        let lib = lock(&self.library);
        let id = req.id();
        let e = lib.get(id).ok_or(AppError::UnknownImage(id))?;
        match req.rev() {
            None => Ok(e.source.clone()),
            Some(rev) => match &e.result {
                Some(r) if r.rev == rev => Ok(r.output.clone()),
                _ => Err(AppError::NoResult(format!("{} (rev {rev})", e.name))),
            },
        }
    }

    /// The name Save proposes for an image's result.
    pub fn suggested_name(&self, id: ImageId) -> Result<String, AppError> {
        let lib = lock(&self.library);
        let v = lib.view(id).ok_or(AppError::UnknownImage(id))?;
        v.result
            .map(|r| r.suggested_name)
            .ok_or(AppError::NoResult(v.name))
    }

    /// Saves one result where the save dialog said.
    pub fn save_one(&self, id: ImageId, dest: &Path) -> Result<PathBuf, AppError> {
        let (output, format) = {
            let lib = lock(&self.library);
            // The save dialog asks before replacing a file; replacing an original in the
            // library would still lose it, so that is refused whatever was answered.
            if lib.entries().iter().any(|e| same_file(&e.source, dest)) {
                return Err(AppError::Io(format!(
                    "{} is one of the originals; choose another name",
                    dest.display()
                )));
            }
            let e = lib.get(id).ok_or(AppError::UnknownImage(id))?;
            let r = e
                .result
                .as_ref()
                .ok_or_else(|| AppError::NoResult(e.name.clone()))?;
            (r.output.clone(), r.format)
        };
        let saved = save::save_one(&output, dest, format)?;
        if let Some(dir) = saved.parent() {
            self.remember_folder(dir);
        }
        Ok(saved)
    }

    /// Saves every result into `dir/Processed Images/`; taken names follow `policy`.
    pub fn save_all(&self, dir: &Path, policy: OnExists) -> Result<SaveAllReport, AppError> {
        let items: Vec<(PathBuf, String)> = {
            let lib = lock(&self.library);
            lib.views()
                .into_iter()
                .filter_map(|v| {
                    let r = v.result?;
                    let e = lib.get(v.id)?;
                    Some((e.result.as_ref()?.output.clone(), r.suggested_name))
                })
                .collect()
        };
        if items.is_empty() {
            return Err(AppError::Nothing("no processed images to save".into()));
        }
        let saved = save::save_all(&items, dir, policy)?;
        self.remember_folder(dir);
        Ok(SaveAllReport {
            folder: saved.folder.display().to_string(),
            files: saved
                .written
                .iter()
                .map(|f| f.display().to_string())
                .collect(),
            skipped: saved.skipped,
            failed: saved
                .failed
                .into_iter()
                .map(|(name, e)| SaveFailure {
                    name,
                    message: e.to_string(),
                })
                .collect(),
        })
    }

    /// The workers a batch runs on: this machine, or the connected nodes (and this
    /// machine too when asked), with the fleet members that join while it runs.
    #[allow(clippy::type_complexity)]
    fn batch_workers(&self) -> Result<(Vec<Arc<dyn Worker>>, Option<Joins>), AppError> {
        let (engine, with_local, resolve_every) = {
            let s = lock(&self.settings);
            (
                s.engine,
                s.use_local_too,
                Duration::from_millis(s.fleet.resolve_every_ms),
            )
        };
        if engine == EngineMode::Local {
            return Ok((vec![self.local_worker()?], None));
        }
        // A fleet whose members all went at once may come back: the batch waits for one
        // as the CLI does (at least two lookups).
        let (remote, joins) = self.remote.batch(FLEET_WAIT.max(resolve_every * 2));
        let mut workers: Vec<Arc<dyn Worker>> =
            remote.into_iter().map(|w| w as Arc<dyn Worker>).collect();
        if with_local {
            workers.push(self.local_worker()?);
        }
        if workers.is_empty() {
            return Err(AppError::Remote {
                message: "no remote node is connected".into(),
                hint: "Connect a node in the Engine panel, or switch the engine to Local.",
            });
        }
        Ok((workers, joins))
    }

    fn tokens(&self) -> Result<std::collections::BTreeMap<String, String>, AppError> {
        self.store.load_tokens()
    }

    /// Every configured node with its status.
    pub fn node_views(&self) -> Vec<NodeView> {
        let nodes = lock(&self.settings).nodes.clone();
        let tokens = self.tokens().unwrap_or_default();
        self.remote.views(&nodes, &tokens)
    }

    fn change_settings(&self, f: impl FnOnce(&mut Settings)) -> Result<(), AppError> {
        let mut s = lock(&self.settings);
        let mut next = s.clone();
        f(&mut next);
        next.validate()?;
        self.store.save(&next)?;
        *s = next;
        Ok(())
    }

    /// Adds a node by address, or a fleet by DNS name (not connected, not trusted yet).
    pub fn add_node(&self, address: &str) -> Result<Vec<NodeView>, AppError> {
        let address = parse_address(address)?;
        // A name is a fleet: it must be a name DNS can look up.
        if !address.starts_with('[') && address.parse::<std::net::SocketAddr>().is_err() {
            parse_target(&address).map_err(AppError::BadRequest)?;
        }
        if lock(&self.settings)
            .nodes
            .iter()
            .any(|n| n.address == address)
        {
            return Err(AppError::BadRequest(format!(
                "{address} is already in the list"
            )));
        }
        self.change_settings(|s| {
            s.nodes.push(NodeConfig {
                address,
                fingerprint: None,
            })
        })?;
        Ok(self.node_views())
    }

    /// Removes a node, its pin and its token, closing its connection.
    pub fn remove_node(&self, address: &str) -> Result<Vec<NodeView>, AppError> {
        // A fleet's members are named by their own addresses in the batch.
        let in_use = |j: &Arc<Job>| j.uses_node(address) || (is_fleet(address) && j.uses_nodes());
        if self.running_job().is_some_and(|j| in_use(&j)) {
            return Err(AppError::Busy);
        }
        self.change_settings(|s| s.nodes.retain(|n| n.address != address))?;
        let mut tokens = self.tokens()?;
        if tokens.remove(address).is_some() {
            self.store.save_tokens(&tokens)?;
        }
        self.remote.forget(address);
        Ok(self.node_views())
    }

    /// Stores a node's token (in the private token file).
    pub fn set_token(&self, address: &str, token: &str) -> Result<Vec<NodeView>, AppError> {
        let token = parse_token(token)?;
        self.known_node(address)?;
        let mut tokens = self.tokens()?;
        tokens.insert(address.to_string(), token);
        self.store.save_tokens(&tokens)?;
        Ok(self.node_views())
    }

    /// Pins the fingerprint the user checked and trusted.
    pub fn trust_node(&self, address: &str, fingerprint: &str) -> Result<Vec<NodeView>, AppError> {
        let fp: Fingerprint = fingerprint
            .parse()
            .map_err(|e| AppError::BadRequest(format!("{e}")))?;
        self.known_node(address)?;
        self.change_settings(|s| {
            for n in s.nodes.iter_mut().filter(|n| n.address == address) {
                n.fingerprint = Some(fp.to_string());
            }
        })?;
        Ok(self.node_views())
    }

    fn known_node(&self, address: &str) -> Result<(), AppError> {
        if lock(&self.settings)
            .nodes
            .iter()
            .any(|n| n.address == address)
        {
            Ok(())
        } else {
            Err(AppError::BadRequest(format!(
                "{address} is not in the node list"
            )))
        }
    }

    /// Connects every configured node (with visible retries); events go to `sink`.
    pub fn connect_nodes(&self, sink: ConnSink) -> Result<(), AppError> {
        let (nodes, retry, fleet) = {
            let s = lock(&self.settings);
            (s.nodes.clone(), s.retry, s.fleet.clone())
        };
        if nodes.is_empty() {
            return Err(AppError::Nothing("no remote nodes yet".into()));
        }
        let tokens = self.tokens()?;
        self.remote.connect_all(nodes, tokens, retry, fleet, sink)
    }

    /// Sends node changes no call asked for (fleet members joining, draining, lost) to
    /// `sink` from now on, and returns the nodes as they are now (a page drawing itself).
    pub fn watch_nodes(&self, sink: ConnSink) -> Vec<NodeView> {
        self.remote.watch(sink);
        self.node_views()
    }

    /// Closes every node connection; refused while a batch uses them.
    pub fn close_connections(&self) -> Result<usize, AppError> {
        // A batch on this machine alone does not need them.
        if self.running_job().is_some_and(|j| j.uses_nodes()) {
            return Err(AppError::Busy);
        }
        Ok(self.remote.close_all())
    }
}

#[cfg(test)]
mod tests;
