//! Running the `prism` binary and reading its `--json` events: one runner and one
//! parser for every test that drives the CLI.

use std::path::Path;
use std::process::Command;

use image::RgbImage;
use prism_engine::codec::{self, EncodeOptions, Format, Metadata};
use prism_engine::{Frame, Pixels};
use serde_json::Value;

use super::node::PRISM;

/// A `prism` command, ready for arguments.
pub fn prism() -> Command {
    Command::new(PRISM)
}

/// The `--json` events printed on `stdout`. Every line must be one JSON object (the
/// contract): anything else fails the test, naming the line.
pub fn events(stdout: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l:?}: {e}")))
        .collect()
}

/// The events of one kind, in order.
pub fn of_kind<'a>(ev: &'a [Value], kind: &str) -> Vec<&'a Value> {
    ev.iter().filter(|e| e["event"] == kind).collect()
}

/// The `summary` event, which must come last.
pub fn summary(ev: &[Value]) -> &Value {
    let last = ev.last().expect("no events");
    assert_eq!(last["event"], "summary", "the last event is the summary");
    last
}

/// A colour image with detail everywhere, different per seed.
pub fn sample(w: u32, h: u32, seed: u32) -> Frame {
    Frame::new(Pixels::Rgb(RgbImage::from_fn(w, h, |x, y| {
        let v = (x * 7 + y * 13 + seed * 31) % 256;
        image::Rgb([v as u8, (x * y % 251) as u8, ((x + seed) * 3 % 256) as u8])
    })))
}

/// Writes `frame` at `path` in `format`, creating its folder.
pub fn write_image(path: &Path, frame: &Frame, format: Format) {
    let bytes = codec::encode(
        frame,
        format,
        &Metadata::default(),
        &EncodeOptions::default(),
    )
    .unwrap();
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}
