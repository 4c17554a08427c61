//! Saving results out of the work folder: names from the source and the op, a
//! "Processed Images" folder for Save all (as the original app had), and a policy for
//! names already taken (a numbered suffix by default, as `prism process` does). Files
//! are placed by the engine's `output` module: exclusive random temporaries beside the
//! target, moved in one step, never replacing what the policy says to keep.

use std::path::{Path, PathBuf};

use prism_engine::codec::Format;
use prism_engine::job::claimed_format;
use prism_engine::output::{self, OnExists, Placed};

use crate::error::AppError;

/// The subfolder Save all writes into.
pub const SAVE_ALL_FOLDER: &str = "Processed Images";

/// `photo.jpg` processed by `sift` into JPEG -> `photo-sift.jpg`. The source's own
/// extension is kept when it names the output's format (`scan.TIF` -> `scan-sift.TIF`).
pub fn suggested_name(source_name: &str, op_id: &str, format: Format) -> String {
    let path = Path::new(source_name);
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "image".into());
    let ext = match (claimed_format(path), path.extension()) {
        (Some(f), Some(e)) if f == format => e.to_string_lossy().into_owned(),
        _ => format.extension().to_string(),
    };
    format!("{stem}-{op_id}.{ext}")
}

/// Saves one result where the user chose in the save dialog (which already asked before
/// replacing that name). When the chosen name's extension does not match the result's
/// format, the right extension is used instead, and that name is never overwritten.
pub fn save_one(output: &Path, dest: &Path, format: Format) -> Result<PathBuf, AppError> {
    let dir = dest
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .ok_or_else(|| AppError::Io(format!("{} is not a file path", dest.display())))?;
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "image".into());
    let (stem, ext) = output::split_name(&name);
    let (ext, policy) = if claimed_format(dest) == Some(format) {
        (ext, OnExists::Overwrite)
    } else {
        (format!(".{}", format.extension()), OnExists::Rename)
    };
    match copy(output, dir, &stem, &ext, policy)? {
        SaveOutcome::Written(p) => Ok(p),
        SaveOutcome::Skipped(p) => Err(AppError::Io(format!("{} is there", p.display()))),
    }
}

/// Writes `text` to `dest` (a preset export) through a temporary file beside it, so a
/// failed write leaves any file that was there whole. The save dialog already asked
/// before replacing `dest`.
pub fn write_text(dest: &Path, text: &str) -> Result<(), AppError> {
    use std::io::Write;
    let dir = dest
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .ok_or_else(|| AppError::Io(format!("{} is not a file path", dest.display())))?;
    let fail = |e: std::io::Error| AppError::Io(format!("cannot write {}: {e}", dest.display()));
    let mut tmp = output::temp_in(dir).map_err(fail)?;
    tmp.write_all(text.as_bytes())
        .and_then(|_| tmp.as_file().sync_all())
        .map_err(fail)?;
    tmp.persist(dest).map_err(|e| fail(e.error))?;
    Ok(())
}

/// What Save all did: the folder, the files written, the names skipped because a file
/// was there (policy `skip`), and the names not written with why.
pub struct SavedAll {
    /// The "Processed Images" folder.
    pub folder: PathBuf,
    /// Files written, in order.
    pub written: Vec<PathBuf>,
    /// Names left alone because a file of that name was there.
    pub skipped: Vec<String>,
    /// Names not written, with the reason.
    pub failed: Vec<(String, AppError)>,
}

/// Copies every `(output, name)` into `dir/Processed Images/`, creating it; a name that
/// is taken is handled by `policy`. One failure does not stop the others.
pub fn save_all(
    items: &[(PathBuf, String)],
    dir: &Path,
    policy: OnExists,
) -> Result<SavedAll, AppError> {
    if !dir.is_dir() {
        return Err(AppError::Io(format!("{} is not a folder", dir.display())));
    }
    let folder = dir.join(SAVE_ALL_FOLDER);
    std::fs::create_dir_all(&folder)
        .map_err(|e| AppError::Io(format!("cannot create {}: {e}", folder.display())))?;
    let mut report = SavedAll {
        folder: folder.clone(),
        written: Vec::with_capacity(items.len()),
        skipped: Vec::new(),
        failed: Vec::new(),
    };
    for (output, name) in items {
        let (stem, ext) = output::split_name(name);
        match copy(output, &folder, &stem, &ext, policy) {
            Ok(SaveOutcome::Written(p)) => report.written.push(p),
            Ok(SaveOutcome::Skipped(_)) => report.skipped.push(name.clone()),
            Err(e) => report.failed.push((name.clone(), e)),
        }
    }
    Ok(report)
}

enum SaveOutcome {
    Written(PathBuf),
    Skipped(PathBuf),
}

fn copy(
    src: &Path,
    dir: &Path,
    stem: &str,
    ext: &str,
    policy: OnExists,
) -> Result<SaveOutcome, AppError> {
    match output::copy_into(src, dir, stem, ext, policy) {
        Ok(Placed::Written(mut p)) => Ok(SaveOutcome::Written(p.remove(0))),
        Ok(Placed::Skipped(p)) => Ok(SaveOutcome::Skipped(p)),
        Err(e) => Err(AppError::Io(format!(
            "cannot save {} into {}: {e}",
            src.display(),
            dir.display()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_come_from_source_and_op() {
        assert_eq!(
            suggested_name("photo.jpg", "sift", Format::Jpeg),
            "photo-sift.jpg"
        );
        assert_eq!(
            suggested_name("scan.TIF", "erosion", Format::Tiff),
            "scan-erosion.TIF"
        );
        assert_eq!(
            suggested_name("photo.jpg", "edge-detection", Format::Png),
            "photo-edge-detection.png"
        );
    }

    #[test]
    fn save_all_never_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("out.png");
        std::fs::write(&src, b"new").unwrap();
        let dest = dir.path().join("dest");
        std::fs::create_dir_all(dest.join(SAVE_ALL_FOLDER)).unwrap();
        let existing = dest.join(SAVE_ALL_FOLDER).join("a-sift.png");
        std::fs::write(&existing, b"old").unwrap();
        let items = vec![
            (src.clone(), "a-sift.png".to_string()),
            (src.clone(), "a-sift.png".to_string()),
            (src.clone(), "b-sift.png".to_string()),
        ];
        let SavedAll {
            folder,
            written,
            failed,
            ..
        } = save_all(&items, &dest, OnExists::Rename).unwrap();
        assert!(failed.is_empty());
        assert_eq!(folder, dest.join(SAVE_ALL_FOLDER));
        let names: Vec<_> = written
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["a-sift (2).png", "a-sift (3).png", "b-sift.png"]);
        assert_eq!(std::fs::read(&existing).unwrap(), b"old");
        assert_eq!(std::fs::read(&written[0]).unwrap(), b"new");
        // No temporary files are left behind.
        let leftovers = std::fs::read_dir(&folder)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .starts_with('.')
            })
            .count();
        assert_eq!(leftovers, 0);
        assert!(save_all(&items, &dir.path().join("missing"), OnExists::Rename).is_err());
        // Skip leaves every taken name alone; overwrite replaces.
        let r = save_all(&items[2..], &dest, OnExists::Skip).unwrap();
        assert_eq!(
            (r.written.len(), r.skipped.as_slice()),
            (0, &["b-sift.png".to_string()][..])
        );
        std::fs::write(&src, b"newer").unwrap();
        let r = save_all(&items[..1], &dest, OnExists::Overwrite).unwrap();
        assert_eq!(r.written, std::slice::from_ref(&existing));
        assert_eq!(std::fs::read(&existing).unwrap(), b"newer");
    }

    #[test]
    fn save_all_goes_on_past_a_result_that_cannot_be_copied() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("out.png");
        std::fs::write(&src, b"new").unwrap();
        let items = vec![
            (dir.path().join("gone.png"), "a-sift.png".to_string()),
            (src, "b-sift.png".to_string()),
        ];
        let SavedAll {
            folder,
            written,
            failed,
            ..
        } = save_all(&items, dir.path(), OnExists::Rename).unwrap();
        assert_eq!(written, [folder.join("b-sift.png")]);
        assert_eq!(failed.len(), 1);
        assert_eq!(failed[0].0, "a-sift.png");
        assert!(!folder.join("a-sift.png").exists());
    }

    #[test]
    fn save_one_fixes_a_wrong_extension_without_overwriting() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("out.png");
        std::fs::write(&src, b"png").unwrap();
        // Matching extension: written where chosen (the dialog confirmed any replace).
        let chosen = dir.path().join("mine.png");
        std::fs::write(&chosen, b"old").unwrap();
        assert_eq!(save_one(&src, &chosen, Format::Png).unwrap(), chosen);
        assert_eq!(std::fs::read(&chosen).unwrap(), b"png");
        // Wrong extension: the right one is used, and an existing file is kept.
        let got = save_one(&src, &dir.path().join("mine.jpg"), Format::Png).unwrap();
        assert_eq!(got, dir.path().join("mine (2).png"));
        assert_eq!(std::fs::read(&chosen).unwrap(), b"png");
    }
}
