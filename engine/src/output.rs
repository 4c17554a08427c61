//! Putting files into an output folder without losing one: every file is written to a
//! fresh temporary file beside its target (exclusive create, random name, so a planted
//! file or symlink cannot redirect the write) and then moved to its name in one step,
//! replacing what is there only when the caller asked for it.
//!
//! The temporary files come from `tempfile` (O_EXCL, removed when dropped on any error
//! path); the no-replace move is its `persist_noclobber` (`renameat2(RENAME_NOREPLACE)`,
//! or a hard link where that is missing), so a file that appears meanwhile is never
//! replaced.

use std::fmt;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// What to do when a file to be written is already there.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnExists {
    /// Replace it.
    Overwrite,
    /// Leave it, and skip the input that would have written it.
    Skip,
    /// Write under the next free numbered name: `photo (2).jpg`.
    #[default]
    Rename,
}

impl OnExists {
    /// Every policy's name, as the CLI and the app spell them.
    pub const NAMES: [&'static str; 3] = ["overwrite", "skip", "rename"];
}

impl FromStr for OnExists {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "overwrite" => Ok(OnExists::Overwrite),
            "skip" => Ok(OnExists::Skip),
            "rename" => Ok(OnExists::Rename),
            other => Err(format!(
                "{other}: expected one of {}",
                OnExists::NAMES.join(", ")
            )),
        }
    }
}

impl fmt::Display for OnExists {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            OnExists::Overwrite => "overwrite",
            OnExists::Skip => "skip",
            OnExists::Rename => "rename",
        })
    }
}

/// How many numbered names are tried before giving up.
pub const MAX_SUFFIX: u32 = 10_000;

/// What became of a group of files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Placed {
    /// Every file was written, at these paths, in the order given.
    Written(Vec<PathBuf>),
    /// A file was already there (this one) and the policy was `skip`: nothing was written.
    Skipped(PathBuf),
}

/// `stem` for `n == 1`, else `stem (n)`.
pub fn numbered_stem(stem: &str, n: u32) -> String {
    if n <= 1 {
        stem.to_string()
    } else {
        format!("{stem} ({n})")
    }
}

/// A temporary file in `dir`, created exclusively under a random hidden name, with the
/// permissions a plain new file would get (the umask applies), removed when dropped.
pub fn temp_in(dir: &Path) -> io::Result<tempfile::NamedTempFile> {
    let mut b = tempfile::Builder::new();
    b.prefix(".prism-").suffix(".tmp").rand_bytes(12);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        b.permissions(std::fs::Permissions::from_mode(0o666));
    }
    b.tempfile_in(dir)
}

/// Writes files that belong together (an image and its features) into `dir`, named
/// `stem + suffix` each, e.g. `photo` + [`.jpg`, `.features.json`]. With `rename`, the
/// whole group moves to the first number free for all of them (`photo (2).jpg` with
/// `photo (2).features.json`); with `skip`, nothing is written when one name is taken.
pub fn write_group(
    dir: &Path,
    stem: &str,
    files: &[(&str, &[u8])],
    policy: OnExists,
) -> io::Result<Placed> {
    let last = if policy == OnExists::Rename {
        MAX_SUFFIX
    } else {
        1
    };
    for n in 1..=last {
        let stem_n = numbered_stem(stem, n);
        let targets: Vec<PathBuf> = files
            .iter()
            .map(|(suffix, _)| dir.join(format!("{stem_n}{suffix}")))
            .collect();
        if policy == OnExists::Overwrite {
            for (target, (_, bytes)) in targets.iter().zip(files) {
                let tmp = filled_temp(dir, bytes)?;
                tmp.persist(target).map_err(|e| e.error)?;
            }
            return Ok(Placed::Written(targets));
        }
        // A cheap look first, so a taken group costs no temporary writes.
        if let Some(taken) = targets.iter().find(|t| t.symlink_metadata().is_ok()) {
            if policy == OnExists::Skip {
                return Ok(Placed::Skipped(taken.clone()));
            }
            continue;
        }
        match place_all(dir, &targets, files)? {
            None => return Ok(Placed::Written(targets)),
            Some(taken) if policy == OnExists::Skip => return Ok(Placed::Skipped(taken)),
            Some(_) => continue,
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AlreadyExists,
        format!(
            "{} already has {MAX_SUFFIX} files named like {stem}",
            dir.display()
        ),
    ))
}

/// Moves each file to its target without replacing anything. When a target turns out
/// to be taken, the files this call already placed are removed again (they are ours)
/// and the taken path is returned.
fn place_all(
    dir: &Path,
    targets: &[PathBuf],
    files: &[(&str, &[u8])],
) -> io::Result<Option<PathBuf>> {
    let mut placed: Vec<&PathBuf> = Vec::new();
    let undo = |placed: &[&PathBuf]| {
        for p in placed {
            let _ = std::fs::remove_file(p);
        }
    };
    for (target, (_, bytes)) in targets.iter().zip(files) {
        let tmp = match filled_temp(dir, bytes) {
            Ok(t) => t,
            Err(e) => {
                undo(&placed);
                return Err(e);
            }
        };
        match tmp.persist_noclobber(target) {
            Ok(_) => placed.push(target),
            Err(e) if e.error.kind() == io::ErrorKind::AlreadyExists => {
                undo(&placed);
                return Ok(Some(target.clone()));
            }
            Err(e) => {
                undo(&placed);
                return Err(e.error);
            }
        }
    }
    Ok(None)
}

fn filled_temp(dir: &Path, bytes: &[u8]) -> io::Result<tempfile::NamedTempFile> {
    let mut tmp = temp_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.flush()?;
    Ok(tmp)
}

/// Copies `src` into `dir` as `stem + suffix` under `policy` (the app's Save).
pub fn copy_into(
    src: &Path,
    dir: &Path,
    stem: &str,
    suffix: &str,
    policy: OnExists,
) -> io::Result<Placed> {
    // Results are at most a few hundred MB and already fit in memory once.
    let bytes = std::fs::read(src)?;
    write_group(dir, stem, &[(suffix, &bytes)], policy)
}

/// `photo.jpg` -> (`photo`, `.jpg`); `archive.tar.gz` -> (`archive.tar`, `.gz`);
/// `noext` -> (`noext`, ``).
pub fn split_name(name: &str) -> (String, String) {
    let p = Path::new(name);
    match (p.file_stem(), p.extension()) {
        (Some(stem), Some(ext)) => (
            stem.to_string_lossy().into_owned(),
            format!(".{}", ext.to_string_lossy()),
        ),
        _ => (name.to_string(), String::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn rename_moves_the_whole_group_to_a_free_number() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.png"), b"old").unwrap();
        // Only the features name of number 2 is taken: the group goes to 3.
        std::fs::write(dir.path().join("a (2).features.json"), b"old").unwrap();
        let got = write_group(
            dir.path(),
            "a",
            &[(".png", b"img"), (".features.json", b"{}")],
            OnExists::Rename,
        )
        .unwrap();
        assert_eq!(
            got,
            Placed::Written(vec![
                dir.path().join("a (3).png"),
                dir.path().join("a (3).features.json")
            ])
        );
        assert_eq!(std::fs::read(dir.path().join("a.png")).unwrap(), b"old");
        assert_eq!(
            names(dir.path()),
            [
                "a (2).features.json",
                "a (3).features.json",
                "a (3).png",
                "a.png"
            ]
        );
    }

    #[test]
    fn skip_writes_nothing_and_overwrite_replaces() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.features.json"), b"old").unwrap();
        let files: &[(&str, &[u8])] = &[(".png", b"img"), (".features.json", b"{}")];
        let got = write_group(dir.path(), "a", files, OnExists::Skip).unwrap();
        assert_eq!(got, Placed::Skipped(dir.path().join("a.features.json")));
        assert_eq!(names(dir.path()), ["a.features.json"]);
        let got = write_group(dir.path(), "a", files, OnExists::Overwrite).unwrap();
        assert!(matches!(got, Placed::Written(_)));
        assert_eq!(
            std::fs::read(dir.path().join("a.features.json")).unwrap(),
            b"{}"
        );
        assert_eq!(names(dir.path()), ["a.features.json", "a.png"]);
    }

    #[cfg(unix)]
    #[test]
    fn a_planted_symlink_is_never_followed() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, b"precious").unwrap();
        std::os::unix::fs::symlink(&victim, dir.path().join("a.png")).unwrap();
        let got = write_group(dir.path(), "a", &[(".png", b"img")], OnExists::Rename).unwrap();
        assert_eq!(got, Placed::Written(vec![dir.path().join("a (2).png")]));
        assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
        // No temporary is left behind.
        assert_eq!(names(dir.path()), ["a (2).png", "a.png", "victim"]);
    }

    #[cfg(unix)]
    #[test]
    fn new_files_get_the_permissions_of_a_plain_new_file() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        write_group(dir.path(), "a", &[(".png", b"img")], OnExists::Rename).unwrap();
        std::fs::write(dir.path().join("plain"), b"x").unwrap();
        let mode = |n: &str| {
            std::fs::metadata(dir.path().join(n))
                .unwrap()
                .permissions()
                .mode()
        };
        // Not the owner-only mode temporary files are usually created with.
        assert_eq!(mode("a.png"), mode("plain"));
    }

    #[test]
    fn a_failed_write_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        // The target's parent is a file: the move fails after the temporary was written.
        std::fs::write(dir.path().join("sub"), b"file").unwrap();
        let err = write_group(
            dir.path(),
            "sub/a",
            &[(".png", b"img")],
            OnExists::Overwrite,
        );
        assert!(err.is_err());
        assert_eq!(names(dir.path()), ["sub"]);
    }

    #[test]
    fn policy_names_round_trip() {
        for n in OnExists::NAMES {
            assert_eq!(n.parse::<OnExists>().unwrap().to_string(), n);
        }
        assert!("clobber".parse::<OnExists>().is_err());
        assert_eq!(numbered_stem("a-sift", 1), "a-sift");
        assert_eq!(numbered_stem("a-sift", 3), "a-sift (3)");
        assert_eq!(split_name("photo.jpg"), ("photo".into(), ".jpg".into()));
        assert_eq!(split_name("noext"), ("noext".into(), String::new()));
    }
}
