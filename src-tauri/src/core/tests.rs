//! `Core` as the commands use it: batches through the engine, saving, settings, nodes.

use super::*;
use crate::jobs::JobEvent;
use crate::library::ImageState;
use image::{Rgb, RgbImage};
use prism_engine::codec::{EncodeOptions, Limits};
use prism_engine::exec::{process_bytes, WorkRequest};
use prism_engine::job::OutputFormat;
use prism_engine::ops::OpContext;
use prism_engine::ErrorKind;
use std::sync::mpsc;
use std::time::Duration;

// The end-to-end test's DNS server, shared.
#[path = "../../tests/common/dns.rs"]
mod dns;

struct Fixture {
    _dir: tempfile::TempDir,
    root: PathBuf,
    core: Arc<Core>,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let core = Core::new(&root.join("config"), &root.join("work")).unwrap();
    Fixture {
        _dir: dir,
        root,
        core,
    }
}

fn write_image(path: &Path, w: u32, h: u32, seed: u32) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    RgbImage::from_fn(w, h, |x, y| {
        Rgb([
            (x * 3 + seed) as u8,
            (y * 5 + seed * 7) as u8,
            ((x ^ y) + seed) as u8,
        ])
    })
    .save(path)
    .unwrap();
}

/// A sink of any event type that forwards to a receiver the test reads.
fn channel_sink<E: Send + 'static>() -> (Arc<dyn Fn(E) + Send + Sync>, mpsc::Receiver<E>) {
    let (tx, rx) = mpsc::channel();
    let tx = Mutex::new(tx);
    (Arc::new(move |e| drop(tx.lock().unwrap().send(e))), rx)
}

/// Every event up to and including the one `is_end` accepts.
fn collect_until<E>(rx: &mpsc::Receiver<E>, is_end: fn(&E) -> bool, what: &str) -> Vec<E> {
    let mut all = Vec::new();
    loop {
        let e = rx
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("{what}"));
        let end = is_end(&e);
        all.push(e);
        if end {
            return all;
        }
    }
}

fn sink() -> (EventSink, mpsc::Receiver<JobEvent>) {
    channel_sink()
}

/// Every event of one batch, up to and including `Finished`.
fn wait(rx: &mpsc::Receiver<JobEvent>) -> Vec<JobEvent> {
    collect_until(
        rx,
        |e| matches!(e, JobEvent::Finished { .. }),
        "the batch finishes",
    )
}

fn op(id: &str, pairs: &[(&str, &str)]) -> Op {
    Op::from_pairs(id, pairs.iter().copied()).unwrap()
}

/// What the CLI writes for `path` through `op` (the same function runs there).
fn cli_bytes(path: &Path, op: &Op) -> Vec<u8> {
    chain_bytes(path, std::slice::from_ref(op), OutputFormat::Same)
}

/// What the CLI writes for `path` through the chain `ops` (`--op A --op B`) in `format`.
fn chain_bytes(path: &Path, ops: &[Op], format: OutputFormat) -> Vec<u8> {
    let req = WorkRequest {
        bytes: std::fs::read(path).unwrap().into(),
        ops: Arc::from(ops),
        format,
        encode: EncodeOptions::default(),
        limits: Limits::default(),
    };
    process_bytes(&req, &OpContext::default()).unwrap().bytes
}

#[test]
fn process_all_uses_overrides_and_matches_the_engine() {
    let f = fixture();
    let (a, b, c) = (
        f.root.join("in/a.png"),
        f.root.join("in/sub/b.jpg"),
        f.root.join("other/a.png"),
    );
    write_image(&a, 64, 48, 1);
    write_image(&b, 80, 40, 2);
    write_image(&c, 30, 30, 3);
    let added = f.core.add_paths(&[f.root.join("in"), c.clone()]);
    assert_eq!(added.added.len(), 3);
    let ids: Vec<_> = added.added.iter().map(|v| v.id).collect();
    let global = op("color-manipulation", &[("mode", "sepia")]);
    let own = op("histogram-equalization", &[]);
    f.core.set_global_chain(vec![global.clone()]).unwrap();
    f.core
        .set_override(ids[1], Some(vec![own.clone()]))
        .unwrap();

    let (s, rx) = sink();
    let started = f.core.process(Target::All, s).unwrap();
    assert_eq!(started.ids, ids);
    let events = wait(&rx);
    assert!(matches!(events[0], JobEvent::Started { total: 3, .. }));
    let running: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            JobEvent::Running { id, worker } => Some((*id, worker.as_str())),
            _ => None,
        })
        .collect();
    assert_eq!(running.len(), 3, "{events:?}");
    assert!(running.iter().all(|(_, w)| *w == "local"));
    match events.last().unwrap() {
        JobEvent::Finished {
            done: 3,
            failed: 0,
            cancelled: false,
            ..
        } => {}
        e => panic!("{e:?}"),
    }
    assert!(events.contains(&JobEvent::Progress { done: 3, total: 3 }));

    // Each output is byte-identical to the engine's (the CLI's) for the op it used,
    // and two sources named a.png do not collide.
    let lib = lock(&f.core.library);
    for (id, src, used) in [
        (ids[0], &a, &global),
        (ids[1], &b, &own),
        (ids[2], &c, &global),
    ] {
        let e = lib.get(id).unwrap();
        assert_eq!(e.state, ImageState::Done);
        let r = e.result.as_ref().unwrap();
        assert_eq!(r.ops, std::slice::from_ref(used));
        assert_eq!(std::fs::read(&r.output).unwrap(), cli_bytes(src, used));
    }
    let rev = lib.get(ids[1]).unwrap().result.as_ref().unwrap().rev;
    drop(lib);
    // The result preview is served by id and rev; a stale rev is not.
    assert!(f.core.pixels(PixelRequest::Result(ids[1], rev)).is_ok());
    assert!(f
        .core
        .pixels(PixelRequest::ResultThumb(ids[1], rev))
        .is_ok());
    assert!(matches!(
        f.core.pixels(PixelRequest::Result(ids[1], rev + 100)),
        Err(AppError::NoResult(_))
    ));
    assert!(f.core.pixels(PixelRequest::Thumb(ids[0])).is_ok());

    // Save all: names from source and op, inside "Processed Images", never over.
    let dest = f.root.join("dest");
    std::fs::create_dir(&dest).unwrap();
    let report = f.core.save_all(&dest, OnExists::Rename).unwrap();
    let names: Vec<_> = report
        .files
        .iter()
        .map(|p| {
            Path::new(p)
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    assert_eq!(
        names,
        [
            "a-color-manipulation.png",
            "b-histogram-equalization.jpg",
            "a-color-manipulation (2).png"
        ]
    );
    assert!(report.folder.ends_with("Processed Images"));
    assert_eq!(
        std::fs::read(&report.files[1]).unwrap(),
        cli_bytes(&b, &own)
    );
    let again = f.core.save_all(&dest, OnExists::Rename).unwrap();
    assert!(again.files[0].ends_with("a-color-manipulation (3).png"));
    // Save one, with the name the dialog proposes.
    let name = f.core.suggested_name(ids[0]).unwrap();
    assert_eq!(name, "a-color-manipulation.png");
    let one = f.core.save_one(ids[0], &dest.join(&name)).unwrap();
    assert_eq!(std::fs::read(one).unwrap(), cli_bytes(&a, &global));
}

#[test]
fn a_bad_file_fails_alone_and_retry_takes_only_it() {
    let f = fixture();
    let good = f.root.join("in/good.png");
    let bad = f.root.join("in/bad.png");
    write_image(&good, 20, 20, 0);
    std::fs::write(&bad, b"\x89PNG\r\n\x1a\ntruncated").unwrap();
    let ids: Vec<_> = f
        .core
        .add_paths(&[good.clone(), bad.clone()])
        .added
        .iter()
        .map(|v| v.id)
        .collect();
    let (s, rx) = sink();
    f.core.process(Target::All, s).unwrap();
    let events = wait(&rx);
    let failed: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            JobEvent::Failed { id, kind, hint, .. } => Some((*id, *kind, hint.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].0, ids[1]);
    assert_eq!(failed[0].1, ErrorKind::BadInput);
    assert!(failed[0].2.contains("re-save"));
    assert_eq!(lock(&f.core.library).failed_ids(), vec![ids[1]]);

    // Retry failed: only the bad one runs again.
    std::fs::copy(&good, &bad).unwrap();
    let (s, rx) = sink();
    let started = f.core.process(Target::Failed, s).unwrap();
    assert_eq!(started.ids, vec![ids[1]]);
    let events = wait(&rx);
    assert!(matches!(
        events.last().unwrap(),
        JobEvent::Finished {
            done: 1,
            failed: 0,
            ..
        }
    ));
    assert!(lock(&f.core.library).failed_ids().is_empty());
    let (s, _rx) = sink();
    assert!(matches!(
        f.core.process(Target::Failed, s),
        Err(AppError::Nothing(_))
    ));
}

#[test]
fn a_reloaded_page_attaches_to_the_running_batch_and_misses_nothing() {
    let f = fixture();
    for i in 0..12 {
        write_image(&f.root.join(format!("in/{i:02}.png")), 800, 600, i);
    }
    f.core.add_paths(&[f.root.join("in")]);
    // Denoise is the slow op: the batch is still running after its first image.
    f.core.set_global_chain(vec![op("denoise", &[])]).unwrap();
    assert!(f.core.attach_job(sink().0).is_none(), "nothing runs yet");
    let (first, rx1) = sink();
    let started = f.core.process(Target::All, first).unwrap();
    // The first page hears an image end, then is reloaded.
    while !matches!(
        rx1.recv_timeout(Duration::from_secs(60)).expect("an event"),
        JobEvent::Done { .. }
    ) {}
    let (second, rx2) = sink();
    let attached = f.core.attach_job(second).expect("the batch still runs");
    assert_eq!(attached.job.job, started.job);
    assert_eq!(attached.job.ids, started.ids);
    assert!(attached.job.done >= 1);
    let after = wait(&rx2);
    // Everything sent before attaching went to the first page, everything after to the
    // second, and the counts the second got cover exactly the first's.
    let dones = |events: &[JobEvent]| {
        events
            .iter()
            .filter(|e| matches!(e, JobEvent::Done { .. }))
            .count()
    };
    let before: Vec<JobEvent> = rx1.try_iter().collect();
    assert_eq!(1 + dones(&before), attached.job.done);
    let JobEvent::Finished { done, failed, .. } = after.last().unwrap().clone() else {
        panic!("no finish");
    };
    assert_eq!((done, failed), (12, 0));
    assert_eq!(attached.job.done + dones(&after), 12);
    // The images came as they were: those already done show it.
    let shown_done = attached
        .images
        .iter()
        .filter(|v| v.state == ImageState::Done)
        .count();
    assert!(shown_done >= attached.job.done, "{shown_done}");
    assert!(f.core.attach_job(sink().0).is_none(), "it ended");
}

#[test]
fn cancel_stops_the_batch_and_marks_the_rest_cancelled() {
    let f = fixture();
    for i in 0..24 {
        write_image(&f.root.join(format!("in/{i:02}.png")), 900, 700, i);
    }
    f.core.add_paths(&[f.root.join("in")]);
    let (s, rx) = sink();
    let started = f.core.process(Target::All, s).unwrap();
    // One batch at a time.
    let (s2, _rx2) = sink();
    assert!(matches!(
        f.core.process(Target::All, s2),
        Err(AppError::Busy)
    ));
    assert!(f.core.remove_images(&started.ids[..1]).is_err());
    // A batch on this machine alone leaves node connections free to close.
    assert_eq!(f.core.close_connections().unwrap(), 0);
    assert!(!f.core.cancel(started.job + 1));
    assert!(f.core.cancel(started.job));
    let events = wait(&rx);
    let JobEvent::Finished {
        done,
        failed,
        cancelled,
        ..
    } = events.last().unwrap().clone()
    else {
        panic!("no finish");
    };
    assert!(cancelled);
    assert_eq!(done + failed, 24);
    assert!(failed > 0, "cancel came too late to stop anything");
    let lib = lock(&f.core.library);
    let cancelled_ids = lib.failed_ids();
    assert_eq!(cancelled_ids.len(), failed);
    for id in cancelled_ids {
        assert!(matches!(
            lib.get(id).unwrap().state,
            ImageState::Failed {
                kind: ErrorKind::Cancelled,
                ..
            }
        ));
    }
    drop(lib);
    // The slot is free again once Finished was sent.
    assert!(f.core.snapshot().job.is_none());
    assert!(f.core.remove_images(&started.ids[..1]).is_ok());
}

#[test]
fn nothing_to_do_and_unknown_ids_are_errors() {
    let f = fixture();
    let (s, _rx) = sink();
    assert!(matches!(
        f.core.process(Target::All, s.clone()),
        Err(AppError::Nothing(_))
    ));
    assert!(matches!(
        f.core.process(Target::Ids(vec![7]), s),
        Err(AppError::UnknownImage(7))
    ));
    assert!(matches!(
        f.core.save_all(&f.root, OnExists::Rename),
        Err(AppError::Nothing(_))
    ));
    assert!(f.core.set_override(3, None).is_err());
}

#[test]
fn chains_run_as_pipelines_and_presets_save_apply_export_and_import() {
    let f = fixture();
    let (a, b) = (f.root.join("in/a.jpg"), f.root.join("in/b.png"));
    write_image(&a, 64, 48, 1);
    write_image(&b, 50, 40, 2);
    let ids: Vec<_> = f
        .core
        .add_paths(&[a.clone(), b.clone()])
        .added
        .iter()
        .map(|v| v.id)
        .collect();
    let global = vec![
        op("edge-detection", &[("low", "40"), ("high", "120")]),
        op("dilation", &[("shape", "cross")]),
    ];
    let own = vec![
        op("erosion", &[]),
        op("color-manipulation", &[("mode", "invert")]),
    ];
    f.core.set_global_chain(global.clone()).unwrap();
    f.core.set_override(ids[1], Some(own.clone())).unwrap();
    assert!(f.core.set_global_chain(vec![]).is_err(), "an empty chain");
    assert!(f.core.set_override(ids[1], Some(vec![])).is_err());
    f.core
        .update_settings(SettingsPatch {
            output_format: Some("png".into()),
            ..Default::default()
        })
        .unwrap();
    let png = OutputFormat::from_name("png").unwrap();
    let (s, rx) = sink();
    f.core.process(Target::All, s).unwrap();
    wait(&rx);
    {
        let lib = lock(&f.core.library);
        for (id, src, chain) in [(ids[0], &a, &global), (ids[1], &b, &own)] {
            let r = lib.get(id).unwrap().result.clone().unwrap();
            assert_eq!(&r.ops, chain);
            // Bit for bit what `prism process --op A --op B --format png` writes.
            assert_eq!(
                std::fs::read(&r.output).unwrap(),
                chain_bytes(src, chain, png)
            );
        }
    }
    assert_eq!(
        f.core.suggested_name(ids[0]).unwrap(),
        "a-edge-detection+dilation.png"
    );

    // Save as a preset; change the chain and format; apply it back.
    let s = f.core.save_preset(" thick edges ").unwrap();
    assert_eq!(s.presets.len(), 1);
    assert_eq!(s.presets[0].name(), "thick edges");
    assert_eq!(s.presets[0].steps(), &global[..]);
    assert!(f.core.save_preset("  ").is_err(), "an empty name");
    f.core.set_global_chain(vec![op("sift", &[])]).unwrap();
    f.core
        .update_settings(SettingsPatch {
            output_format: Some("same".into()),
            ..Default::default()
        })
        .unwrap();
    let s = f.core.apply_preset("thick edges").unwrap();
    assert_eq!(s.global_ops, global);
    assert_eq!(s.output_format, "png");
    assert!(f.core.apply_preset("nope").is_err());

    // Export: the engine's preset JSON, which reads back the same.
    let file = f.root.join("presets/thick.json");
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    f.core.export_preset("thick edges", &file).unwrap();
    let exported = Preset::from_file(&file).unwrap();
    assert_eq!(exported.steps(), &global[..]);
    assert_eq!(exported.format(), png);

    // A bad file changes nothing and says which step is wrong.
    let bad = f.root.join("presets/bad.json");
    std::fs::write(
        &bad,
        r#"{"version":1,"name":"bad","steps":[{"op":"erosion","params":{}},{"op":"erosion","params":{"size":1000}}]}"#,
    )
    .unwrap();
    let before = f.core.snapshot().settings;
    let e = f.core.import_preset(&bad).unwrap_err();
    assert!(e.to_string().starts_with("step 2: erosion.size"), "{e}");
    assert_eq!(f.core.snapshot().settings, before);
    assert!(f
        .core
        .import_preset(&f.root.join("presets/none.json"))
        .is_err());

    // Delete, then import the exported file: it is back, and persisted.
    let s = f.core.delete_preset("thick edges").unwrap();
    assert!(s.presets.is_empty());
    assert!(f.core.delete_preset("thick edges").is_err());
    let (name, s) = f.core.import_preset(&file).unwrap();
    assert_eq!(name, "thick edges");
    assert_eq!(s.presets, vec![exported]);
    let again = Core::new(&f.root.join("config"), &f.root.join("work2")).unwrap();
    assert_eq!(again.snapshot().settings.presets, s.presets);
    assert_eq!(again.snapshot().settings.global_ops, global);
}

#[test]
fn settings_changes_persist() {
    let f = fixture();
    let s = f
        .core
        .update_settings(SettingsPatch {
            output_format: Some("png".into()),
            threads: Some(2),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(s.output_format, "png");
    assert!(f
        .core
        .update_settings(SettingsPatch {
            output_format: Some("gif".into()),
            ..Default::default()
        })
        .is_err());
    let again = Core::new(&f.root.join("config"), &f.root.join("work2")).unwrap();
    assert_eq!(again.snapshot().settings.threads, 2);
    assert_eq!(again.snapshot().settings.output_format, "png");
}

#[test]
fn dialogs_start_where_the_user_last_added_or_saved() {
    let f = fixture();
    let pictures = f.root.join("Pictures");
    let home = f.root.join("home");
    std::fs::create_dir_all(&home).unwrap();
    // Nothing used yet: Pictures when there is one, else home.
    let fallbacks = [pictures.clone(), home.clone()];
    assert_eq!(f.core.dialog_start(&fallbacks), Some(home.clone()));
    std::fs::create_dir_all(&pictures).unwrap();
    assert_eq!(f.core.dialog_start(&fallbacks), Some(pictures.clone()));
    // Adding a file: its folder.
    let src = f.root.join("shoot/day1/a.png");
    write_image(&src, 20, 10, 1);
    f.core.add_paths(std::slice::from_ref(&src));
    let day1 = f.root.join("shoot/day1").canonicalize().unwrap();
    assert_eq!(f.core.dialog_start(&fallbacks), Some(day1.clone()));
    // Adding a folder: the folder it is in, to pick its siblings next.
    write_image(&f.root.join("shoot/day2/b.png"), 20, 10, 2);
    f.core.add_paths(&[f.root.join("shoot/day2")]);
    let shoot = f.root.join("shoot").canonicalize().unwrap();
    assert_eq!(f.core.dialog_start(&fallbacks), Some(shoot.clone()));
    // Nothing added (a path that is not there): unchanged.
    f.core.add_paths(&[f.root.join("nowhere/x.png")]);
    assert_eq!(f.core.dialog_start(&fallbacks), Some(shoot.clone()));
    // Saving all: the folder chosen; saving one: the folder it went into.
    let (s, rx) = sink();
    f.core.process(Target::All, s).unwrap();
    wait(&rx);
    let out = f.root.join("out");
    std::fs::create_dir_all(&out).unwrap();
    f.core.save_all(&out, OnExists::Rename).unwrap();
    let out = out.canonicalize().unwrap();
    assert_eq!(f.core.dialog_start(&fallbacks), Some(out.clone()));
    let single = f.root.join("single");
    std::fs::create_dir_all(&single).unwrap();
    f.core.save_one(0, &single.join("x.png")).unwrap();
    let single = single.canonicalize().unwrap();
    assert_eq!(f.core.dialog_start(&fallbacks), Some(single.clone()));
    // Kept with the settings; a folder since removed falls back.
    let again = Core::new(&f.root.join("config"), &f.root.join("work2")).unwrap();
    assert_eq!(again.dialog_start(&fallbacks), Some(single.clone()));
    std::fs::remove_dir_all(&single).unwrap();
    assert_eq!(again.dialog_start(&fallbacks), Some(pictures));
}

mod remote {
    use super::*;
    use crate::remote::{ConnEvent, ConnSink, NodeStatus};
    use crate::settings::{EngineMode, RetryConfig};
    use prism_engine::remote::server::{IdentitySource, NodeConfig, NodeLimits, RunningNode};

    fn conn_sink() -> (ConnSink, mpsc::Receiver<ConnEvent>) {
        channel_sink()
    }

    fn wait_conn(rx: &mpsc::Receiver<ConnEvent>) -> Vec<ConnEvent> {
        collect_until(
            rx,
            |e| matches!(e, ConnEvent::Finished { .. }),
            "connect ends",
        )
    }

    fn last_status(events: &[ConnEvent], address: &str) -> NodeStatus {
        events
            .iter()
            .rev()
            .find_map(|e| match e {
                ConnEvent::Status { address: a, status } if a == address => Some(status.clone()),
                _ => None,
            })
            .expect("a status")
    }

    fn patch(engine: EngineMode, retry: RetryConfig) -> SettingsPatch {
        SettingsPatch {
            engine: Some(engine),
            retry: Some(retry),
            ..Default::default()
        }
    }

    #[test]
    fn trust_on_first_use_then_token_then_a_batch_on_the_node() {
        let f = fixture();
        let node = RunningNode::start(NodeConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            identity: IdentitySource::DataDir(f.root.join("node")),
            metrics_listen: None,
            threads: 1,
            limits: NodeLimits::default(),
        })
        .unwrap();
        let address = node.addr.to_string();
        let token = std::fs::read_to_string(&node.token_path).unwrap();
        let retry = RetryConfig {
            attempts: 2,
            delay_ms: 50,
            ..RetryConfig::default()
        };
        f.core
            .update_settings(patch(EngineMode::Remote, retry))
            .unwrap();
        let src = f.root.join("in/a.png");
        write_image(&src, 60, 40, 9);
        f.core.add_paths(std::slice::from_ref(&src));
        // Remote mode with no node connected says what to do.
        let (s, _rx) = sink();
        let e = f.core.process(Target::All, s).unwrap_err();
        assert_eq!(e.kind(), "remote");
        assert!(e.hint().contains("Engine panel"));

        f.core.add_node(&address).unwrap();
        assert!(f.core.add_node(&address).is_err(), "listed twice");
        // First contact: the fingerprint is shown, nothing is trusted or sent.
        let (cs, rx) = conn_sink();
        f.core.connect_nodes(cs).unwrap();
        let events = wait_conn(&rx);
        let NodeStatus::Untrusted { fingerprint } = last_status(&events, &address) else {
            panic!("{events:?}");
        };
        assert_eq!(fingerprint, node.fingerprint.to_string());
        assert!(matches!(
            events.last(),
            Some(ConnEvent::Finished { connected: 0 })
        ));

        // Trusted, but no token yet.
        f.core.trust_node(&address, &fingerprint).unwrap();
        let (cs, rx) = conn_sink();
        f.core.connect_nodes(cs).unwrap();
        let NodeStatus::Failed { hint, .. } = last_status(&wait_conn(&rx), &address) else {
            panic!("connected without a token");
        };
        assert!(hint.contains("token"));

        // A wrong token is refused at once, without retries.
        f.core.set_token(&address, "wrong").unwrap();
        let (cs, rx) = conn_sink();
        f.core.connect_nodes(cs).unwrap();
        let events = wait_conn(&rx);
        assert!(!events
            .iter()
            .any(|e| matches!(e, ConnEvent::AttemptFailed { .. })));
        assert!(matches!(
            last_status(&events, &address),
            NodeStatus::Failed { .. }
        ));

        // The right token: connected, and the batch runs on the node.
        f.core.set_token(&address, &token).unwrap();
        let views = f.core.node_views();
        assert!(views[0].has_token);
        assert_eq!(views[0].fingerprint.as_deref(), Some(fingerprint.as_str()));
        let (cs, rx) = conn_sink();
        f.core.connect_nodes(cs).unwrap();
        let events = wait_conn(&rx);
        assert!(
            matches!(
                last_status(&events, &address),
                NodeStatus::Connected { cores: 1, .. }
            ),
            "{events:?}"
        );
        let (s, rx) = sink();
        f.core.process(Target::All, s).unwrap();
        let events = wait(&rx);
        let done: Vec<_> = events
            .iter()
            .filter_map(|e| match e {
                JobEvent::Done { result, .. } => Some(result.worker.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(done, vec![address.clone()]);
        let output = lock(&f.core.library).entries()[0]
            .result
            .as_ref()
            .unwrap()
            .output
            .clone();
        let global = f.core.snapshot().settings.global_ops;
        assert_eq!(std::fs::read(output).unwrap(), cli_bytes(&src, &global[0]));

        // Close: the node is told goodbye, and remote batches need a connection again.
        assert_eq!(f.core.close_connections().unwrap(), 1);
        assert_eq!(f.core.node_views()[0].status, NodeStatus::Disconnected);
        let (s, _rx) = sink();
        assert!(f.core.process(Target::All, s).is_err());
        node.shutdown();
    }

    #[test]
    fn an_unreachable_node_shows_each_attempt() {
        let f = fixture();
        // A UDP port nobody listens on: QUIC gets no answer.
        let port = std::net::UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let address = format!("127.0.0.1:{port}");
        // The attempt's timeout is the app's setting, passed to the engine's client.
        let retry = RetryConfig {
            attempts: 3,
            delay_ms: 10,
            timeout_ms: 300,
        };
        f.core
            .update_settings(patch(EngineMode::Remote, retry))
            .unwrap();
        f.core.add_node(&address).unwrap();
        f.core.trust_node(&address, &"ab".repeat(32)).unwrap();
        f.core.set_token(&address, "t").unwrap();
        let (cs, rx) = conn_sink();
        let t0 = std::time::Instant::now();
        f.core.connect_nodes(cs).unwrap();
        let events = wait_conn(&rx);
        let took = t0.elapsed();
        // 3 x 300 ms and two short pauses; the engine's default alone is 5 s an attempt.
        assert!(
            took >= Duration::from_millis(900) && took < Duration::from_secs(4),
            "{took:?}"
        );
        let attempts: Vec<_> = events
            .iter()
            .filter_map(|e| match e {
                ConnEvent::Status {
                    status: NodeStatus::Connecting { attempt, attempts },
                    ..
                } => Some((*attempt, *attempts)),
                _ => None,
            })
            .collect();
        assert_eq!(attempts, vec![(1, 3), (2, 3), (3, 3)]);
        // Every attempt's failure is told as it happens, the last one too.
        let failed: Vec<_> = events
            .iter()
            .filter_map(|e| match e {
                ConnEvent::AttemptFailed {
                    attempt,
                    reason,
                    retry_in_ms,
                    ..
                } => Some((*attempt, reason.clone(), *retry_in_ms)),
                _ => None,
            })
            .collect();
        assert_eq!(
            failed,
            [
                (1, "no answer within 300 ms".to_string(), Some(10)),
                (2, "no answer within 300 ms".to_string(), Some(10)),
                (3, "no answer within 300 ms".to_string(), None)
            ]
        );
        let NodeStatus::Failed { message, hint } = last_status(&events, &address) else {
            panic!("{events:?}");
        };
        assert!(message.contains("after 3 attempt(s)"), "{message}");
        assert!(hint.contains("prism node"));
        // Removing the node forgets its pin and token.
        assert!(f.core.remove_node(&address).unwrap().is_empty());
        assert!(f.core.tokens().unwrap().is_empty());
    }

    use super::dns;
    use crate::remote::{MemberStatus, MemberView};
    use crate::settings::FleetConfig;
    use std::net::Ipv4Addr;

    /// A node of a fleet: one thread, the fleet's identity, on `ip:port`.
    fn member(identity: &Path, ip: Ipv4Addr, port: u16) -> RunningNode {
        RunningNode::start(NodeConfig {
            listen: std::net::SocketAddr::new(ip.into(), port),
            identity: IdentitySource::Fixed(identity.to_path_buf()),
            metrics_listen: None,
            threads: 1,
            limits: NodeLimits::default(),
        })
        .unwrap()
    }

    fn state_of(members: &[MemberView], address: &str) -> Option<MemberStatus> {
        members
            .iter()
            .find(|m| m.address == address)
            .map(|m| m.status.clone())
    }

    /// Waits for a members event of `fleet` that `ok` accepts; returns its members.
    fn wait_members(
        rx: &mpsc::Receiver<ConnEvent>,
        fleet: &str,
        ok: impl Fn(&[MemberView]) -> bool,
        what: &str,
    ) -> Vec<MemberView> {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match rx.recv_timeout(left) {
                Ok(ConnEvent::Members {
                    address, members, ..
                }) if address == fleet && ok(&members) => return members,
                Ok(_) => {}
                Err(_) => panic!("timed out waiting for {what}"),
            }
        }
    }

    #[test]
    fn a_fleet_name_is_one_entry_whose_members_join_and_drain_during_a_batch() {
        let f = fixture();
        let identity = f.root.join("fleet-identity");
        let fp = prism_engine::remote::tls::create_identity(&identity).unwrap();
        let ip = |last: u8| Ipv4Addr::new(127, 0, 23, last);
        let first = member(&identity, ip(2), 0);
        let port = first.addr.port();
        let second = member(&identity, ip(3), port);
        let dns = dns::Dns::start();
        // .5 is listed but nothing listens there.
        dns.set("pool", &[ip(2), ip(3), ip(5)]);
        let address = format!("{}:{port}", dns::Dns::host("pool"));
        let at = |last: u8| format!("{}:{port}", ip(last));
        let retry = RetryConfig {
            attempts: 2,
            delay_ms: 50,
            timeout_ms: 600,
        };
        f.core
            .update_settings(SettingsPatch {
                engine: Some(EngineMode::Remote),
                retry: Some(retry),
                fleet: Some(FleetConfig {
                    resolve_every_ms: 250,
                    dns_server: Some(dns.addr.to_string()),
                }),
                ..Default::default()
            })
            .unwrap();
        // A name that is no DNS name is refused; a fleet name is one entry.
        assert!(f.core.add_node("a..b:7443").is_err());
        let views = f.core.add_node(&address).unwrap();
        assert!(views[0].fleet && views[0].members.is_empty());

        // First contact: the certificate the members share is shown, once, for the fleet.
        let (cs, rx) = conn_sink();
        f.core.connect_nodes(cs).unwrap();
        let NodeStatus::Untrusted { fingerprint } = last_status(&wait_conn(&rx), &address) else {
            panic!("not asked to trust the fleet");
        };
        assert_eq!(fingerprint, fp.to_string());
        f.core.trust_node(&address, &fingerprint).unwrap();
        let token = std::fs::read_to_string(&first.token_path).unwrap();
        f.core.set_token(&address, &token).unwrap();

        let (cs, rx) = conn_sink();
        f.core.connect_nodes(cs).unwrap();
        let events = wait_conn(&rx);
        assert!(
            matches!(
                last_status(&events, &address),
                NodeStatus::Connected { cores: 2, .. }
            ),
            "{events:?}"
        );
        assert!(matches!(
            events.last(),
            Some(ConnEvent::Finished { connected: 1 })
        ));
        // Each member was told connecting, then where it stands.
        let told: Vec<MemberView> = events
            .iter()
            .filter_map(|e| match e {
                ConnEvent::Members { members, .. } => Some(members.clone()),
                _ => None,
            })
            .flatten()
            .collect();
        assert!(told
            .iter()
            .any(|m| m.address == at(5) && m.status == MemberStatus::Connecting));
        let view = f.core.node_views().remove(0);
        assert_eq!(view.status, f.core.remote.status(&address));
        assert_eq!(
            state_of(&view.members, &at(2)),
            Some(MemberStatus::Ready { cores: 1 })
        );
        assert_eq!(
            state_of(&view.members, &at(3)),
            Some(MemberStatus::Ready { cores: 1 })
        );
        assert!(
            matches!(
                state_of(&view.members, &at(5)),
                Some(MemberStatus::Unreachable { .. })
            ),
            "{view:?}"
        );

        // A batch long enough to change DNS in the middle of it.
        let n = 24;
        for i in 0..n {
            write_image(&f.root.join(format!("fleet/{i:02}.png")), 160, 160, i);
        }
        f.core.add_paths(&[f.root.join("fleet")]);
        f.core
            .set_global_chain(vec![op("denoise", &[("search", "15")])])
            .unwrap();
        let (s, jobs) = sink();
        f.core.process(Target::All, s).unwrap();
        let first_done = collect_until(
            &jobs,
            |e| matches!(e, JobEvent::Done { .. }),
            "a first image done",
        );
        // A scale-up and a scale-down at once: .4 appears, .2 leaves DNS.
        let third = member(&identity, ip(4), port);
        dns.set("pool", &[ip(3), ip(4), ip(5)]);
        wait_members(
            &rx,
            &address,
            |m| state_of(m, &at(4)) == Some(MemberStatus::Ready { cores: 1 }),
            ".4 joining",
        );
        let rest = wait(&jobs);
        let events: Vec<JobEvent> = first_done.into_iter().chain(rest).collect();
        let done: Vec<String> = events
            .iter()
            .filter_map(|e| match e {
                JobEvent::Done { result, .. } => Some(result.worker.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(done.len(), n as usize, "{events:?}");
        assert!(matches!(
            events.last(),
            Some(JobEvent::Finished { failed: 0, .. })
        ));
        // The member that joined mid-batch took work; the one that left finished its
        // images (none failed) and is gone from the list.
        assert!(done.contains(&at(4)), "{done:?}");
        assert!(done.contains(&at(3)), "{done:?}");
        wait_members(
            &rx,
            &address,
            |m| state_of(m, &at(2)).is_none(),
            ".2 drained and gone",
        );

        // Closing says goodbye to every member and forgets them.
        assert_eq!(f.core.close_connections().unwrap(), 1);
        let view = f.core.node_views().remove(0);
        assert_eq!(view.status, NodeStatus::Disconnected);
        assert!(view.members.is_empty());
        for n in [first, second, third] {
            n.shutdown();
        }
    }
}

#[test]
fn a_grid_thumbnail_brings_the_display_rendition_along() {
    let f = fixture();
    let path = f.root.join("in/wide.png");
    write_image(&path, 3000, 1000, 1);
    let id = f.core.add_paths(&[path]).added[0].id;
    assert!(f.core.previews.get(PixelRequest::Display(id)).is_none());
    let thumb = f.core.pixels(PixelRequest::Thumb(id)).unwrap();
    let made = f
        .core
        .previews
        .get(PixelRequest::Display(id))
        .expect("made with the thumbnail");
    // Opening the pane takes that one, not a new render.
    let shown = f.core.pixels(PixelRequest::Display(id)).unwrap();
    assert!(Arc::ptr_eq(&made, &shown));
    let size = |b: &[u8]| {
        let p = prism_engine::codec::decode(b, &Limits::default())
            .unwrap()
            .frame
            .pixels;
        (p.width(), p.height())
    };
    assert_eq!(size(&thumb), (320, 107));
    // Halved until it fits the display box: 3000 -> 1500 -> 750.
    assert_eq!(size(&shown), (750, 250));
    assert_eq!(
        size(&f.core.pixels(PixelRequest::Source(id)).unwrap()),
        (2048, 683)
    );
}

#[test]
fn the_readout_and_the_difference_come_from_the_full_resolution_images() {
    use prism_engine::Pixels;
    let f = fixture();
    let path = f.root.join("in/p.png");
    write_image(&path, 2600, 40, 4);
    let id = f.core.add_paths(std::slice::from_ref(&path)).added[0].id;
    f.core
        .set_global_chain(vec![op("color-manipulation", &[("mode", "invert")])])
        .unwrap();
    // Before any result: the original alone, and no difference to show.
    let r = f.core.readout(id, None, 0.5, 0.5).unwrap();
    assert_eq!((r.original.x, r.original.y), (1300, 20));
    assert_eq!((r.original.width, r.original.height), (2600, 40));
    assert!(r.result.is_none());
    assert!(matches!(
        f.core.pixels(PixelRequest::Diff(id, 1, 1)),
        Err(AppError::NoResult(_))
    ));
    let (s, rx) = sink();
    f.core.process(Target::All, s).unwrap();
    wait(&rx);
    let rev = lock(&f.core.library)
        .get(id)
        .unwrap()
        .result
        .as_ref()
        .unwrap()
        .rev;
    // Column 1234 of 2600: a pixel the display rendition (650 wide) does not hold alone.
    let u = 1234.5 / 2600.0;
    let r = f.core.readout(id, Some(rev), u, 0.5).unwrap();
    let x = 1234u32;
    let want = [
        (x * 3 + 4) as u8,
        (20 * 5 + 4 * 7) as u8,
        ((x ^ 20) + 4) as u8,
    ];
    assert_eq!(r.original.x, x);
    assert_eq!(r.original.values, want);
    let res = r.result.expect("the result's pixel");
    assert_eq!(res.values, want.map(|v| 255 - v));
    assert!(f.core.frames.holds(FrameKey { id, rev: Some(rev) }));
    // |v - (255 - v)| per channel, saturated at 16x; shown at display size.
    let diff = f.core.pixels(PixelRequest::Diff(id, rev, 1)).unwrap();
    let d = prism_engine::codec::decode(&diff, &Limits::default())
        .unwrap()
        .frame
        .pixels;
    assert_eq!((d.width(), d.height()), (650, 10));
    let full = compare::difference(
        &f.core.frames(id, None).unwrap().0.pixels,
        &f.core.frames(id, Some(rev)).unwrap().1.unwrap().pixels,
        16,
    )
    .unwrap();
    let Pixels::Rgb(full) = full else {
        panic!("colour")
    };
    let p = full.get_pixel(x, 20).0;
    for c in 0..3 {
        assert_eq!(
            p[c],
            ((want[c] as i32 - (255 - want[c]) as i32).unsigned_abs() * 16).min(255) as u8
        );
    }
    // A removed image's frames go with it.
    f.core.remove_images(&[id]).unwrap();
    assert!(!f.core.frames.holds(FrameKey { id, rev: None }));
}

#[cfg(target_os = "linux")]
#[test]
fn batch_threads_run_at_a_lower_priority_than_the_window() {
    // SAFETY: reads the calling thread's nice value only.
    let nice = || unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) };
    let base = nice();
    // The hook the batch worker's threads run, on a thread of the test's own.
    let lowered = std::thread::spawn(move || {
        background_priority();
        nice()
    })
    .join()
    .unwrap();
    // (A test already run at nice 10 or more cannot go back up to 10.)
    assert_eq!(lowered, base.max(10));
    assert_eq!(nice(), base, "only the calling thread is lowered");
}

#[test]
fn a_live_preview_runs_the_latest_ops_on_the_display_size_original() {
    let f = fixture();
    let path = f.root.join("in/p.png");
    // Flat colour: the JPEG of the preview keeps it within a step or two.
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    RgbImage::from_pixel(2600, 40, Rgb([200, 60, 10]))
        .save(&path)
        .unwrap();
    let id = f.core.add_paths(&[path]).added[0].id;
    assert!(matches!(
        f.core.set_live(id + 1, vec![op("erosion", &[])], 650, 10),
        Err(AppError::UnknownImage(_))
    ));
    assert!(matches!(
        f.core.set_live(id, vec![], 650, 10),
        Err(AppError::BadRequest(_))
    ));
    let first = f
        .core
        .set_live(id, vec![op("erosion", &[])], 650, 10)
        .unwrap();
    assert!(first.approximate);
    let ops = vec![
        op("color-manipulation", &[("mode", "invert")]),
        op("color-manipulation", &[("mode", "grayscale")]),
    ];
    let latest = f.core.set_live(id, ops, 5000, 5000).unwrap();
    assert!(
        !latest.approximate,
        "pixel by pixel: exact but for the scaling"
    );
    // The stale one is not rendered any more.
    assert!(matches!(
        f.core.pixels(PixelRequest::Live(id, first.gen, 650)),
        Err(AppError::NoResult(_))
    ));
    let t = std::time::Instant::now();
    // Asked for more than the display rendition: its size, no more.
    assert_eq!(latest.first, 1280);
    let bytes = f
        .core
        .pixels(PixelRequest::Live(id, latest.gen, latest.first))
        .unwrap();
    eprintln!("live preview of a 2600x40 image: {:?}", t.elapsed());
    let d = prism_engine::codec::decode(&bytes, &Limits::default())
        .unwrap()
        .frame
        .pixels;
    // Display size (2600 -> 650), both ops in order: inverted (55, 195, 245), then grey.
    assert_eq!((d.width(), d.height()), (650, 10));
    let prism_engine::Pixels::Rgb(c) = d else {
        panic!("grayscale keeps three channels")
    };
    let want = (0.299 * 55.0 + 0.587 * 195.0 + 0.114 * 245.0_f64).round() as i32;
    for got in c.get_pixel(300, 5).0 {
        assert!((got as i32 - want).abs() <= 3, "{got} vs {want}");
    }
    // The size the pane shows it at: scaled down from the display rendition.
    let small = f
        .core
        .pixels(PixelRequest::Live(id, latest.gen, 130))
        .unwrap();
    let d = prism_engine::codec::decode(&small, &Limits::default())
        .unwrap()
        .frame
        .pixels;
    assert_eq!((d.width(), d.height()), (130, 2));
}
