//! What to do to which input: a batch is inputs, a global pipeline and per-input
//! overrides (an override replaces the global pipeline for that input, as in the
//! original app), plus where each output lands.

use std::collections::{HashMap, HashSet};
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

    /// Checks, before anything runs, that every input has an op to go through (the ops
    /// themselves are valid by construction).
    pub fn validate(&self) -> Result<(), EngineError> {
        if self.pipeline.is_empty() && self.inputs.iter().any(|i| i.ops.is_none()) {
            return Err(EngineError::new(ErrorKind::Usage, "no operation given"));
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
/// folder is walked recursively (image extensions only) and mirrored. The output folder
/// is never walked, even when it lies inside an input folder, so a second run does not
/// take the first run's outputs for inputs. Refuses an output folder equal to an input
/// folder; [`Batch::check_outputs`] checks the files the batch will write.
pub fn collect_inputs(paths: &[PathBuf], out_dir: &Path) -> Result<Vec<Input>, EngineError> {
    let usage = |m: String| EngineError::new(ErrorKind::Usage, m);
    let out_canon = std::fs::canonicalize(out_dir).ok();
    let mut inputs = Vec::new();
    for p in paths {
        if p.is_dir() {
            let canon =
                std::fs::canonicalize(p).map_err(|e| usage(format!("{}: {e}", p.display())))?;
            if out_canon.as_ref() == Some(&canon) {
                return Err(usage(format!(
                    "the output folder {} is the input folder {}; choose another folder so no input is overwritten",
                    out_dir.display(),
                    p.display()
                )));
            }
            let mut found: Vec<PathBuf> = walkdir::WalkDir::new(p)
                .follow_links(false)
                .into_iter()
                .filter_entry(|e| {
                    !(e.file_type().is_dir()
                        && out_canon.is_some()
                        && std::fs::canonicalize(e.path()).ok() == out_canon)
                })
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
    Ok(inputs)
}

/// What `DIR/photo.jpg`'s features file is called after the stem: `.features.json`.
pub const FEATURES_SUFFIX: &str = ".features.json";

/// `DIR/photo.jpg` -> `DIR/photo.features.json`.
pub fn features_path(out: &Path) -> PathBuf {
    out.with_extension("features.json")
}

impl Batch {
    /// Every file input `i` writes under `out_dir` before any renaming: its output, and
    /// its features file when `features` is on and its pipeline finds any.
    pub fn written_paths(
        &self,
        i: usize,
        out_dir: &Path,
        format: OutputFormat,
        features: bool,
    ) -> Vec<PathBuf> {
        let out = out_dir.join(output_rel(&self.inputs[i].rel, format));
        let mut written = vec![out.clone()];
        if features && self.pipeline_for(i).iter().any(Op::finds_features) {
            written.push(features_path(&out));
        }
        written
    }

    /// Checks every file the batch will write (outputs, and features files where a
    /// feature op runs and `features` is on) before anything runs: two inputs may not
    /// write the same file, and no file written may be an input of the batch.
    pub fn check_outputs(
        &self,
        out_dir: &Path,
        format: OutputFormat,
        features: bool,
    ) -> Result<(), EngineError> {
        let usage = |m: String| EngineError::new(ErrorKind::Usage, m);
        // Case-insensitive file systems would merge names that differ in case only.
        let key = |p: &Path| PathBuf::from(p.to_string_lossy().to_lowercase());
        let out_abs = absolute(out_dir);
        let sources: HashSet<PathBuf> = self
            .inputs
            .iter()
            .filter_map(|i| std::fs::canonicalize(&i.source).ok())
            .map(|p| key(&p))
            .collect();
        let mut seen: HashMap<PathBuf, &Path> = HashMap::new();
        for (n, input) in self.inputs.iter().enumerate() {
            for w in self.written_paths(n, &out_abs, format, features) {
                if sources.contains(&key(&w)) {
                    return Err(usage(format!(
                        "{} would be written over {}, an input of this batch; choose another output folder",
                        input.source.display(),
                        w.display()
                    )));
                }
                if let Some(prev) = seen.insert(key(&w), &input.source) {
                    return Err(usage(format!(
                        "{} and {} would both be written to {}; rename one or give their folder instead",
                        prev.display(),
                        input.source.display(),
                        w.display()
                    )));
                }
            }
        }
        Ok(())
    }
}

/// `p` made absolute with its existing part resolved (links, `..`), so it compares with
/// canonical input paths even when the rest does not exist yet.
fn absolute(p: &Path) -> PathBuf {
    let mut existing = p.to_path_buf();
    let mut rest = Vec::new();
    loop {
        if let Ok(c) = std::fs::canonicalize(&existing) {
            return rest.iter().rev().fold(c, |acc: PathBuf, r| acc.join(r));
        }
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_os_string());
                existing = if parent.as_os_str().is_empty() {
                    PathBuf::from(".")
                } else {
                    parent.to_path_buf()
                };
            }
            _ => return p.to_path_buf(),
        }
    }
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

    fn batch(paths: &[PathBuf], out: &Path, op: &str) -> Batch {
        Batch {
            inputs: collect_inputs(paths, out).unwrap(),
            pipeline: Arc::from(vec![Op::default_for(op).unwrap()]),
        }
    }

    #[test]
    fn duplicate_names_are_refused() {
        let out = Path::new("out");
        let same = [PathBuf::from("a/photo.jpg"), PathBuf::from("b/photo.jpg")];
        let err = batch(&same, out, "erosion")
            .check_outputs(out, OutputFormat::Same, false)
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::Usage);
        // Different extensions collide once both become PNG.
        let two = [PathBuf::from("a/photo.jpg"), PathBuf::from("b/photo.bmp")];
        let png = OutputFormat::Fixed(Format::Png);
        assert!(batch(&two, out, "erosion")
            .check_outputs(out, png, false)
            .is_err());
        assert!(batch(&two, out, "erosion")
            .check_outputs(out, OutputFormat::Same, false)
            .is_ok());
    }

    #[test]
    fn features_files_are_part_of_the_check() {
        let out = Path::new("out");
        let two = [PathBuf::from("d/a.png"), PathBuf::from("d/a.jpg")];
        let same = OutputFormat::Same;
        // a.png and a.jpg both write a.features.json when a feature op runs with features on.
        let err = batch(&two, out, "sift")
            .check_outputs(out, same, true)
            .unwrap_err();
        assert!(err.message.contains("a.features.json"), "{err}");
        assert!(batch(&two, out, "sift")
            .check_outputs(out, same, false)
            .is_ok());
        assert!(batch(&two, out, "erosion")
            .check_outputs(out, same, true)
            .is_ok());
    }

    #[test]
    fn no_output_may_land_on_any_input() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        std::fs::create_dir_all(&out).unwrap();
        std::fs::write(dir.path().join("a.png"), b"x").unwrap();
        std::fs::write(out.join("a.png"), b"x").unwrap();
        // x/a.png lands on out/a.png, which is the second input.
        let inputs = [dir.path().join("a.png"), out.join("a.png")];
        let err = Batch {
            inputs: vec![
                Input {
                    source: inputs[0].clone(),
                    rel: PathBuf::from("a.png"),
                    ops: None,
                },
                Input {
                    source: inputs[1].clone(),
                    rel: PathBuf::from("b.png"),
                    ops: None,
                },
            ],
            pipeline: Arc::from(vec![Op::default_for("erosion").unwrap()]),
        }
        .check_outputs(&out, OutputFormat::Same, false)
        .unwrap_err();
        assert!(err.message.contains("an input of this batch"), "{err}");
    }

    #[test]
    fn the_output_folder_is_not_walked_when_inside_an_input_folder() {
        let dir = tempfile::tempdir().unwrap();
        let photos = dir.path().join("photos");
        std::fs::create_dir_all(photos.join("processed/sub")).unwrap();
        std::fs::write(photos.join("a.jpg"), b"x").unwrap();
        std::fs::write(photos.join("processed/a.jpg"), b"x").unwrap();
        std::fs::write(photos.join("processed/sub/b.jpg"), b"x").unwrap();
        // Given with a different spelling, still recognised.
        let out = photos.join("./processed");
        let got = collect_inputs(std::slice::from_ref(&photos), &out).unwrap();
        let rels: Vec<_> = got.iter().map(|i| i.rel.clone()).collect();
        assert_eq!(rels, vec![PathBuf::from("a.jpg")]);
    }

    #[test]
    fn out_equal_to_input_folder_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let err = collect_inputs(&[dir.path().to_path_buf()], dir.path()).unwrap_err();
        assert!(err.message.contains("input folder"), "{err}");
    }
}
