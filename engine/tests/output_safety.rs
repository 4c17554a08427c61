//! The README's "never loses or overwrites a file", tried from outside as a user would:
//! runs twice into the same folder, an output folder inside the input folder, features
//! files of same-named inputs, planted temporary names.

use std::path::{Path, PathBuf};
use std::process::Output;

use prism_engine::codec::{self, Format};
use serde_json::Value;

mod common;

use common::cli::{events, prism};

/// A small colour image, different per seed, written at `path`.
fn write_image(path: &Path, seed: u32, format: Format) {
    common::cli::write_image(path, &common::cli::sample(24, 16, seed), format);
}

fn run(args: &[&str], out: &Path, inputs: &[&Path]) -> Output {
    let mut c = prism();
    c.args(["process", "--json"])
        .args(args)
        .arg("--out")
        .arg(out);
    for i in inputs {
        c.arg(i);
    }
    c.output().unwrap()
}

/// Every file under `dir`, relative, sorted.
fn tree(dir: &Path) -> Vec<String> {
    fn go(root: &Path, dir: &Path, v: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                go(root, &p, v);
            } else {
                v.push(p.strip_prefix(root).unwrap().to_string_lossy().into_owned());
            }
        }
    }
    let mut v = Vec::new();
    go(dir, dir, &mut v);
    v.sort();
    v
}

fn read(p: impl AsRef<Path>) -> Vec<u8> {
    std::fs::read(p.as_ref()).unwrap_or_else(|e| panic!("{}: {e}", p.as_ref().display()))
}

fn ok(res: &Output) {
    assert_eq!(
        res.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&res.stderr)
    );
}

#[test]
fn an_output_folder_inside_the_input_folder_is_never_walked() {
    let dir = tempfile::tempdir().unwrap();
    let photos = dir.path().join("photos");
    write_image(&photos.join("a.png"), 1, Format::Png);
    write_image(&photos.join("sub/b.png"), 2, Format::Png);
    let out = photos.join("processed");
    let originals = [read(photos.join("a.png")), read(photos.join("sub/b.png"))];
    let first = run(&["--op", "color-manipulation"], &out, &[&photos]);
    ok(&first);
    // Run twice: the first run's outputs are not inputs of the second.
    let second = run(&["--op", "color-manipulation"], &out, &[&photos]);
    ok(&second);
    let ev = events(&second.stdout);
    assert_eq!(ev[0]["inputs"], 2, "{ev:?}");
    assert_eq!(
        tree(&photos),
        [
            "a.png",
            "processed/a (2).png",
            "processed/a.png",
            "processed/sub/b (2).png",
            "processed/sub/b.png",
            "sub/b.png"
        ]
    );
    assert_eq!(
        [read(photos.join("a.png")), read(photos.join("sub/b.png"))],
        originals
    );
    assert_eq!(read(out.join("a.png")), read(out.join("a (2).png")));
}

#[test]
fn on_exists_rename_is_the_default_and_keeps_the_first_run() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in/a.png");
    write_image(&input, 3, Format::Png);
    let out = dir.path().join("out");
    ok(&run(&["--op", "color-manipulation"], &out, &[&input]));
    let first = read(out.join("a.png"));
    // Different params, same names: the first result stays, the second is beside it.
    let res = run(
        &[
            "--op",
            "color-manipulation",
            "--param",
            "color-manipulation.mode=grayscale",
        ],
        &out,
        &[&input],
    );
    ok(&res);
    assert_eq!(read(out.join("a.png")), first);
    assert_ne!(read(out.join("a (2).png")), first);
    let done = events(&res.stdout)
        .into_iter()
        .find(|e| e["event"] == "done")
        .unwrap();
    assert_eq!(done["output"], out.join("a (2).png").display().to_string());
    assert_eq!(tree(&out), ["a (2).png", "a.png"]);
}

#[test]
fn on_exists_skip_leaves_the_file_and_reports_the_input_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("in/a.png");
    let b = dir.path().join("in/b.png");
    write_image(&a, 4, Format::Png);
    write_image(&b, 5, Format::Png);
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("a.png"), b"mine").unwrap();
    let res = run(
        &["--op", "color-manipulation", "--on-exists", "skip"],
        &out,
        &[&a, &b],
    );
    ok(&res);
    let ev = events(&res.stdout);
    let skipped: Vec<&Value> = ev.iter().filter(|e| e["event"] == "skipped").collect();
    assert_eq!(skipped.len(), 1, "{ev:?}");
    assert_eq!(skipped[0]["input"], a.display().to_string());
    assert_eq!(
        skipped[0]["output"],
        out.join("a.png").display().to_string()
    );
    let summary = ev.last().unwrap();
    assert_eq!(
        (summary["done"].as_u64(), summary["skipped"].as_u64()),
        (Some(1), Some(1))
    );
    assert_eq!(read(out.join("a.png")), b"mine");
    assert_eq!(tree(&out), ["a.png", "b.png"]);
}

#[test]
fn on_exists_overwrite_replaces_outputs_but_never_an_input() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in/a.png");
    write_image(&input, 6, Format::Png);
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("a.png"), b"stale").unwrap();
    let res = run(
        &["--op", "color-manipulation", "--on-exists", "overwrite"],
        &out,
        &[&input],
    );
    ok(&res);
    let got = read(out.join("a.png"));
    assert_ne!(got, b"stale");
    codec::decode(&got, &Default::default()).unwrap();
    assert_eq!(tree(&out), ["a.png"]);
    // An unknown policy is a usage error.
    let res = run(
        &["--op", "color-manipulation", "--on-exists", "clobber"],
        &out,
        &[&input],
    );
    assert_eq!(res.status.code(), Some(2));
}

#[test]
fn features_files_of_same_named_inputs_are_refused_before_anything_runs() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("in");
    write_image(&d.join("a.png"), 7, Format::Png);
    write_image(&d.join("a.jpg"), 8, Format::Jpeg);
    let out = dir.path().join("out");
    let res = run(&["--op", "corner-detection", "--features"], &out, &[&d]);
    assert_eq!(res.status.code(), Some(2));
    let err = String::from_utf8_lossy(&res.stderr);
    assert!(err.contains("a.features.json"), "{err}");
    assert!(!out.exists(), "nothing may be written");
    // Without --features only the images are written, and their names differ.
    ok(&run(&["--op", "corner-detection"], &out, &[&d]));
    assert_eq!(tree(&out), ["a.jpg", "a.png"]);
}

#[cfg(unix)]
#[test]
fn a_symlink_planted_in_the_output_folder_does_not_redirect_a_write() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in/a.png");
    write_image(&input, 9, Format::Png);
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let victim = dir.path().join("victim.txt");
    std::fs::write(&victim, b"precious").unwrap();
    // Where the old code put its predictable temporary name, and the final name itself.
    std::os::unix::fs::symlink(&victim, out.join("a.png")).unwrap();
    for seq in 0..4 {
        let name = format!(".a.png.prism-{}-{seq}.tmp", std::process::id());
        std::os::unix::fs::symlink(&victim, out.join(name)).unwrap();
    }
    let before: Vec<PathBuf> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    ok(&run(&["--op", "color-manipulation"], &out, &[&input]));
    assert_eq!(read(&victim), b"precious");
    let written = out.join("a (2).png");
    assert!(!std::fs::symlink_metadata(&written)
        .unwrap()
        .file_type()
        .is_symlink());
    codec::decode(&read(&written), &Default::default()).unwrap();
    // Nothing else appeared: no temporary was left behind.
    assert_eq!(std::fs::read_dir(&out).unwrap().count(), before.len() + 1);
}
