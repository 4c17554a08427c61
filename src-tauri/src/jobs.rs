//! Batches: which images one takes and with which chain of ops ([`Plan`]), and the running batch
//! ([`Job`]), which owns its state (id, cancel token, the nodes it holds, its counts,
//! where its events go) and runs the engine's scheduler (`exec::run_batch`) on a thread
//! of its own, keeping the library's image states in step with the engine's events.
//!
//! A job knows the library and nothing else of the app: whoever starts it gives it its
//! workers, what to do when a node is lost, and where its events go.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use prism_engine::exec::{
    run_batch_joining, Event, Joins, RunConfig, WorkError, WorkRequest, WorkResult, Worker,
};
use prism_engine::job::{Batch, Input};
use prism_engine::ops::CancelToken;
use prism_engine::{ErrorKind, Op};
use serde::Serialize;

use crate::error::{hint_for, AppError};
use crate::library::{ImageId, ImageState, Library, ResultRecord, ResultView};
use crate::sync::lock;

/// A batch's id.
pub type JobId = u64;

/// Which images a batch takes.
#[derive(Clone, Debug, PartialEq)]
pub enum Target {
    /// These, in this order ("Process" on one image is `Ids(vec![id])`).
    Ids(Vec<ImageId>),
    /// Every image ("Process all").
    All,
    /// Images whose last batch failed on them ("Retry failed").
    Failed,
}

/// One step of a batch, as the UI receives it on the job's channel.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(
    tag = "event",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
pub enum JobEvent {
    /// The batch begins.
    Started {
        /// Its id.
        job: JobId,
        /// Images in it.
        total: usize,
    },
    /// A worker picked an image up.
    Running {
        /// The image.
        id: ImageId,
        /// `local` or a node's address.
        worker: String,
    },
    /// An image was processed.
    Done {
        /// The image.
        id: ImageId,
        /// Its new result.
        result: ResultView,
    },
    /// An image failed; the rest go on.
    Failed {
        /// The image.
        id: ImageId,
        /// The fault.
        kind: ErrorKind,
        /// What happened.
        message: String,
        /// What to do about it.
        hint: String,
    },
    /// After each image ends.
    Progress {
        /// Images ended.
        done: usize,
        /// All images.
        total: usize,
    },
    /// A remote node was lost; its images go to the other workers.
    NodeLost {
        /// The node.
        address: String,
        /// What happened.
        message: String,
    },
    /// The batch ended; another may start now.
    Finished {
        /// Its id.
        job: JobId,
        /// Images processed.
        done: usize,
        /// Images failed (cancelled ones included).
        failed: usize,
        /// Whether Cancel stopped it.
        cancelled: bool,
        /// Wall time.
        wall_ms: f64,
    },
}

/// Where a batch's events go (a `tauri::ipc::Channel` in the app, a vector in tests).
pub type EventSink = Arc<dyn Fn(JobEvent) + Send + Sync>;

/// What to do when a remote node is lost during a batch: `(address, why)`.
pub type OnLost = Arc<dyn Fn(&str, &str) + Send + Sync>;

/// What `process` returns at once; the rest arrives as events.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct JobStarted {
    /// The batch's id, for Cancel.
    pub job: JobId,
    /// Its images, queued.
    pub ids: Vec<ImageId>,
}

/// Where a running batch stands, for a page that draws itself again (a reload).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct JobView {
    /// Its id.
    pub job: JobId,
    /// Its images, in order.
    pub ids: Vec<ImageId>,
    /// Images processed so far.
    pub done: usize,
    /// Images failed so far.
    pub failed: usize,
}

/// One image of a plan, at the index the engine's events name it by.
struct Planned {
    id: ImageId,
    ops: Arc<[Op]>,
}

/// What a batch will do: its images in order, each with the op it goes through.
pub struct Plan {
    batch: Batch,
    planned: Vec<Planned>,
}

impl Plan {
    /// Resolves `target` in `lib`: each image takes its own chain, else `global`. Ids
    /// given twice run once; an unknown id or nothing to do is an error.
    pub fn new(lib: &Library, target: Target, global: &[Op]) -> Result<Plan, AppError> {
        let ids: Vec<ImageId> = match target {
            Target::All => lib.entries().iter().map(|e| e.id).collect(),
            Target::Failed => lib.failed_ids(),
            Target::Ids(ids) => {
                let mut seen = HashSet::new();
                let mut out = Vec::new();
                for id in ids {
                    lib.get(id).ok_or(AppError::UnknownImage(id))?;
                    if seen.insert(id) {
                        out.push(id);
                    }
                }
                out
            }
        };
        if ids.is_empty() {
            return Err(AppError::Nothing(if lib.entries().is_empty() {
                "no images yet".into()
            } else {
                "no failed images to retry".into()
            }));
        }
        let global: Arc<[Op]> = Arc::from(global);
        let mut inputs = Vec::with_capacity(ids.len());
        let mut planned = Vec::with_capacity(ids.len());
        for id in ids {
            let e = lib.get(id).ok_or(AppError::UnknownImage(id))?;
            let ops: Arc<[Op]> = match &e.override_ops {
                Some(own) => Arc::from(own.as_slice()),
                None => global.clone(),
            };
            inputs.push(Input {
                source: e.source.clone(),
                // The id keeps same-named files from different folders apart.
                rel: PathBuf::from(id.to_string()).join(&e.name),
                ops: Some(ops.clone()),
            });
            planned.push(Planned { id, ops });
        }
        let batch = Batch {
            inputs,
            pipeline: global,
        };
        batch.validate()?;
        Ok(Plan { batch, planned })
    }

    /// Its images, in order.
    pub fn ids(&self) -> Vec<ImageId> {
        self.planned.iter().map(|p| p.id).collect()
    }
}

/// What a job runs on and reports to, besides its plan.
pub struct JobSetup {
    /// Its id.
    pub id: JobId,
    /// Where it runs (this machine, nodes or both).
    pub workers: Vec<Arc<dyn Worker>>,
    /// Output folder and format.
    pub config: RunConfig,
    /// The library whose image states it keeps in step.
    pub library: Arc<Mutex<Library>>,
    /// Told once per node lost during the batch.
    pub on_lost: OnLost,
    /// Where its events go.
    pub sink: EventSink,
    /// Workers that join while it runs (fleet members DNS lists later), if any may.
    pub joins: Option<Joins>,
}

/// The running (or last) batch.
pub struct Job {
    id: JobId,
    ids: Vec<ImageId>,
    nodes: Vec<String>,
    /// Whether nodes may join while it runs.
    joining: bool,
    cancel: CancelToken,
    state: Mutex<JobState>,
}

/// What changes while a job runs; events go out under the same lock, so whoever reads
/// the counts sees exactly the events sent before.
struct JobState {
    sink: EventSink,
    done: usize,
    failed: usize,
    running: bool,
}

/// Lets the real worker run each input and reports the worker the moment it is lost
/// (the engine's events say which inputs moved only when the batch ends).
struct LossReporter {
    inner: Arc<dyn Worker>,
    on_lost: Arc<dyn Fn(String, String) + Send + Sync>,
}

impl Worker for LossReporter {
    fn name(&self) -> String {
        self.inner.name()
    }

    fn slots(&self) -> usize {
        self.inner.slots()
    }

    // A node's credits decide when it takes work; the wrapper must not hide them.
    fn admit(&self, wait: std::time::Duration) -> prism_engine::exec::Admit {
        self.inner.admit(wait)
    }

    fn process(&self, req: &WorkRequest, cancel: &CancelToken) -> Result<WorkResult, WorkError> {
        let res = self.inner.process(req, cancel);
        if let Err(WorkError::WorkerLost(why)) = &res {
            (self.on_lost)(self.inner.name(), why.clone());
        }
        res
    }
}

impl Job {
    /// Marks the plan's images queued and starts the batch on a thread of its own.
    pub fn start(plan: Plan, setup: JobSetup) -> Result<Arc<Job>, AppError> {
        let JobSetup {
            id,
            workers,
            config,
            library,
            on_lost,
            sink,
            joins,
        } = setup;
        let job = Arc::new(Job {
            id,
            ids: plan.ids(),
            nodes: workers
                .iter()
                .map(|w| w.name())
                .filter(|n| n != "local")
                .collect(),
            joining: joins.is_some(),
            cancel: CancelToken::new(),
            state: Mutex::new(JobState {
                sink,
                done: 0,
                failed: 0,
                running: true,
            }),
        });
        let reporter: Arc<dyn Fn(String, String) + Send + Sync> = {
            let job = job.clone();
            let reported = Mutex::new(HashSet::new());
            Arc::new(move |address: String, message: String| {
                // Every slot of a lost node reports it; tell the UI once.
                if lock(&reported).insert(address.clone()) {
                    on_lost(&address, &message);
                    job.emit(JobEvent::NodeLost { address, message });
                }
            })
        };
        let report = move |inner: Arc<dyn Worker>| {
            Arc::new(LossReporter {
                inner,
                on_lost: reporter.clone(),
            }) as Arc<dyn Worker>
        };
        let workers: Vec<Arc<dyn Worker>> = workers.into_iter().map(&report).collect();
        let joins = joins.map(|j| job.report_joins(j, report));
        // Queued before the thread starts, so its first events find them so.
        let before: Vec<(ImageId, ImageState)> = {
            let mut lib = lock(&library);
            plan.planned
                .iter()
                .filter_map(|p| {
                    let e = lib.get_mut(p.id)?;
                    Some((p.id, std::mem::replace(&mut e.state, ImageState::Queued)))
                })
                .collect()
        };
        let me = job.clone();
        let lib = library.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("prism-batch-{id}"))
            .spawn(move || me.run(&plan, &workers, joins, &config, &lib));
        if let Err(e) = spawned {
            // Nothing runs: the images go back to how they were.
            let mut lib = lock(&library);
            for (id, state) in before {
                if let Some(e) = lib.get_mut(id) {
                    e.state = state;
                }
            }
            return Err(AppError::Io(format!("cannot start the batch thread: {e}")));
        }
        Ok(job)
    }

    /// Its id.
    pub fn id(&self) -> JobId {
        self.id
    }

    /// Its images, in order.
    pub fn ids(&self) -> &[ImageId] {
        &self.ids
    }

    /// Whether it has not finished yet.
    pub fn is_running(&self) -> bool {
        lock(&self.state).running
    }

    /// Whether it runs on the node at `address` (its connection must stay open).
    pub fn uses_node(&self, address: &str) -> bool {
        self.nodes.iter().any(|n| n == address)
    }

    /// Whether it runs on any remote node (or nodes may join it).
    pub fn uses_nodes(&self) -> bool {
        !self.nodes.is_empty() || self.joining
    }

    /// The same joins, each worker wrapped by `wrap` (so a member that joins and is lost
    /// is reported like any node); the thread passing them on ends with the job.
    fn report_joins(
        self: &Arc<Self>,
        joins: Joins,
        wrap: impl Fn(Arc<dyn Worker>) -> Arc<dyn Worker> + Send + 'static,
    ) -> Joins {
        let (tx, rx) = std::sync::mpsc::channel();
        let job = Arc::downgrade(self);
        let Joins { rx: from, wait } = joins;
        let spawned = std::thread::Builder::new()
            .name(format!("prism-batch-{}-joins", self.id))
            .spawn(move || loop {
                match from.recv_timeout(std::time::Duration::from_millis(200)) {
                    Ok(w) => {
                        if tx.send(wrap(w)).is_err() {
                            return;
                        }
                    }
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                        if !job.upgrade().is_some_and(|j| j.is_running()) {
                            return;
                        }
                    }
                    Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return,
                }
            });
        match spawned {
            Ok(_) => Joins { rx, wait },
            // No thread: nothing joins (a closed channel), and the batch waits for no one.
            Err(_) => {
                let (_, rx) = std::sync::mpsc::channel();
                Joins { rx, wait }
            }
        }
    }

    /// Asks it to stop; what runs ends, what waits is marked cancelled.
    pub fn cancel(&self) {
        self.cancel.cancel();
    }

    /// Sends its events to `sink` from now on (a reloaded page's channel) and says where
    /// it stands: the counts include exactly the events sent before, to the old sink.
    pub fn attach(&self, sink: EventSink) -> JobView {
        let mut st = lock(&self.state);
        st.sink = sink;
        JobView {
            job: self.id,
            ids: self.ids.clone(),
            done: st.done,
            failed: st.failed,
        }
    }

    /// Counts what the event tells and sends it on.
    fn emit(&self, event: JobEvent) {
        let mut st = lock(&self.state);
        match &event {
            JobEvent::Done { .. } => st.done += 1,
            JobEvent::Failed { .. } => st.failed += 1,
            // Not running any more before anyone hears so: the next batch may start at once.
            JobEvent::Finished { .. } => st.running = false,
            _ => {}
        }
        (st.sink)(event);
    }

    /// The batch thread: runs the engine's scheduler, mirroring its events.
    fn run(
        &self,
        plan: &Plan,
        workers: &[Arc<dyn Worker>],
        joins: Option<Joins>,
        cfg: &RunConfig,
        lib: &Mutex<Library>,
    ) {
        let mut summary = (0, 0, 0.0);
        // Workers catch panics per input; this catches one in the scheduler itself, so
        // the job ends and the UI hears `Finished` whatever happens.
        let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.run_batch_events(plan, workers, joins, cfg, lib, &mut summary)
        }));
        if let Err(panic) = ran {
            let message = format!(
                "internal error, the batch stopped (please report it): {}",
                prism_engine::exec::panic_message(panic.as_ref())
            );
            for p in &plan.planned {
                let unfinished = {
                    let mut lib = lock(lib);
                    match lib.get_mut(p.id) {
                        Some(e)
                            if matches!(
                                e.state,
                                ImageState::Queued | ImageState::Running { .. }
                            ) =>
                        {
                            e.state = ImageState::failed(ErrorKind::Io, message.clone());
                            true
                        }
                        _ => false,
                    }
                };
                if unfinished {
                    summary.1 += 1;
                    self.emit(JobEvent::Failed {
                        id: p.id,
                        kind: ErrorKind::Io,
                        message: message.clone(),
                        hint: hint_for(ErrorKind::Io).to_string(),
                    });
                }
            }
        }
        self.emit(JobEvent::Finished {
            job: self.id,
            done: summary.0,
            failed: summary.1,
            cancelled: self.cancel.is_cancelled(),
            wall_ms: summary.2,
        });
    }

    /// Runs the engine's scheduler, mirroring its events to the library and the sink.
    fn run_batch_events(
        &self,
        plan: &Plan,
        workers: &[Arc<dyn Worker>],
        joins: Option<Joins>,
        cfg: &RunConfig,
        lib: &Mutex<Library>,
        summary: &mut (usize, usize, f64),
    ) {
        let planned = &plan.planned;
        run_batch_joining(
            &plan.batch,
            workers,
            joins,
            cfg,
            &self.cancel,
            &mut |ev| match ev {
                Event::Started { inputs } => self.emit(JobEvent::Started {
                    job: self.id,
                    total: *inputs,
                }),
                Event::Progress { done, total } => self.emit(JobEvent::Progress {
                    done: *done,
                    total: *total,
                }),
                Event::Running { index, worker, .. } => {
                    if let Some(p) = planned.get(*index) {
                        if let Some(e) = lock(lib).get_mut(p.id) {
                            e.state = ImageState::Running {
                                worker: worker.clone(),
                            };
                        }
                        self.emit(JobEvent::Running {
                            id: p.id,
                            worker: worker.clone(),
                        });
                    }
                }
                Event::Done {
                    index,
                    output,
                    format,
                    worker,
                    keypoints,
                    timings_ms,
                    ..
                } => {
                    if let Some(p) = planned.get(*index) {
                        let record = ResultRecord {
                            rev: 0,
                            output: PathBuf::from(output),
                            ops: p.ops.to_vec(),
                            format: *format,
                            worker: worker.clone(),
                            keypoints: *keypoints,
                            timings: *timings_ms,
                        };
                        let event = done_event(lib, p, record);
                        self.emit(event);
                    }
                }
                Event::Failed {
                    index,
                    kind,
                    message,
                    ..
                } => {
                    if let Some(p) = planned.get(*index) {
                        if let Some(e) = lock(lib).get_mut(p.id) {
                            e.state = ImageState::failed(*kind, message.clone());
                        }
                        self.emit(JobEvent::Failed {
                            id: p.id,
                            kind: *kind,
                            message: message.clone(),
                            hint: hint_for(*kind).to_string(),
                        });
                    }
                }
                // The work folder is the job's own and written with `overwrite`: never skipped.
                Event::Skipped { .. } => {}
                Event::Summary {
                    done,
                    failed,
                    wall_ms,
                    ..
                } => *summary = (*done, *failed, *wall_ms),
            },
        );
    }
}

/// Records a finished input in the library and builds its event.
fn done_event(lib: &Mutex<Library>, p: &Planned, record: ResultRecord) -> JobEvent {
    let mut lib = lock(lib);
    lib.record_result(p.id, record);
    match lib.view(p.id).and_then(|v| v.result) {
        Some(result) => JobEvent::Done { id: p.id, result },
        // Removing images while a batch runs is refused, so this is only a safety net.
        None => JobEvent::Failed {
            id: p.id,
            kind: ErrorKind::Io,
            message: "the image was removed while it ran".into(),
            hint: hint_for(ErrorKind::Io).into(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{Rgb, RgbImage};
    use prism_engine::exec::LocalWorker;
    use std::path::Path;
    use std::sync::mpsc;
    use std::time::Duration;

    fn op(id: &str) -> Op {
        Op::default_for(id).unwrap()
    }

    fn write_image(path: &Path, seed: u8) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        RgbImage::from_fn(24, 16, |x, y| Rgb([x as u8 * 9, y as u8 * 13, seed]))
            .save(path)
            .unwrap();
    }

    /// A library of `n` PNGs in `dir`.
    fn library(dir: &Path, n: u8) -> Library {
        let files: Vec<PathBuf> = (0..n)
            .map(|i| {
                let p = dir.join(format!("{i}.png"));
                write_image(&p, i);
                p
            })
            .collect();
        let mut lib = Library::new();
        lib.insert(files, Vec::new());
        lib
    }

    fn sink() -> (EventSink, mpsc::Receiver<JobEvent>) {
        let (tx, rx) = mpsc::channel();
        let tx = Mutex::new(tx);
        (Arc::new(move |e| drop(lock(&tx).send(e))), rx)
    }

    fn until_finished(rx: &mpsc::Receiver<JobEvent>) -> Vec<JobEvent> {
        let mut all = Vec::new();
        loop {
            let e = rx.recv_timeout(Duration::from_secs(60)).expect("an event");
            let end = matches!(e, JobEvent::Finished { .. });
            all.push(e);
            if end {
                return all;
            }
        }
    }

    #[test]
    fn a_plan_takes_its_target_in_order_with_each_images_own_op() {
        let dir = tempfile::tempdir().unwrap();
        let mut lib = library(dir.path(), 3);
        let global = [op("erosion")];
        lib.set_override(1, Some(vec![op("dilation"), op("histogram-equalization")]));
        let all = Plan::new(&lib, Target::All, &global).unwrap();
        assert_eq!(all.ids(), [0, 1, 2]);
        let chain = |i: usize| -> Vec<&str> { all.planned[i].ops.iter().map(|o| o.id()).collect() };
        assert_eq!(chain(0), ["erosion"]);
        assert_eq!(chain(1), ["dilation", "histogram-equalization"]);
        assert_eq!(chain(2), ["erosion"]);
        // The engine runs each input's chain as given.
        let one = all.batch.pipeline_for(1);
        assert_eq!(one.len(), 2);
        assert_eq!(one[1].id(), "histogram-equalization");
        // Ids given twice run once, in the order first given.
        let some = Plan::new(&lib, Target::Ids(vec![2, 0, 2]), &global).unwrap();
        assert_eq!(some.ids(), [2, 0]);
        assert!(matches!(
            Plan::new(&lib, Target::Ids(vec![9]), &global),
            Err(AppError::UnknownImage(9))
        ));
        assert!(matches!(
            Plan::new(&lib, Target::Failed, &global),
            Err(AppError::Nothing(_))
        ));
        lib.get_mut(1).unwrap().state = ImageState::failed(ErrorKind::BadInput, "x");
        let failed = Plan::new(&lib, Target::Failed, &global).unwrap();
        assert_eq!(failed.ids(), [1]);
        assert!(matches!(
            Plan::new(&Library::new(), Target::All, &global),
            Err(AppError::Nothing(m)) if m.contains("no images")
        ));
    }

    /// A node that drops every image it is given.
    struct DeadNode;

    impl Worker for DeadNode {
        fn name(&self) -> String {
            "10.0.0.9:7878".into()
        }
        fn slots(&self) -> usize {
            3
        }
        fn process(&self, _: &WorkRequest, _: &CancelToken) -> Result<WorkResult, WorkError> {
            std::thread::sleep(Duration::from_millis(20));
            Err(WorkError::WorkerLost("connection reset".into()))
        }
    }

    #[test]
    fn a_job_keeps_the_library_in_step_and_reports_a_lost_node_once() {
        let dir = tempfile::tempdir().unwrap();
        let library = Arc::new(Mutex::new(library(dir.path(), 6)));
        let plan = Plan::new(&lock(&library), Target::All, &[op("color-manipulation")]).unwrap();
        let lost = Arc::new(Mutex::new(Vec::new()));
        let on_lost: OnLost = {
            let lost = lost.clone();
            Arc::new(move |a, m| lock(&lost).push(format!("{a}: {m}")))
        };
        let (s, rx) = sink();
        let job = Job::start(
            plan,
            JobSetup {
                id: 7,
                workers: vec![Arc::new(DeadNode), Arc::new(LocalWorker::new(1).unwrap())],
                config: RunConfig::new(dir.path().join("out")),
                library: library.clone(),
                on_lost,
                sink: s,
                joins: None,
            },
        )
        .unwrap();
        assert!(job.uses_node("10.0.0.9:7878"));
        assert!(job.uses_nodes());
        let events = until_finished(&rx);
        assert!(!job.is_running());
        let lost_events = events
            .iter()
            .filter(|e| matches!(e, JobEvent::NodeLost { .. }))
            .count();
        assert_eq!(lost_events, 1, "{events:?}");
        assert_eq!(*lock(&lost), ["10.0.0.9:7878: connection reset"]);
        assert!(matches!(
            events.last(),
            Some(JobEvent::Finished {
                job: 7,
                done: 6,
                failed: 0,
                cancelled: false,
                ..
            })
        ));
        let lib = lock(&library);
        for e in lib.entries() {
            assert_eq!(e.state, ImageState::Done);
            assert_eq!(e.result.as_ref().unwrap().worker, "local");
        }
    }

    #[test]
    fn a_bad_file_fails_alone_and_the_job_ends() {
        let dir = tempfile::tempdir().unwrap();
        let library = Arc::new(Mutex::new(library(dir.path(), 2)));
        std::fs::write(dir.path().join("1.png"), b"not a png").unwrap();
        let plan = Plan::new(&lock(&library), Target::All, &[op("erosion")]).unwrap();
        let (s, rx) = sink();
        let job = Job::start(
            plan,
            JobSetup {
                id: 1,
                workers: vec![Arc::new(LocalWorker::new(1).unwrap())],
                config: RunConfig::new(dir.path().join("out")),
                library: library.clone(),
                on_lost: Arc::new(|_, _| {}),
                sink: s,
                joins: None,
            },
        )
        .unwrap();
        assert_eq!(job.ids(), [0, 1]);
        assert!(!job.uses_nodes());
        let events = until_finished(&rx);
        assert!(matches!(events[0], JobEvent::Started { job: 1, total: 2 }));
        assert!(matches!(
            events.last(),
            Some(JobEvent::Finished {
                done: 1,
                failed: 1,
                ..
            })
        ));
        assert!(!job.is_running());
        let lib = lock(&library);
        assert_eq!(lib.get(0).unwrap().state, ImageState::Done);
        assert!(matches!(
            lib.get(1).unwrap().state,
            ImageState::Failed {
                kind: ErrorKind::BadInput,
                ..
            }
        ));
    }
}
