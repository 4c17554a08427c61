//! What to do to which input: a batch is inputs, a global pipeline and per-input
//! overrides (an override replaces the global pipeline for that input, as in the
//! original app), plus where each output lands.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::codec::Format;
use crate::error::{EngineError, ErrorKind};
use crate::ops::Op;

/// One input of a batch.
#[derive(Clone, Debug)]
pub struct Input {
    /// Where to read it.
    pub source: PathBuf,
    /// Its output path relative to the output folder, before any format change:
    /// the file name for inputs given directly, the path under the folder for walked ones.
    pub rel: PathBuf,
    /// The pipeline for this input when it differs from the batch's.
    pub ops: Option<Arc<[Op]>>,
}

/// A batch: inputs, the global pipeline, and per-input overrides.
#[derive(Clone, Debug)]
pub struct Batch {
    /// Every input, in the order given.
    pub inputs: Vec<Input>,
    /// The pipeline inputs without an override go through.
    pub pipeline: Arc<[Op]>,
}

impl Batch {
    /// The pipeline input `i` goes through.
    pub fn pipeline_for(&self, i: usize) -> Arc<[Op]> {
        self.inputs[i]
            .ops
            .clone()
            .unwrap_or_else(|| self.pipeline.clone())
    }

    /// Checks every op of every pipeline once, before anything runs.
    pub fn validate(&self) -> Result<(), EngineError> {
        if self.pipeline.is_empty() && self.inputs.iter().any(|i| i.ops.is_none()) {
            return Err(EngineError::new(
                ErrorKind::Usage,
                "no operation given (--op ID)",
            ));
        }
        for op in self.pipeline.iter().chain(
            self.inputs
                .iter()
                .filter_map(|i| i.ops.as_deref())
                .flatten(),
        ) {
            op.validate()?;
        }
        Ok(())
    }
}

/// The output format policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputFormat {
    /// Whatever format the input was in.
    Same,
    /// Always this format.
    Fixed(Format),
}

impl OutputFormat {
    /// Parses `--format`: `same`, `png`, `jpeg`, `webp`, `tiff` or `bmp`.
    pub fn from_name(s: &str) -> Option<OutputFormat> {
        if s.eq_ignore_ascii_case("same") {
            Some(OutputFormat::Same)
        } else {
            Format::from_name(s).map(OutputFormat::Fixed)
        }
    }

    /// The format an input of `source` format is written in.
    pub fn resolve(self, source: Format) -> Format {
        match self {
            OutputFormat::Same => source,
            OutputFormat::Fixed(f) => f,
        }
    }
}

/// The format a file name claims by its extension, if it names one Prism knows.
pub fn claimed_format(path: &Path) -> Option<Format> {
    let ext = path.extension()?.to_str()?.to_ascii_lowercase();
    match ext.as_str() {
        "jpg" | "jpeg" | "jpe" | "jfif" => Some(Format::Jpeg),
        "png" => Some(Format::Png),
        "webp" => Some(Format::Webp),
        "tif" | "tiff" => Some(Format::Tiff),
        "bmp" | "dib" => Some(Format::Bmp),
        _ => None,
    }
}

/// Where the output of `rel` goes: `same` keeps the name, a fixed format swaps the
/// extension (`photo.jpg` -> `photo.png`).
pub fn output_rel(rel: &Path, format: OutputFormat) -> PathBuf {
    match format {
        OutputFormat::Same => rel.to_path_buf(),
        OutputFormat::Fixed(f) => rel.with_extension(f.extension()),
    }
}

/// Expands files and folders into inputs: a file lands flat in the output folder, a
/// folder is walked recursively (image extensions only) and mirrored. Refuses two inputs
/// with the same output path and an output folder equal to an input folder.
pub fn collect_inputs(
    paths: &[PathBuf],
    out_dir: &Path,
    format: OutputFormat,
) -> Result<Vec<Input>, EngineError> {
    let usage = |m: String| EngineError::new(ErrorKind::Usage, m);
    let out_canon = std::fs::canonicalize(out_dir).ok();
    let mut inputs = Vec::new();
    for p in paths {
        if p.is_dir() {
            let canon =
                std::fs::canonicalize(p).map_err(|e| usage(format!("{}: {e}", p.display())))?;
            if out_canon.as_ref() == Some(&canon) {
                return Err(usage(format!(
                    "--out {} is the input folder {}; choose another folder so no input is overwritten",
                    out_dir.display(),
                    p.display()
                )));
            }
            let mut found: Vec<PathBuf> = walkdir::WalkDir::new(p)
                .follow_links(false)
                .into_iter()
                .filter_map(Result::ok)
                .filter(|e| e.file_type().is_file() && claimed_format(e.path()).is_some())
                .map(|e| e.into_path())
                .collect();
            found.sort();
            for f in found {
                let rel = f.strip_prefix(p).unwrap_or(&f).to_path_buf();
                inputs.push(Input {
                    source: f,
                    rel,
                    ops: None,
                });
            }
        } else {
            // Missing or unreadable files are reported per input when the batch runs.
            let name = p
                .file_name()
                .ok_or_else(|| usage(format!("{}: not a file name", p.display())))?;
            inputs.push(Input {
                source: p.clone(),
                rel: PathBuf::from(name),
                ops: None,
            });
        }
    }
    let mut seen: HashMap<PathBuf, &Path> = HashMap::new();
    for i in &inputs {
        let out = output_rel(&i.rel, format);
        // Case-insensitive file systems would merge these too.
        let key = PathBuf::from(out.to_string_lossy().to_lowercase());
        if let Some(prev) = seen.insert(key, &i.source) {
            return Err(usage(format!(
                "{} and {} would both be written to {}; rename one or give their folder instead",
                prev.display(),
                i.source.display(),
                out_dir.join(&out).display()
            )));
        }
    }
    Ok(inputs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_land_flat_and_folders_mirror() {
        let dir = tempfile::tempdir().unwrap();
        let shots = dir.path().join("shots/a/b");
        std::fs::create_dir_all(&shots).unwrap();
        std::fs::write(shots.join("photo.jpg"), b"x").unwrap();
        std::fs::write(shots.join("notes.txt"), b"x").unwrap();
        let out = dir.path().join("out");
        let got = collect_inputs(
            &[dir.path().join("shots"), PathBuf::from("x/single.png")],
            &out,
            OutputFormat::Same,
        )
        .unwrap();
        let rels: Vec<_> = got.iter().map(|i| i.rel.clone()).collect();
        assert_eq!(
            rels,
            vec![PathBuf::from("a/b/photo.jpg"), PathBuf::from("single.png")]
        );
        assert_eq!(
            output_rel(&rels[0], OutputFormat::Fixed(Format::Png)),
            PathBuf::from("a/b/photo.png")
        );
    }

    #[test]
    fn duplicate_names_are_refused() {
        let err = collect_inputs(
            &[PathBuf::from("a/photo.jpg"), PathBuf::from("b/photo.jpg")],
            Path::new("out"),
            OutputFormat::Same,
        )
        .unwrap_err();
        assert_eq!(err.kind, ErrorKind::Usage);
        // Different extensions collide once both become PNG.
        assert!(collect_inputs(
            &[PathBuf::from("a/photo.jpg"), PathBuf::from("b/photo.bmp")],
            Path::new("out"),
            OutputFormat::Fixed(Format::Png),
        )
        .is_err());
    }

    #[test]
    fn out_equal_to_input_folder_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let err = collect_inputs(&[dir.path().to_path_buf()], dir.path(), OutputFormat::Same)
            .unwrap_err();
        assert!(err.message.contains("input folder"), "{err}");
    }
}
