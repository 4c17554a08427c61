//! The batch scheduler on its own (`exec::run_batch`), with fake workers that fail, stall
//! and die: every input ends exactly once, lost work moves, memory admission bounds what
//! runs at once, and cancelling stops the batch. Workers that grant credits get work by
//! them; workers may join a running batch and leave it.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use image::RgbImage;
use prism_engine::codec::{self, EncodeOptions, Format, Metadata};
use prism_engine::exec::{
    run_batch, run_batch_joining, working_bytes, Admit, Event, Joins, RunConfig, Timings, Window,
    WorkError, WorkRequest, WorkResult, Worker,
};
use prism_engine::job::{Batch, Input};
use prism_engine::ops::{CancelToken, Op};
use prism_engine::{EngineError, ErrorKind, Frame, Pixels};

/// What a fake worker does with one input.
#[derive(Clone, Debug)]
enum Act {
    /// Gives back the input bytes as the output.
    Echo,
    /// Refuses the input as bad.
    Fail,
    /// Is lost, as a node that died.
    Die,
    /// Blocks until the batch is cancelled (fails the test after 20 s).
    StallUntilCancelled,
    /// Takes this long, then echoes.
    Slow(Duration),
    /// Blocks until the flag is set (fails the test after 20 s), then echoes.
    HoldUntil(Arc<AtomicBool>),
}

/// A worker that acts on each input by its file name, and counts what it saw.
struct Fake {
    name: &'static str,
    slots: usize,
    act: Box<dyn Fn(&str) -> Act + Send + Sync>,
    /// Calls under way now, and the most at once.
    running: AtomicUsize,
    peak: AtomicUsize,
    /// File names it was asked to process, in order.
    seen: Mutex<Vec<String>>,
    /// The credits it grants, if it grants any (as a node does).
    window: Option<Arc<Window>>,
}

impl Fake {
    fn new(
        name: &'static str,
        slots: usize,
        act: impl Fn(&str) -> Act + Send + Sync + 'static,
    ) -> Arc<Fake> {
        Arc::new(Fake {
            name,
            slots,
            act: Box::new(act),
            running: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
            seen: Mutex::new(Vec::new()),
            window: None,
        })
    }

    /// A fake that takes inputs only while `window` has room, as a node with credits.
    fn granting(
        name: &'static str,
        slots: usize,
        window: Arc<Window>,
        act: impl Fn(&str) -> Act + Send + Sync + 'static,
    ) -> Arc<Fake> {
        Arc::new(Fake {
            name,
            slots,
            act: Box::new(act),
            running: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
            seen: Mutex::new(Vec::new()),
            window: Some(window),
        })
    }

    fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

/// Every test input is a PNG whose first pixel's red value is its number; that tells the
/// fake which file it holds.
fn input_number(req: &WorkRequest) -> String {
    let frame = codec::decode(&req.bytes, &Default::default())
        .unwrap()
        .frame;
    let Pixels::Rgb(c) = frame.pixels else {
        unreachable!("inputs are colour")
    };
    format!("in{:02}.png", c.get_pixel(0, 0)[0])
}

impl Worker for Fake {
    fn name(&self) -> String {
        self.name.into()
    }

    fn slots(&self) -> usize {
        self.slots
    }

    fn admit(&self, wait: Duration) -> Admit {
        match &self.window {
            Some(w) => w.admit(wait),
            None => Admit::Granted(prism_engine::exec::Permit::free()),
        }
    }

    fn process(&self, req: &WorkRequest, cancel: &CancelToken) -> Result<WorkResult, WorkError> {
        let name = input_number(req);
        self.seen.lock().unwrap().push(name.clone());
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(now, Ordering::SeqCst);
        let act = (self.act)(&name);
        let res = match act {
            Act::Echo => Ok(()),
            Act::Fail => Err(WorkError::Input(EngineError::new(
                ErrorKind::BadInput,
                format!("{name}: refused by the fake"),
            ))),
            Act::Die => Err(WorkError::WorkerLost(format!("{} died", self.name))),
            Act::StallUntilCancelled => {
                let start = Instant::now();
                while !cancel.is_cancelled() {
                    assert!(start.elapsed() < Duration::from_secs(20), "never cancelled");
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(WorkError::Input(EngineError::new(
                    ErrorKind::Cancelled,
                    "cancelled while stalled",
                )))
            }
            Act::Slow(d) => {
                std::thread::sleep(d);
                Ok(())
            }
            Act::HoldUntil(flag) => {
                let start = Instant::now();
                while !flag.load(Ordering::SeqCst) {
                    assert!(start.elapsed() < Duration::from_secs(20), "never released");
                    std::thread::sleep(Duration::from_millis(5));
                }
                Ok(())
            }
        };
        self.running.fetch_sub(1, Ordering::SeqCst);
        res.map(|()| WorkResult {
            bytes: req.bytes.to_vec(),
            format: Format::Png,
            features: None,
            timings: Timings::default(),
        })
    }
}

/// `n` small PNG inputs `in00.png`.. in `dir/in`, and a batch over them.
fn batch(dir: &Path, n: u8) -> Batch {
    let src = dir.join("in");
    std::fs::create_dir_all(&src).unwrap();
    let inputs = (0..n)
        .map(|i| {
            let frame = Frame::new(Pixels::Rgb(RgbImage::from_fn(16, 12, |x, y| {
                image::Rgb([if (x, y) == (0, 0) { i } else { (x * 9) as u8 }, y as u8, 7])
            })));
            let bytes = codec::encode(
                &frame,
                Format::Png,
                &Metadata::default(),
                &EncodeOptions::default(),
            )
            .unwrap();
            let name = format!("in{i:02}.png");
            let source = src.join(&name);
            std::fs::write(&source, bytes).unwrap();
            Input {
                source,
                rel: PathBuf::from(name),
                ops: None,
            }
        })
        .collect();
    Batch {
        inputs,
        pipeline: Arc::from(vec![Op::default_for("color-manipulation").unwrap()]),
    }
}

/// Runs the batch; returns every event and the (done, failed) counts.
fn run(
    b: &Batch,
    workers: &[Arc<Fake>],
    cfg: &RunConfig,
    cancel: &CancelToken,
    mut on_event: impl FnMut(&Event),
) -> (Vec<Event>, (usize, usize)) {
    let workers: Vec<Arc<dyn Worker>> = workers
        .iter()
        .map(|w| w.clone() as Arc<dyn Worker>)
        .collect();
    let mut events = Vec::new();
    let counts = run_batch(b, &workers, cfg, cancel, &mut |e| {
        on_event(e);
        events.push(e.clone());
    });
    (events, counts)
}

/// [`run`] with workers that may join while it runs.
fn run_joining(
    b: &Batch,
    workers: &[Arc<Fake>],
    joins: Joins,
    cfg: &RunConfig,
    mut on_event: impl FnMut(&Event),
) -> (Vec<Event>, (usize, usize)) {
    let workers: Vec<Arc<dyn Worker>> = workers
        .iter()
        .map(|w| w.clone() as Arc<dyn Worker>)
        .collect();
    let mut events = Vec::new();
    let counts = run_batch_joining(
        b,
        &workers,
        Some(joins),
        cfg,
        &CancelToken::new(),
        &mut |e| {
            on_event(e);
            events.push(e.clone());
        },
    );
    (events, counts)
}

/// The file name of each input that ended, with how: `Ok(worker)` or `Err(kind)`.
fn endings(events: &[Event]) -> Vec<(String, Result<String, ErrorKind>)> {
    let file = |p: &str| {
        Path::new(p)
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned()
    };
    let mut v: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            Event::Done { input, worker, .. } => Some((file(input), Ok(worker.clone()))),
            Event::Failed { input, kind, .. } => Some((file(input), Err(*kind))),
            _ => None,
        })
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

fn summary(events: &[Event]) -> (usize, usize, usize) {
    match events.last() {
        Some(Event::Summary {
            done,
            failed,
            moved,
            ..
        }) => (*done, *failed, *moved),
        other => panic!("the last event is not the summary: {other:?}"),
    }
}

/// Every input ends exactly once, and the events agree with the counts.
fn assert_each_ends_once(events: &[Event], n: usize, counts: (usize, usize)) {
    let ends = endings(events);
    let mut names: Vec<&String> = ends.iter().map(|e| &e.0).collect();
    names.dedup();
    assert_eq!(names.len(), n, "{ends:?}");
    assert_eq!(ends.len(), n, "an input ended twice: {ends:?}");
    let done = ends.iter().filter(|e| e.1.is_ok()).count();
    assert_eq!(counts, (done, n - done));
    let (d, f, _) = summary(events);
    assert_eq!((d, f), counts);
    assert_eq!(events[0], Event::Started { inputs: n });
}

fn config(dir: &Path) -> RunConfig {
    RunConfig::new(dir.join("out"))
}

#[test]
fn a_failing_input_fails_alone_and_the_rest_are_written() {
    let dir = tempfile::tempdir().unwrap();
    let b = batch(dir.path(), 6);
    let w = Fake::new("fake", 2, |n| {
        if n == "in03.png" {
            Act::Fail
        } else {
            Act::Echo
        }
    });
    let (events, counts) = run(
        &b,
        std::slice::from_ref(&w),
        &config(dir.path()),
        &CancelToken::new(),
        |_| {},
    );
    assert_each_ends_once(&events, 6, counts);
    assert_eq!(counts, (5, 1));
    for (name, how) in endings(&events) {
        let out = dir.path().join("out").join(&name);
        if name == "in03.png" {
            assert_eq!(how, Err(ErrorKind::BadInput));
            assert!(!out.exists());
        } else {
            assert_eq!(how, Ok("fake".to_string()));
            assert_eq!(
                std::fs::read(&out).unwrap(),
                std::fs::read(dir.path().join("in").join(&name)).unwrap()
            );
        }
    }
    assert_eq!(w.seen().len(), 6, "each input went to the worker once");
}

#[test]
fn work_of_a_dead_worker_moves_to_another_and_finishes() {
    let dir = tempfile::tempdir().unwrap();
    let b = batch(dir.path(), 8);
    let dying = Fake::new("dying", 1, |_| Act::Die);
    let healthy = Fake::new("healthy", 1, |_| Act::Slow(Duration::from_millis(5)));
    let (events, counts) = run(
        &b,
        &[dying.clone(), healthy.clone()],
        &config(dir.path()),
        &CancelToken::new(),
        |_| {},
    );
    assert_each_ends_once(&events, 8, counts);
    assert_eq!(counts, (8, 0));
    assert!(endings(&events)
        .iter()
        .all(|e| e.1 == Ok("healthy".to_string())));
    // The dead worker took one input, lost it and took no more.
    let lost = dying.seen();
    assert_eq!(lost.len(), 1, "{lost:?}");
    let (_, _, moved) = summary(&events);
    assert_eq!(moved, 1);
    let Some(Event::Summary { moved_inputs, .. }) = events.last() else {
        unreachable!()
    };
    assert!(
        moved_inputs[0].ends_with(&lost[0]),
        "{moved_inputs:?} vs {lost:?}"
    );
    assert_eq!(healthy.seen().len(), 8);
}

#[test]
fn when_every_worker_dies_the_rest_fail_as_remote() {
    let dir = tempfile::tempdir().unwrap();
    let b = batch(dir.path(), 5);
    // Dies on its third input: two are written, the rest have no worker left.
    let calls = AtomicUsize::new(0);
    let w = Fake::new("node", 1, move |_| {
        if calls.fetch_add(1, Ordering::SeqCst) < 2 {
            Act::Echo
        } else {
            Act::Die
        }
    });
    let (events, counts) = run(&b, &[w], &config(dir.path()), &CancelToken::new(), |_| {});
    assert_each_ends_once(&events, 5, counts);
    assert_eq!(counts, (2, 3));
    let failed: Vec<_> = endings(&events)
        .into_iter()
        .filter(|e| e.1.is_err())
        .collect();
    assert!(
        failed.iter().all(|e| e.1 == Err(ErrorKind::Remote)),
        "{failed:?}"
    );
}

#[test]
fn a_stalled_worker_does_not_hold_up_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let b = batch(dir.path(), 10);
    // The stalled worker holds its input until the other nine are written: were the batch
    // waiting on it, they never would be, and it would fail after 20 s.
    let release = Arc::new(AtomicBool::new(false));
    let held = release.clone();
    let slow = Fake::new("slow", 1, move |_| Act::HoldUntil(held.clone()));
    let fast = Fake::new("fast", 1, |_| Act::Echo);
    let mut written = 0;
    let (events, counts) = run(
        &b,
        &[slow.clone(), fast.clone()],
        &config(dir.path()),
        &CancelToken::new(),
        |e| {
            if matches!(e, Event::Done { .. }) {
                written += 1;
                if written == 9 {
                    release.store(true, Ordering::SeqCst);
                }
            }
        },
    );
    assert_each_ends_once(&events, 10, counts);
    assert_eq!(counts, (10, 0));
    assert_eq!(slow.seen().len(), 1, "{:?}", slow.seen());
    assert_eq!(fast.seen().len(), 9);
}

#[test]
fn cancel_stops_stalled_work_and_fails_the_rest_as_cancelled() {
    let dir = tempfile::tempdir().unwrap();
    let b = batch(dir.path(), 12);
    let w = Fake::new("fake", 2, |n| {
        if n == "in00.png" {
            Act::Echo
        } else {
            Act::StallUntilCancelled
        }
    });
    let cancel = CancelToken::new();
    let c = cancel.clone();
    // Cancel as soon as the first input is written (the sink runs on the batch's thread).
    let (events, counts) = run(
        &b,
        std::slice::from_ref(&w),
        &config(dir.path()),
        &cancel,
        |e| {
            if matches!(e, Event::Done { .. }) {
                c.cancel();
            }
        },
    );
    assert_each_ends_once(&events, 12, counts);
    assert_eq!(counts, (1, 11));
    let ends = endings(&events);
    assert_eq!(ends[0], ("in00.png".to_string(), Ok("fake".to_string())));
    assert!(
        ends[1..].iter().all(|e| e.1 == Err(ErrorKind::Cancelled)),
        "{ends:?}"
    );
    // Only the stalled ones started: the queue stopped at the cancel.
    assert!(w.seen().len() <= 3, "{:?}", w.seen());
    let written: Vec<_> = std::fs::read_dir(dir.path().join("out")).unwrap().collect();
    assert_eq!(written.len(), 1);
}

#[test]
fn cancelled_before_the_start_runs_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let b = batch(dir.path(), 4);
    let w = Fake::new("fake", 2, |_| Act::Echo);
    let cancel = CancelToken::new();
    cancel.cancel();
    let (events, counts) = run(
        &b,
        std::slice::from_ref(&w),
        &config(dir.path()),
        &cancel,
        |_| {},
    );
    assert_each_ends_once(&events, 4, counts);
    assert_eq!(counts, (0, 4));
    assert!(w.seen().is_empty());
}

/// What admission charges for one test input.
fn cost_of_one(b: &Batch) -> u64 {
    let bytes = std::fs::metadata(&b.inputs[0].source).unwrap().len();
    working_bytes(16 * 12, &b.pipeline) + bytes
}

#[test]
fn memory_budget_bounds_how_many_images_run_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let b = batch(dir.path(), 8);
    let cost = cost_of_one(&b);
    // (images the budget has room for, fewest and most seen running at once) with 4 slots.
    for (images, least, most) in [(1, 1, 1), (2, 2, 2), (8, 3, 4)] {
        let w = Fake::new("fake", 4, |_| Act::Slow(Duration::from_millis(100)));
        let mut cfg = config(dir.path());
        cfg.memory_budget = cost * images + cost / 2;
        let (events, counts) = run(
            &b,
            std::slice::from_ref(&w),
            &cfg,
            &CancelToken::new(),
            |_| {},
        );
        assert_each_ends_once(&events, 8, counts);
        assert_eq!(counts, (8, 0));
        let peak = w.peak.load(Ordering::SeqCst);
        assert!(
            (least..=most).contains(&peak),
            "budget of {images} images: {peak} ran at once"
        );
    }
}

#[test]
fn an_image_over_the_whole_budget_still_runs_alone() {
    let dir = tempfile::tempdir().unwrap();
    let b = batch(dir.path(), 3);
    let w = Fake::new("fake", 3, |_| Act::Slow(Duration::from_millis(20)));
    let mut cfg = config(dir.path());
    cfg.memory_budget = 1;
    let (events, counts) = run(
        &b,
        std::slice::from_ref(&w),
        &cfg,
        &CancelToken::new(),
        |_| {},
    );
    assert_each_ends_once(&events, 3, counts);
    assert_eq!(counts, (3, 0));
    assert_eq!(w.peak.load(Ordering::SeqCst), 1);
}

#[test]
fn a_worker_without_credit_gets_nothing_until_it_grants_some() {
    let dir = tempfile::tempdir().unwrap();
    let b = batch(dir.path(), 24);
    let work = |_: &str| Act::Slow(Duration::from_millis(20));
    let open = Fake::granting("open", 2, Window::new(2), work);
    // Busy with someone else's work: no credit yet.
    let busy_window = Window::new(0);
    let busy = Fake::granting("busy", 2, busy_window.clone(), work);
    let mut seen_before_grant = None;
    let mut done = 0;
    let (events, counts) = run(
        &b,
        &[open.clone(), busy.clone()],
        &config(dir.path()),
        &CancelToken::new(),
        |e| {
            if matches!(e, Event::Done { .. }) {
                done += 1;
                if done == 6 {
                    seen_before_grant = Some(busy.seen().len());
                    busy_window.set_limit(2);
                }
            }
        },
    );
    assert_each_ends_once(&events, 24, counts);
    assert_eq!(counts, (24, 0));
    assert_eq!(
        seen_before_grant,
        Some(0),
        "an input went to a worker without credit"
    );
    assert!(!busy.seen().is_empty(), "the grant was not used");
    assert_eq!(open.seen().len() + busy.seen().len(), 24);
    assert!(busy.peak.load(Ordering::SeqCst) <= 2);
}

#[test]
fn the_window_bounds_the_inputs_a_worker_holds() {
    let dir = tempfile::tempdir().unwrap();
    let b = batch(dir.path(), 12);
    // Four slots, but credit for one at a time.
    let w = Fake::granting("node", 4, Window::new(1), |_| {
        Act::Slow(Duration::from_millis(15))
    });
    let (events, counts) = run(
        &b,
        std::slice::from_ref(&w),
        &config(dir.path()),
        &CancelToken::new(),
        |_| {},
    );
    assert_each_ends_once(&events, 12, counts);
    assert_eq!(counts, (12, 0));
    assert_eq!(w.peak.load(Ordering::SeqCst), 1);
}

#[test]
fn a_worker_that_joins_mid_batch_takes_work() {
    let dir = tempfile::tempdir().unwrap();
    let b = batch(dir.path(), 30);
    let first = Fake::new("first", 1, |_| Act::Slow(Duration::from_millis(20)));
    let late = Fake::new("late", 1, |_| Act::Slow(Duration::from_millis(20)));
    let (tx, rx) = mpsc::channel::<Arc<dyn Worker>>();
    let mut tx = Some(tx);
    let mut done = 0;
    let (events, counts) = run_joining(
        &b,
        std::slice::from_ref(&first),
        Joins {
            rx,
            wait: Duration::from_secs(5),
        },
        &config(dir.path()),
        |e| {
            if matches!(e, Event::Done { .. }) {
                done += 1;
                if done == 3 {
                    if let Some(tx) = tx.take() {
                        tx.send(late.clone() as Arc<dyn Worker>).unwrap();
                    }
                }
            }
        },
    );
    assert_each_ends_once(&events, 30, counts);
    assert_eq!(counts, (30, 0));
    assert!(!late.seen().is_empty(), "the late worker took nothing");
    assert_eq!(first.seen().len() + late.seen().len(), 30);
}

#[test]
fn a_worker_that_leaves_finishes_what_it_holds_and_takes_nothing_more() {
    let dir = tempfile::tempdir().unwrap();
    let b = batch(dir.path(), 30);
    let staying = Fake::new("staying", 1, |_| Act::Slow(Duration::from_millis(15)));
    let window = Window::new(1);
    let leaving = Fake::granting("leaving", 1, window.clone(), |_| {
        Act::Slow(Duration::from_millis(15))
    });
    let mut held_when_closed = None;
    let (events, counts) = run(
        &b,
        &[staying.clone(), leaving.clone()],
        &config(dir.path()),
        &CancelToken::new(),
        |e| {
            if let Event::Done { worker, .. } = e {
                if worker == "leaving" && held_when_closed.is_none() {
                    // What it saw by now, plus at most the one its slot already held.
                    held_when_closed = Some(leaving.seen().len());
                    window.close();
                }
            }
        },
    );
    assert_each_ends_once(&events, 30, counts);
    assert_eq!(counts, (30, 0));
    let at_close = held_when_closed.expect("the leaving worker did some work");
    assert!(
        leaving.seen().len() <= at_close + 1,
        "it took {} inputs after leaving at {at_close}",
        leaving.seen().len()
    );
    let (_, _, moved) = summary(&events);
    assert_eq!(
        moved, 0,
        "a worker that leaves finishes its inputs; none move"
    );
}

#[test]
fn with_no_worker_left_a_batch_waits_for_one_to_join() {
    let dir = tempfile::tempdir().unwrap();
    let b = batch(dir.path(), 6);
    let dying = Fake::new("dying", 1, |_| Act::Die);
    let rescue = Fake::new("rescue", 1, |_| Act::Echo);
    let (tx, rx) = mpsc::channel::<Arc<dyn Worker>>();
    let sender = {
        let rescue = rescue.clone();
        std::thread::spawn(move || {
            // Well after the only worker died.
            std::thread::sleep(Duration::from_millis(600));
            tx.send(rescue as Arc<dyn Worker>).unwrap();
        })
    };
    let (events, counts) = run_joining(
        &b,
        &[dying],
        Joins {
            rx,
            wait: Duration::from_secs(10),
        },
        &config(dir.path()),
        |_| {},
    );
    sender.join().unwrap();
    assert_each_ends_once(&events, 6, counts);
    assert_eq!(counts, (6, 0));
    assert!(endings(&events)
        .iter()
        .all(|e| e.1 == Ok("rescue".to_string())));
    assert_eq!(summary(&events).2, 1, "the dead worker's input moved");
}

#[test]
fn with_no_worker_left_and_none_joining_the_rest_fail_after_the_wait() {
    let dir = tempfile::tempdir().unwrap();
    let b = batch(dir.path(), 4);
    let dying = Fake::new("dying", 1, |_| Act::Die);
    // A sender stays, but nothing joins.
    let (tx, rx) = mpsc::channel::<Arc<dyn Worker>>();
    let start = Instant::now();
    let (events, counts) = run_joining(
        &b,
        &[dying],
        Joins {
            rx,
            wait: Duration::from_millis(400),
        },
        &config(dir.path()),
        |_| {},
    );
    let waited = start.elapsed();
    drop(tx);
    assert_each_ends_once(&events, 4, counts);
    assert_eq!(counts, (0, 4));
    assert!(endings(&events)
        .iter()
        .all(|e| e.1 == Err(ErrorKind::Remote)));
    assert!(
        waited >= Duration::from_millis(400),
        "gave up after {waited:?}"
    );
    assert!(waited < Duration::from_secs(10), "waited {waited:?}");
    // Once no sender is left, nobody waits.
    let (tx, rx) = mpsc::channel::<Arc<dyn Worker>>();
    drop(tx);
    let start = Instant::now();
    let (events, counts) = run_joining(
        &b,
        &[Fake::new("dying", 1, |_| Act::Die)],
        Joins {
            rx,
            wait: Duration::from_secs(30),
        },
        &config(dir.path()),
        |_| {},
    );
    assert_each_ends_once(&events, 4, counts);
    assert!(start.elapsed() < Duration::from_secs(10));
}
