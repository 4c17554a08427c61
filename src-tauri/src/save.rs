//! Saving results out of the work folder: names from the source and the op, a
//! "Processed Images" folder for Save all (as the original app had), and never
//! overwriting a file that is already there (a numbered suffix instead).

use std::fs::OpenOptions;
use std::io::ErrorKind as IoKind;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use prism_engine::codec::Format;
use prism_engine::job::claimed_format;

use crate::error::AppError;

/// The subfolder Save all writes into.
pub const SAVE_ALL_FOLDER: &str = "Processed Images";

/// How many numbered names are tried before giving up.
const MAX_SUFFIX: u32 = 10_000;

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

/// `name` for `n == 1`, else `stem (n).ext`.
pub fn numbered(name: &str, n: u32) -> String {
    if n <= 1 {
        return name.to_string();
    }
    let path = Path::new(name);
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    match path.extension() {
        Some(ext) => format!("{stem} ({n}).{}", ext.to_string_lossy()),
        None => format!("{stem} ({n})"),
    }
}

/// Saves one result where the user chose in the save dialog (which already asked before
/// replacing that name). When the chosen name's extension does not match the result's
/// format, the right extension is used instead, and that name is never overwritten.
pub fn save_one(output: &Path, dest: &Path, format: Format) -> Result<PathBuf, AppError> {
    let dir = dest
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .ok_or_else(|| AppError::Io(format!("{} is not a file path", dest.display())))?;
    if claimed_format(dest) == Some(format) {
        let tmp = temp_copy(output, dir)?;
        return std::fs::rename(&tmp, dest)
            .map(|_| dest.to_path_buf())
            .map_err(|e| {
                let _ = std::fs::remove_file(&tmp);
                AppError::Io(format!("cannot write {}: {e}", dest.display()))
            });
    }
    let stem = dest
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "image".into());
    let name = format!("{stem}.{}", format.extension());
    copy_no_overwrite(output, dir, &name)
}

/// What Save all did: the folder, the files written, and the names not written with why.
pub type SavedAll = (PathBuf, Vec<PathBuf>, Vec<(String, AppError)>);

/// Copies every `(output, name)` into `dir/Processed Images/`, creating it, never
/// overwriting. Returns the folder, the files written in order, and the names that
/// could not be written with the reason: one failure does not stop the others.
pub fn save_all(items: &[(PathBuf, String)], dir: &Path) -> Result<SavedAll, AppError> {
    if !dir.is_dir() {
        return Err(AppError::Io(format!("{} is not a folder", dir.display())));
    }
    let folder = dir.join(SAVE_ALL_FOLDER);
    std::fs::create_dir_all(&folder)
        .map_err(|e| AppError::Io(format!("cannot create {}: {e}", folder.display())))?;
    let mut written = Vec::with_capacity(items.len());
    let mut failed = Vec::new();
    for (output, name) in items {
        match copy_no_overwrite(output, &folder, name) {
            Ok(p) => written.push(p),
            Err(e) => failed.push((name.clone(), e)),
        }
    }
    Ok((folder, written, failed))
}

/// Copies `src` into `dir` as `name`, or `name (2)`, `name (3)`, ... whichever is free.
/// The bytes go to a temporary file first and are hard-linked to the final name, which
/// fails atomically when the name exists, so a file appearing meanwhile is not
/// overwritten and a crash leaves no half-written file under a final name.
pub fn copy_no_overwrite(src: &Path, dir: &Path, name: &str) -> Result<PathBuf, AppError> {
    let tmp = temp_copy(src, dir)?;
    let result = place(&tmp, dir, name);
    let _ = std::fs::remove_file(&tmp);
    result
}

fn place(tmp: &Path, dir: &Path, name: &str) -> Result<PathBuf, AppError> {
    let write_err =
        |p: &Path, e: std::io::Error| AppError::Io(format!("cannot write {}: {e}", p.display()));
    for n in 1..=MAX_SUFFIX {
        let candidate = dir.join(numbered(name, n));
        match std::fs::hard_link(tmp, &candidate) {
            Ok(()) => return Ok(candidate),
            Err(e) if e.kind() == IoKind::AlreadyExists => continue,
            // File systems without hard links (FAT, some network shares): exclusive create.
            Err(_) => match OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&candidate)
            {
                Ok(mut f) => {
                    let copied = std::fs::File::open(tmp)
                        .and_then(|mut from| std::io::copy(&mut from, &mut f))
                        .and_then(|_| f.sync_all());
                    return match copied {
                        Ok(()) => Ok(candidate),
                        Err(e) => {
                            let _ = std::fs::remove_file(&candidate);
                            Err(write_err(&candidate, e))
                        }
                    };
                }
                Err(e) if e.kind() == IoKind::AlreadyExists => continue,
                Err(e) => return Err(write_err(&candidate, e)),
            },
        }
    }
    Err(AppError::Io(format!(
        "{} already has {MAX_SUFFIX} files named like {name}",
        dir.display()
    )))
}

/// Copies `src` to a hidden temporary file in `dir` (the same file system as the target).
fn temp_copy(src: &Path, dir: &Path) -> Result<PathBuf, AppError> {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let tmp = dir.join(format!(
        ".prism-save-{}-{}.tmp",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::copy(src, &tmp).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        AppError::Io(format!(
            "cannot copy {} to {}: {e}",
            src.display(),
            dir.display()
        ))
    })?;
    Ok(tmp)
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
        assert_eq!(numbered("a-sift.jpg", 1), "a-sift.jpg");
        assert_eq!(numbered("a-sift.jpg", 3), "a-sift (3).jpg");
        assert_eq!(numbered("noext", 2), "noext (2)");
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
        let (folder, written, failed) = save_all(&items, &dest).unwrap();
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
        assert!(save_all(&items, &dir.path().join("missing")).is_err());
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
        let (folder, written, failed) = save_all(&items, dir.path()).unwrap();
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
