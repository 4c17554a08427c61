//! Presets: a named chain of ops with their params and an output format, saved as JSON.
//! The app saves, exports and imports them; `prism process --preset FILE` runs one.
//!
//! The format, version 1:
//!
//! ```json
//! {
//!   "version": 1,
//!   "name": "edges then thicken",
//!   "steps": [
//!     {"op": "edge-detection", "params": {"low": 50.0, "high": 150.0}},
//!     {"op": "dilation", "params": {"size": 3}}
//!   ],
//!   "format": "png"
//! }
//! ```
//!
//! `steps` are ops in the form [`Op::from_json`] reads, run in order; a param left out
//! takes its default. `format` is an output format name (`same`, `png`, `jpeg`, `webp`,
//! `tiff`, `bmp`) and may be left out (`same`). Unknown fields are refused (a misspelled
//! `step` must not pass for an empty chain). Parsing types every step at once, so a preset
//! that loads runs; a bad one is a [`PresetError`] naming the step (1-based), the op and
//! the param.

use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{EngineError, ErrorKind};
use crate::job::OutputFormat;
use crate::ops::{Op, ParamError};

/// The version this build writes and reads.
pub const PRESET_VERSION: u32 = 1;
/// The most steps a preset holds (a chain longer than this is a mistake, not a plan).
pub const MAX_STEPS: usize = 64;
/// The longest name, in characters.
pub const MAX_NAME_CHARS: usize = 100;
/// The largest preset file read, in bytes.
pub const MAX_FILE_BYTES: u64 = 1 << 20;

/// A named chain of typed ops and the output format: valid by construction.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "Value", into = "RawPreset")]
pub struct Preset {
    name: String,
    steps: Vec<Op>,
    format: OutputFormat,
}

/// The JSON form as written.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPreset {
    version: u32,
    name: String,
    steps: Vec<Value>,
    #[serde(default = "same")]
    format: String,
}

fn same() -> String {
    "same".into()
}

/// Why a preset could not be read or built.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum PresetError {
    /// Not JSON, or not the preset's shape (a missing or unknown field).
    #[error("not a Prism preset: {0}")]
    Shape(String),
    /// Written by a build whose format this one does not read.
    #[error("preset version {0} is not supported (this build reads version {PRESET_VERSION})")]
    Version(u32),
    /// The name is empty, too long or holds control characters.
    #[error("preset name: {0}")]
    Name(String),
    /// No steps, or more than [`MAX_STEPS`].
    #[error("preset steps: {0}")]
    Steps(String),
    /// One step's op or params are not valid.
    #[error("step {index}: {error}")]
    Step {
        /// The step's position, from 1.
        index: usize,
        /// What is wrong with it, naming the op and the param.
        error: ParamError,
    },
    /// The format is not one Prism writes.
    #[error("preset format {0:?} is not one of same, png, jpeg, webp, tiff, bmp")]
    Format(String),
    /// The file could not be read.
    #[error("{0}")]
    Io(String),
}

impl From<PresetError> for EngineError {
    fn from(e: PresetError) -> Self {
        let kind = match e {
            PresetError::Io(_) => ErrorKind::Io,
            _ => ErrorKind::Usage,
        };
        EngineError::new(kind, e.to_string())
    }
}

/// The name `format` is written as in a preset and `--format`.
pub fn format_name(format: OutputFormat) -> &'static str {
    match format {
        OutputFormat::Same => "same",
        OutputFormat::Fixed(f) => match f {
            crate::codec::Format::Jpeg => "jpeg",
            crate::codec::Format::Png => "png",
            crate::codec::Format::Webp => "webp",
            crate::codec::Format::Tiff => "tiff",
            crate::codec::Format::Bmp => "bmp",
        },
    }
}

fn check_name(name: &str) -> Result<String, PresetError> {
    let name = name.trim();
    if name.is_empty() {
        return Err(PresetError::Name("empty".into()));
    }
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(PresetError::Name(format!(
            "longer than {MAX_NAME_CHARS} characters"
        )));
    }
    if name.chars().any(char::is_control) {
        return Err(PresetError::Name("holds control characters".into()));
    }
    Ok(name.to_string())
}

/// Checks a chain's length: at least one step (an image must go through something) and
/// at most [`MAX_STEPS`]. The app holds its chains to it too, so each can be saved as a
/// preset.
pub fn check_steps(n: usize) -> Result<(), String> {
    if n == 0 {
        return Err("a chain needs at least one step".into());
    }
    if n > MAX_STEPS {
        return Err(format!("{n} steps, at most {MAX_STEPS} allowed"));
    }
    Ok(())
}

/// Parses a chain's steps, each an op as `Op::from_json` takes it; an error names the
/// step (from 1). The one parser for chains, from a preset file or from the app's page.
pub fn parse_steps(steps: Vec<Value>) -> Result<Vec<Op>, PresetError> {
    steps
        .into_iter()
        .enumerate()
        .map(|(i, v)| {
            Op::from_json(v).map_err(|error| PresetError::Step {
                index: i + 1,
                error,
            })
        })
        .collect()
}

impl Preset {
    /// A preset of `steps` (in order) writing `format`, named `name` (trimmed).
    ///
    /// ```
    /// use prism_engine::job::OutputFormat;
    /// use prism_engine::preset::Preset;
    /// use prism_engine::Op;
    ///
    /// let steps = vec![Op::default_for("edge-detection")?, Op::default_for("dilation")?];
    /// let p = Preset::new(" thick edges ", steps, OutputFormat::Same)?;
    /// assert_eq!(p.name(), "thick edges");
    /// let back = Preset::from_json_str(&p.to_json())?;
    /// assert_eq!(back, p);
    /// assert!(Preset::new("none", vec![], OutputFormat::Same).is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn new(name: &str, steps: Vec<Op>, format: OutputFormat) -> Result<Preset, PresetError> {
        check_steps(steps.len()).map_err(PresetError::Steps)?;
        Ok(Preset {
            name: check_name(name)?,
            steps,
            format,
        })
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its ops, in the order they run.
    pub fn steps(&self) -> &[Op] {
        &self.steps
    }

    /// The output format it writes.
    pub fn format(&self) -> OutputFormat {
        self.format
    }

    /// Reads a preset from its JSON value.
    pub fn from_value(value: Value) -> Result<Preset, PresetError> {
        let raw: RawPreset =
            serde_json::from_value(value).map_err(|e| PresetError::Shape(e.to_string()))?;
        if raw.version != PRESET_VERSION {
            return Err(PresetError::Version(raw.version));
        }
        let name = check_name(&raw.name)?;
        check_steps(raw.steps.len()).map_err(PresetError::Steps)?;
        let steps = parse_steps(raw.steps)?;
        let format = OutputFormat::from_name(&raw.format).ok_or(PresetError::Format(raw.format))?;
        Ok(Preset {
            name,
            steps,
            format,
        })
    }

    /// Reads a preset from JSON text.
    ///
    /// ```
    /// use prism_engine::preset::Preset;
    ///
    /// let e = Preset::from_json_str(r#"{"version": 1, "name": "x", "steps": [
    ///     {"op": "erosion", "params": {}},
    ///     {"op": "erosion", "params": {"shape": "star"}}]}"#).unwrap_err();
    /// assert_eq!(
    ///     e.to_string(),
    ///     r#"step 2: erosion.shape: "star" is not one of rect, ellipse, cross"#
    /// );
    /// ```
    pub fn from_json_str(text: &str) -> Result<Preset, PresetError> {
        let value: Value =
            serde_json::from_str(text).map_err(|e| PresetError::Shape(e.to_string()))?;
        Preset::from_value(value)
    }

    /// Reads a preset file (at most [`MAX_FILE_BYTES`]); read errors name the file.
    pub fn from_file(path: &Path) -> Result<Preset, PresetError> {
        let meta = std::fs::metadata(path)
            .map_err(|e| PresetError::Io(format!("cannot read {}: {e}", path.display())))?;
        if meta.len() > MAX_FILE_BYTES {
            return Err(PresetError::Io(format!(
                "{} is {} bytes; a preset is at most {MAX_FILE_BYTES}",
                path.display(),
                meta.len()
            )));
        }
        let text = std::fs::read_to_string(path)
            .map_err(|e| PresetError::Io(format!("cannot read {}: {e}", path.display())))?;
        Preset::from_json_str(&text)
    }

    /// The JSON value it is written as.
    pub fn to_value(&self) -> Value {
        serde_json::to_value(RawPreset::from(self.clone())).unwrap_or(Value::Null)
    }

    /// The JSON text it is written as (pretty, for files people may read).
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(&self.to_value()).unwrap_or_default()
    }
}

impl From<Preset> for RawPreset {
    fn from(p: Preset) -> RawPreset {
        RawPreset {
            version: PRESET_VERSION,
            name: p.name,
            steps: p
                .steps
                .iter()
                .map(|op| serde_json::to_value(op).unwrap_or(Value::Null))
                .collect(),
            format: format_name(p.format).to_string(),
        }
    }
}

impl TryFrom<Value> for Preset {
    type Error = PresetError;

    fn try_from(v: Value) -> Result<Preset, PresetError> {
        Preset::from_value(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::Format;
    use serde_json::json;

    fn two_steps() -> Vec<Op> {
        vec![
            Op::from_pairs("edge-detection", [("low", "50"), ("high", "150")]).unwrap(),
            Op::from_pairs("dilation", [("size", "3")]).unwrap(),
        ]
    }

    #[test]
    fn writes_the_documented_format_and_reads_it_back() {
        let p = Preset::new("edges", two_steps(), OutputFormat::Fixed(Format::Png)).unwrap();
        let v = p.to_value();
        assert_eq!(v["version"], 1);
        assert_eq!(v["name"], "edges");
        assert_eq!(v["format"], "png");
        assert_eq!(v["steps"][0]["op"], "edge-detection");
        assert_eq!(v["steps"][0]["params"]["low"], 50.0);
        assert_eq!(v["steps"][1]["params"]["size"], 3);
        assert_eq!(Preset::from_json_str(&p.to_json()).unwrap(), p);
        // Through serde too (how the app keeps presets in its settings).
        let back: Preset = serde_json::from_value(serde_json::to_value(&p).unwrap()).unwrap();
        assert_eq!(back, p);
        for f in ["same", "png", "jpeg", "webp", "tiff", "bmp"] {
            let fmt = OutputFormat::from_name(f).unwrap();
            assert_eq!(format_name(fmt), f);
        }
    }

    #[test]
    fn missing_params_and_format_take_their_defaults() {
        let p = Preset::from_value(json!({
            "version": 1, "name": "x",
            "steps": [{"op": "erosion", "params": {}}, {"op": "histogram-equalization", "params": {}}]
        }))
        .unwrap();
        assert_eq!(p.format(), OutputFormat::Same);
        assert_eq!(p.steps()[0], Op::default_for("erosion").unwrap());
        assert_eq!(p.steps()[1].id(), "histogram-equalization");
    }

    #[test]
    fn a_bad_step_names_its_position_op_and_param() {
        let e = Preset::from_value(json!({
            "version": 1, "name": "x",
            "steps": [{"op": "dilation", "params": {}}, {"op": "edge-detection", "params": {"aperture": 4}}]
        }))
        .unwrap_err();
        let PresetError::Step { index, error } = &e else {
            panic!("{e:?}");
        };
        assert_eq!(*index, 2);
        assert_eq!(
            (error.op.as_str(), error.key.as_str()),
            ("edge-detection", "aperture")
        );
        assert!(
            e.to_string()
                .starts_with("step 2: edge-detection.aperture:"),
            "{e}"
        );
        let e = Preset::from_value(json!({
            "version": 1, "name": "x", "steps": [{"op": "teleport", "params": {}}]
        }))
        .unwrap_err();
        assert!(matches!(e, PresetError::Step { index: 1, .. }), "{e:?}");
        let e = Preset::from_value(json!({
            "version": 1, "name": "x", "steps": [{"op": "erosion", "params": {"bogus": 1}}]
        }))
        .unwrap_err();
        assert!(
            e.to_string().contains("erosion.bogus: unknown parameter"),
            "{e}"
        );
    }

    #[test]
    fn shape_version_name_steps_and_format_are_checked() {
        let step = json!({"op": "erosion", "params": {}});
        let cases = [
            (json!([1, 2]), "not a Prism preset"),
            (json!({"version": 1, "name": "x"}), "missing field `steps`"),
            (
                json!({"version": 1, "name": "x", "step": [step]}),
                "unknown field `step`",
            ),
            (
                json!({"version": 2, "name": "x", "steps": [step]}),
                "preset version 2",
            ),
            (
                json!({"version": 1, "name": "  ", "steps": [step]}),
                "preset name: empty",
            ),
            (
                json!({"version": 1, "name": "a\u{7}b", "steps": [step]}),
                "control",
            ),
            (
                json!({"version": 1, "name": "x".repeat(101), "steps": [step]}),
                "longer than 100",
            ),
            (
                json!({"version": 1, "name": "x", "steps": []}),
                "at least one step",
            ),
            (
                json!({"version": 1, "name": "x", "steps": vec![step.clone(); 65]}),
                "at most 64",
            ),
            (
                json!({"version": 1, "name": "x", "steps": [step], "format": "gif"}),
                "\"gif\" is not one of",
            ),
        ];
        for (v, want) in cases {
            let e = Preset::from_value(v.clone()).unwrap_err();
            assert!(e.to_string().contains(want), "{v}: {e}");
            assert_eq!(EngineError::from(e).kind, ErrorKind::Usage);
        }
        assert!(matches!(
            Preset::from_json_str("{not json"),
            Err(PresetError::Shape(_))
        ));
    }

    #[test]
    fn files_are_read_with_a_size_cap_and_errors_name_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.json");
        let p = Preset::new("edges", two_steps(), OutputFormat::Same).unwrap();
        std::fs::write(&path, p.to_json()).unwrap();
        assert_eq!(Preset::from_file(&path).unwrap(), p);
        let missing = dir.path().join("nope.json");
        let e = Preset::from_file(&missing).unwrap_err();
        assert!(matches!(e, PresetError::Io(_)));
        assert!(e.to_string().contains("nope.json"), "{e}");
        std::fs::write(&path, vec![b' '; MAX_FILE_BYTES as usize + 1]).unwrap();
        let e = Preset::from_file(&path).unwrap_err();
        assert!(e.to_string().contains("at most"), "{e}");
    }
}
