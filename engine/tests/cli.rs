//! The `prism` binary end to end: the CLI contract of DESIGN.md on real files.

use std::path::{Path, PathBuf};
use std::process::Command;

use image::RgbImage;
use prism_engine::codec::{self, EncodeOptions, Format, Metadata};
use prism_engine::{Frame, Pixels};
use serde_json::Value;

mod common;

use common::cli::{events, of_kind, prism, sample, write_image};

#[test]
fn files_land_flat_folders_mirror_and_json_events_follow_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    let shots = dir.path().join("shots");
    write_image(
        &shots.join("a/b/photo.jpg"),
        &sample(40, 30, 1),
        Format::Jpeg,
    );
    write_image(&shots.join("top.png"), &sample(20, 10, 2), Format::Png);
    std::fs::write(
        shots.join("readme.txt"),
        "not an image, skipped by the walk",
    )
    .unwrap();
    let single = dir.path().join("x/single.bmp");
    write_image(&single, &sample(9, 9, 3), Format::Bmp);
    let out = dir.path().join("out");
    let res = prism()
        .args([
            "process",
            "--op",
            "color-manipulation",
            "--json",
            "--threads",
            "2",
            "--out",
        ])
        .arg(&out)
        .arg(&shots)
        .arg(&single)
        .output()
        .unwrap();
    assert_eq!(
        res.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&res.stderr)
    );
    let ev = events(&res.stdout);
    assert_eq!(ev[0], serde_json::json!({"event": "started", "inputs": 3}));
    let done = of_kind(&ev, "done");
    assert_eq!(done.len(), 3);
    for d in &done {
        assert_eq!(d["worker"], "local");
        for k in ["decode", "op", "encode"] {
            assert!(d["timings_ms"][k].as_f64().unwrap() >= 0.0);
        }
    }
    // Each input is named by its index in `started`'s order, runs once on one worker, and
    // its `done` names the output's format.
    let mut indices: Vec<u64> = done.iter().map(|d| d["index"].as_u64().unwrap()).collect();
    indices.sort_unstable();
    assert_eq!(indices, [0, 1, 2]);
    for d in &done {
        let running: Vec<&Value> = of_kind(&ev, "running")
            .into_iter()
            .filter(|r| r["index"] == d["index"])
            .collect();
        assert_eq!(running.len(), 1, "{d}");
        assert_eq!(running[0]["input"], d["input"]);
        assert_eq!(running[0]["worker"], d["worker"]);
        let at = |e: &Value| ev.iter().position(|x| x == e).unwrap();
        assert!(at(running[0]) < at(d), "running comes before done");
        let ext = Path::new(d["output"].as_str().unwrap())
            .extension()
            .unwrap()
            .to_string_lossy()
            .replace("jpg", "jpeg");
        assert_eq!(d["format"], ext.as_str());
        assert!(d.get("keypoints").is_none(), "colour ops find no keypoints");
    }
    let progress = of_kind(&ev, "progress");
    assert_eq!(progress.last().unwrap()["done"], 3);
    assert_eq!(progress.last().unwrap()["total"], 3);
    let summary = ev.last().unwrap();
    assert_eq!(summary["event"], "summary");
    assert_eq!(
        (summary["done"].as_u64(), summary["failed"].as_u64()),
        (Some(3), Some(0))
    );
    assert_eq!(summary["moved"], 0);
    assert!(summary["wall_ms"].as_f64().unwrap() > 0.0);
    for rel in ["a/b/photo.jpg", "top.png", "single.bmp"] {
        let p = out.join(rel);
        let bytes = std::fs::read(&p).unwrap_or_else(|_| panic!("{} missing", p.display()));
        assert_eq!(
            codec::sniff(&bytes).unwrap(),
            codec::sniff(
                &std::fs::read(if rel == "single.bmp" {
                    single.clone()
                } else {
                    shots.join(rel)
                })
                .unwrap()
            )
            .unwrap()
        );
    }
    assert!(!out.join("readme.txt").exists());
    // No temporary files are left behind.
    let leftovers: Vec<PathBuf> = walk(&out)
        .into_iter()
        .filter(|p| p.to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut v = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            v.extend(walk(&p));
        } else {
            v.push(p);
        }
    }
    v
}

#[test]
fn format_option_changes_extension_and_invert_is_exact() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("photo.bmp");
    let frame = sample(33, 17, 4);
    write_image(&input, &frame, Format::Bmp);
    let out = dir.path().join("out");
    let res = prism()
        .args([
            "process",
            "--op",
            "color-manipulation",
            "--format",
            "png",
            "--out",
        ])
        .arg(&out)
        .arg(&input)
        .output()
        .unwrap();
    assert_eq!(
        res.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&res.stderr)
    );
    let bytes = std::fs::read(out.join("photo.png")).unwrap();
    let got = codec::decode(&bytes, &Default::default())
        .unwrap()
        .frame
        .pixels;
    let Pixels::Rgb(orig) = frame.pixels else {
        unreachable!()
    };
    let expect = RgbImage::from_fn(33, 17, |x, y| {
        let p = orig.get_pixel(x, y).0;
        image::Rgb([!p[0], !p[1], !p[2]])
    });
    assert_eq!(got, Pixels::Rgb(expect));
}

#[test]
fn usage_errors_exit_2_before_anything_runs() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a/photo.png");
    let b = dir.path().join("b/photo.png");
    write_image(&a, &sample(4, 4, 1), Format::Png);
    write_image(&b, &sample(4, 4, 2), Format::Png);
    let out = dir.path().join("out");
    let cases: Vec<Vec<String>> = vec![
        // Two inputs with the same output name.
        vec!["--op".into(), "erosion-nope".into()],
        vec![
            "--op".into(),
            "color-manipulation".into(),
            "--param".into(),
            "color-manipulation.mode=glow".into(),
        ],
        vec![
            "--op".into(),
            "color-manipulation".into(),
            "--param".into(),
            "histogram-equalization.x=1".into(),
        ],
        vec![
            "--op".into(),
            "color-manipulation".into(),
            "--format".into(),
            "gif".into(),
        ],
    ];
    for extra in cases {
        let res = prism()
            .arg("process")
            .args(&extra)
            .arg("--out")
            .arg(&out)
            .arg(&a)
            .output()
            .unwrap();
        assert_eq!(
            res.status.code(),
            Some(2),
            "{extra:?}: {}",
            String::from_utf8_lossy(&res.stderr)
        );
    }
    let res = prism()
        .args(["process", "--op", "color-manipulation", "--out"])
        .arg(&out)
        .arg(&a)
        .arg(&b)
        .output()
        .unwrap();
    assert_eq!(res.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&res.stderr).contains("would both be written"));
    assert!(!out.exists(), "nothing runs on a usage error");
    // --out equal to an input folder.
    let res = prism()
        .args(["process", "--op", "color-manipulation", "--out"])
        .arg(dir.path().join("a"))
        .arg(dir.path().join("a"))
        .output()
        .unwrap();
    assert_eq!(res.status.code(), Some(2));
}

#[test]
fn an_input_is_never_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("photo.png");
    write_image(&input, &sample(8, 8, 5), Format::Png);
    let before = std::fs::read(&input).unwrap();
    // Refused before anything runs, whatever the policy for taken names says.
    for policy in ["rename", "skip", "overwrite"] {
        let res = prism()
            .args(["process", "--op", "color-manipulation", "--json"])
            .args(["--on-exists", policy, "--out"])
            .arg(dir.path())
            .arg(&input)
            .output()
            .unwrap();
        assert_eq!(res.status.code(), Some(2), "{policy}");
        let err = String::from_utf8_lossy(&res.stderr);
        assert!(err.contains("an input of this batch"), "{policy}: {err}");
        assert_eq!(std::fs::read(&input).unwrap(), before);
        assert_eq!(walk(dir.path()), std::slice::from_ref(&input));
    }
}

#[test]
fn bad_inputs_fail_alone_with_a_kind_and_the_rest_finish() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("in");
    std::fs::create_dir_all(&d).unwrap();
    write_image(&d.join("good1.png"), &sample(16, 16, 1), Format::Png);
    write_image(&d.join("good2.jpg"), &sample(16, 16, 2), Format::Jpeg);
    std::fs::write(d.join("empty.png"), b"").unwrap();
    let png = std::fs::read(d.join("good1.png")).unwrap();
    std::fs::write(d.join("truncated.png"), &png[..png.len() / 2]).unwrap();
    std::fs::write(d.join("text.jpg"), b"just some text, not a JPEG at all").unwrap();
    std::fs::write(d.join("mislabelled.jpg"), &png).unwrap();
    std::fs::write(d.join("huge.png"), png_header(50_000, 50_000)).unwrap();
    let missing = dir.path().join("nowhere/ghost.png");
    let out = dir.path().join("out");
    let res = prism()
        .args([
            "process",
            "--op",
            "histogram-equalization",
            "--json",
            "--out",
        ])
        .arg(&out)
        .arg(&d)
        .arg(&missing)
        .output()
        .unwrap();
    assert_eq!(
        res.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&res.stderr)
    );
    let ev = events(&res.stdout);
    let failed: Vec<(String, String)> = of_kind(&ev, "failed")
        .iter()
        .map(|e| {
            let name = Path::new(e["input"].as_str().unwrap())
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned();
            assert!(!e["message"].as_str().unwrap().is_empty());
            (name, e["kind"].as_str().unwrap().to_string())
        })
        .collect();
    let kind = |n: &str| failed.iter().find(|f| f.0 == n).map(|f| f.1.as_str());
    assert_eq!(kind("empty.png"), Some("bad-input"));
    assert_eq!(kind("truncated.png"), Some("bad-input"));
    assert_eq!(kind("text.jpg"), Some("bad-input"));
    assert_eq!(kind("mislabelled.jpg"), Some("bad-input"));
    assert_eq!(kind("huge.png"), Some("limit"));
    assert_eq!(kind("ghost.png"), Some("io"));
    assert_eq!(failed.len(), 6);
    assert_eq!(of_kind(&ev, "done").len(), 2);
    assert!(out.join("good1.png").exists() && out.join("good2.jpg").exists());
    // The pixel limit is configurable.
    let res = prism()
        .args([
            "process",
            "--op",
            "histogram-equalization",
            "--json",
            "--max-pixels",
            "100",
            "--out",
        ])
        .arg(&out)
        .arg(d.join("good1.png"))
        .output()
        .unwrap();
    assert_eq!(of_kind(&events(&res.stdout), "failed")[0]["kind"], "limit");
}

/// A PNG signature and IHDR claiming `w` x `h`, with a valid CRC and no pixel data.
fn png_header(w: u32, h: u32) -> Vec<u8> {
    let mut ihdr = b"IHDR".to_vec();
    ihdr.extend_from_slice(&w.to_be_bytes());
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    let mut v = b"\x89PNG\r\n\x1a\n".to_vec();
    v.extend_from_slice(&13u32.to_be_bytes());
    v.extend_from_slice(&ihdr);
    v.extend_from_slice(&crc32(&ihdr).to_be_bytes());
    v
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in data {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[test]
fn a_corpus_of_broken_files_never_panics_and_ends_each_input_once() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = dir.path().join("corpus");
    std::fs::create_dir_all(&corpus).unwrap();
    let frame = sample(24, 20, 9);
    let mut rng = 0x2545_F491_4F6C_DD1Du64;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut truncated = Vec::new();
    let mut count = 0;
    for format in [
        Format::Png,
        Format::Jpeg,
        Format::Webp,
        Format::Tiff,
        Format::Bmp,
    ] {
        let bytes = codec::encode(
            &frame,
            format,
            &Metadata::default(),
            &EncodeOptions::default(),
        )
        .unwrap();
        let ext = format.extension();
        for i in 0..30 {
            // Truncations spread over the file, all losing at least a tenth of it.
            let cut = bytes.len() * i / 34;
            let name = format!("trunc_{ext}_{i:02}.{ext}");
            std::fs::write(corpus.join(&name), &bytes[..cut]).unwrap();
            truncated.push(name);
            count += 1;
        }
        for i in 0..30 {
            let mut b = bytes.clone();
            for _ in 0..(1 + i % 4) {
                let at = (next() as usize) % b.len();
                b[at] ^= 1 << (next() % 8);
            }
            std::fs::write(corpus.join(format!("flip_{ext}_{i:02}.{ext}")), b).unwrap();
            count += 1;
        }
    }
    assert!(count >= 300);
    let out = dir.path().join("out");
    let res = prism()
        .args(["process", "--op", "color-manipulation", "--json", "--out"])
        .arg(&out)
        .arg(&corpus)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&res.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(res.status.code(), Some(1), "{stderr}");
    let ev = events(&res.stdout);
    let mut ended: Vec<String> = ev
        .iter()
        .filter(|e| e["event"] == "done" || e["event"] == "failed")
        .map(|e| e["input"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ended.len(), count, "one event per input");
    ended.sort();
    ended.dedup();
    assert_eq!(ended.len(), count, "no input ends twice");
    let failed: Vec<String> = of_kind(&ev, "failed")
        .iter()
        .map(|e| {
            Path::new(e["input"].as_str().unwrap())
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    for t in &truncated {
        assert!(failed.contains(t), "{t} was truncated but did not fail");
    }
}

#[test]
fn ops_json_lists_every_op_with_params() {
    let res = prism().args(["ops", "--json"]).output().unwrap();
    assert_eq!(res.status.code(), Some(0));
    let v: Value = serde_json::from_slice(&res.stdout).unwrap();
    let ids: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["id"].as_str().unwrap())
        .collect();
    for id in prism_engine::ops::OP_IDS {
        assert!(ids.contains(id), "{id}");
    }
    let color = v
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["id"] == "color-manipulation")
        .unwrap();
    assert_eq!(color["params"][0]["key"], "mode");
    assert_eq!(color["params"][0]["default"], "invert");
}

/// `prism ops --json` of every op published so far, as the untyped catalogue printed it:
/// ids, keys, types, ranges, defaults and help are a contract (the app's forms and
/// scripts read them). A new op may join; the ones here stay as they are.
#[test]
fn ops_json_keeps_every_published_op_as_it_was() {
    let res = prism().args(["ops", "--json"]).output().unwrap();
    assert_eq!(res.status.code(), Some(0));
    let now: Vec<Value> = serde_json::from_slice(&res.stdout).unwrap();
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/contracts/ops.json");
    let published: Vec<Value> = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    assert!(!published.is_empty());
    for op in &published {
        let same = now.iter().find(|o| o["id"] == op["id"]);
        assert_eq!(same, Some(op), "{}", op["id"]);
    }
}

#[test]
fn a_bad_param_value_is_refused_naming_the_op_the_param_and_the_allowed_values() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("photo.png");
    write_image(&a, &sample(8, 8, 1), Format::Png);
    let out = dir.path().join("out");
    for (op, param, says) in [
        (
            "color-manipulation",
            "color-manipulation.mode=neon",
            r#"color-manipulation.mode: "neon" is not one of invert, grayscale, sepia, hue-saturation"#,
        ),
        (
            "erosion",
            "erosion.shape=star",
            r#"erosion.shape: "star" is not one of rect, ellipse, cross"#,
        ),
        (
            "edge-detection",
            "edge-detection.aperture=4",
            "edge-detection.aperture: 4 must be odd",
        ),
        (
            "corner-detection",
            "corner-detection.ksize=9",
            "corner-detection.ksize: 9 is outside 1..=7",
        ),
    ] {
        let res = prism()
            .args(["process", "--json", "--op", op, "--param", param, "--out"])
            .arg(&out)
            .arg(&a)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&res.stderr);
        assert_eq!(res.status.code(), Some(2), "{param}: {stderr}");
        assert!(stderr.contains(says), "{param}: {stderr}");
        // Refused before anything ran: no event, no output folder.
        assert!(res.stdout.is_empty(), "{param}");
        assert!(!out.exists(), "{param}");
    }
}

#[test]
fn ctrl_c_stops_the_batch_early_and_leaves_only_whole_files() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("in");
    // Denoise on one thread: seconds of work per image, far more than the signal needs.
    const N: usize = 16;
    for i in 0..N {
        write_image(
            &d.join(format!("img{i:02}.png")),
            &sample(400, 300, i as u32),
            Format::Png,
        );
    }
    let out = dir.path().join("out");
    let mut child = prism()
        .args(["process", "--op", "denoise", "--threads", "1", "--json"])
        .arg("--out")
        .arg(&out)
        .arg(&d)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait for the first image to be written, then interrupt.
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(child.stdout.take().unwrap()));
    let mut ev: Vec<Value> = Vec::new();
    for line in lines.by_ref() {
        let v: Value = serde_json::from_str(&line.unwrap()).unwrap();
        let first_done = v["event"] == "done";
        ev.push(v);
        if first_done {
            break;
        }
    }
    assert!(
        !of_kind(&ev, "done").is_empty(),
        "batch never wrote an image"
    );
    let kill = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    ev.extend(lines.map(|l| serde_json::from_str(&l.unwrap()).unwrap()));
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(1), "a cancelled batch exits 1");
    let summary = ev.last().unwrap();
    assert_eq!(summary["event"], "summary");
    let done = summary["done"].as_u64().unwrap() as usize;
    let cancelled = summary["cancelled"].as_u64().unwrap() as usize;
    assert!(
        done < N,
        "Ctrl-C did not stop the batch: {done} of {N} done"
    );
    assert_eq!(summary["failed"].as_u64().unwrap() as usize, N - done);
    assert_eq!(
        cancelled,
        N - done,
        "every input not done counts as cancelled"
    );
    let failed = of_kind(&ev, "failed");
    assert_eq!(failed.len(), cancelled);
    assert!(
        failed.iter().all(|e| e["kind"] == "cancelled"),
        "{failed:?}"
    );
    // Only whole outputs: every file in out/ decodes, and none is a temporary.
    let files = walk(&out);
    assert_eq!(files.len(), done);
    for f in files {
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        assert!(!name.starts_with('.'), "{}", f.display());
        codec::decode(&std::fs::read(&f).unwrap(), &Default::default()).unwrap();
    }
}

#[test]
fn features_json_lands_beside_the_output() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("board.png");
    // A white square on black: Harris finds its four corners.
    let img = RgbImage::from_fn(64, 64, |x, y| {
        let inside = (16..48).contains(&x) && (16..48).contains(&y);
        image::Rgb(if inside { [255; 3] } else { [0; 3] })
    });
    write_image(&input, &Frame::new(Pixels::Rgb(img)), Format::Png);
    let out = dir.path().join("out");
    let res = prism()
        .args([
            "process",
            "--op",
            "corner-detection",
            "--features",
            "--json",
        ])
        .arg("--out")
        .arg(&out)
        .arg(&input)
        .output()
        .unwrap();
    assert_eq!(
        res.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&res.stderr)
    );
    let v: Value =
        serde_json::from_slice(&std::fs::read(out.join("board.features.json")).unwrap()).unwrap();
    let kps = v["keypoints"].as_array().unwrap();
    assert!(!kps.is_empty());
    // The `done` event counts them.
    let ev = events(&res.stdout);
    assert_eq!(of_kind(&ev, "done")[0]["keypoints"], kps.len());
    for k in kps {
        for f in ["x", "y", "size", "angle", "response", "octave"] {
            assert!(k[f].is_number(), "{f} missing in {k}");
        }
        let (x, y) = (k["x"].as_f64().unwrap(), k["y"].as_f64().unwrap());
        let near = |v: f64| (v - 16.0).abs() < 4.0 || (v - 47.0).abs() < 4.0;
        assert!(
            near(x) && near(y),
            "corner at ({x}, {y}) is not near the square's corners"
        );
    }
}

/// Runs `prism process` with `args` then `--out out input`; the exit code and stderr.
fn process_into(args: &[&str], out: &Path, input: &Path) -> (Option<i32>, String) {
    let res = prism()
        .arg("process")
        .args(args)
        .arg("--out")
        .arg(out)
        .arg(input)
        .output()
        .unwrap();
    (
        res.status.code(),
        String::from_utf8_lossy(&res.stderr).into_owned(),
    )
}

#[test]
fn a_preset_runs_its_chain_as_the_same_ops_would() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in/photo.jpg");
    write_image(&input, &sample(64, 48, 5), Format::Jpeg);
    let preset = dir.path().join("thick-edges.json");
    std::fs::write(
        &preset,
        r#"{"version": 1, "name": "thick edges", "format": "png", "steps": [
            {"op": "edge-detection", "params": {"low": 40.0, "high": 120.0}},
            {"op": "dilation", "params": {"size": 3, "shape": "cross"}}]}"#,
    )
    .unwrap();
    let by_ops = dir.path().join("ops");
    let (code, err) = process_into(
        &[
            "--op",
            "edge-detection",
            "--op",
            "dilation",
            "--param",
            "edge-detection.low=40",
            "--param",
            "edge-detection.high=120",
            "--param",
            "dilation.size=3",
            "--param",
            "dilation.shape=cross",
            "--format",
            "png",
        ],
        &by_ops,
        &input,
    );
    assert_eq!(code, Some(0), "{err}");
    let preset_arg = preset.display().to_string();
    let by_preset = dir.path().join("preset");
    let (code, err) = process_into(&["--preset", &preset_arg], &by_preset, &input);
    assert_eq!(code, Some(0), "{err}");
    // The preset's format applies: photo.jpg -> photo.png, the same bytes as the flags.
    let want = std::fs::read(by_ops.join("photo.png")).unwrap();
    assert_eq!(std::fs::read(by_preset.join("photo.png")).unwrap(), want);
    // Only the dilation differs from a single edge-detection run: the chain really chains.
    let edges_only = dir.path().join("edges");
    let (code, _) = process_into(
        &["--op", "edge-detection", "--format", "png"],
        &edges_only,
        &input,
    );
    assert_eq!(code, Some(0));
    assert_ne!(std::fs::read(edges_only.join("photo.png")).unwrap(), want);
    // --format given beside --preset wins over the preset's.
    let bmp = dir.path().join("bmp");
    let (code, err) = process_into(&["--preset", &preset_arg, "--format", "bmp"], &bmp, &input);
    assert_eq!(code, Some(0), "{err}");
    assert!(bmp.join("photo.bmp").exists());
}

#[test]
fn a_bad_preset_or_preset_with_op_is_a_usage_error_naming_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("photo.png");
    write_image(&input, &sample(8, 8, 1), Format::Png);
    let out = dir.path().join("out");
    let write = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p.display().to_string()
    };
    let good = write(
        "good.json",
        r#"{"version":1,"name":"g","steps":[{"op":"erosion","params":{}}]}"#,
    );
    let cases = [
        (
            write(
                "step.json",
                r#"{"version":1,"name":"x","steps":[{"op":"erosion","params":{}},{"op":"dilation","params":{"shape":"star"}}]}"#,
            ),
            r#"step 2: dilation.shape: "star" is not one of rect, ellipse, cross"#,
        ),
        (
            write("version.json", r#"{"version":9,"name":"x","steps":[]}"#),
            "preset version 9",
        ),
        (write("junk.json", "not json"), "not a Prism preset"),
        (
            dir.path().join("missing.json").display().to_string(),
            "missing.json",
        ),
    ];
    for (file, want) in cases {
        let (code, err) = process_into(&["--preset", &file], &out, &input);
        assert_eq!(code, Some(2), "{file}: {err}");
        assert!(
            err.contains("--preset") && err.contains(want),
            "{file}: {err}"
        );
    }
    // A preset is the whole chain: --op or --param beside it is refused by clap.
    for extra in [["--op", "erosion"], ["--param", "erosion.size=3"]] {
        let (code, err) = process_into(&["--preset", &good, extra[0], extra[1]], &out, &input);
        assert_eq!(code, Some(2), "{extra:?}: {err}");
        assert!(err.contains("cannot be used with"), "{err}");
    }
    // Neither --op nor --preset: still a usage error.
    let (code, _) = process_into(&[], &out, &input);
    assert_eq!(code, Some(2));
    assert!(!out.exists(), "nothing runs on a usage error");
}
