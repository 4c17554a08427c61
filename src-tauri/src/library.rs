//! The images the user added: where each one is, its own chain when it has one, its state in
//! the current or last batch, and its latest result.
//!
//! Ids are never reused, so a URL naming an id (thumbnails, results) can be cached.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use prism_engine::codec::Format;
use prism_engine::exec::Timings;
use prism_engine::job::claimed_format;
use prism_engine::{ErrorKind, Op};
use serde::Serialize;

use crate::error::hint_for;

/// An image's id in the library.
pub type ImageId = u64;

/// The most images one library holds; past this the grid stops being usable anyway.
pub const MAX_IMAGES: usize = 10_000;

/// Where an image stands.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(
    tag = "state",
    rename_all = "kebab-case",
    rename_all_fields = "camelCase"
)]
pub enum ImageState {
    /// Added, not processed yet (or its last result stands).
    Idle,
    /// Waiting in a batch.
    Queued,
    /// A worker has it.
    Running {
        /// `local` or a node's address.
        worker: String,
    },
    /// The last batch processed it.
    Done,
    /// The last batch failed on it.
    Failed {
        /// The fault.
        kind: ErrorKind,
        /// What happened.
        message: String,
        /// What to do about it.
        hint: String,
    },
}

impl ImageState {
    /// A failed state with the hint for its kind.
    pub fn failed(kind: ErrorKind, message: impl Into<String>) -> Self {
        ImageState::Failed {
            kind,
            message: message.into(),
            hint: hint_for(kind).to_string(),
        }
    }
}

/// A processed output waiting in the work folder.
#[derive(Clone, Debug)]
pub struct ResultRecord {
    /// Changes on every new result, so result URLs can be cached.
    pub rev: u64,
    /// The output file in the work folder.
    pub output: PathBuf,
    /// The chain that made it, in order.
    pub ops: Vec<Op>,
    /// The output's format.
    pub format: Format,
    /// Who processed it.
    pub worker: String,
    /// Keypoints found, for feature ops (corners, SIFT).
    pub keypoints: Option<usize>,
    /// Per-stage times.
    pub timings: Timings,
}

/// One image of the library.
#[derive(Clone, Debug)]
pub struct Entry {
    /// Its id.
    pub id: ImageId,
    /// The file, canonical.
    pub source: PathBuf,
    /// The file name, for display and output names.
    pub name: String,
    /// Its own chain, replacing the global one in batches.
    pub override_ops: Option<Vec<Op>>,
    /// Where it stands.
    pub state: ImageState,
    /// Its latest result.
    pub result: Option<ResultRecord>,
}

/// What the UI shows of an image.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageView {
    /// Its id.
    pub id: ImageId,
    /// The file name.
    pub name: String,
    /// The full path.
    pub path: String,
    /// Its own chain, if any.
    #[serde(rename = "override")]
    pub override_ops: Option<Vec<Op>>,
    /// Where it stands.
    pub state: ImageState,
    /// Its latest result.
    pub result: Option<ResultView>,
}

/// What the UI shows of a result.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ResultView {
    /// Part of the result's pixel URL.
    pub rev: u64,
    /// The chain that made it, in order.
    pub ops: Vec<Op>,
    /// Who processed it.
    pub worker: String,
    /// Keypoints found, for feature ops.
    pub keypoints: Option<usize>,
    /// Per-stage times in milliseconds.
    pub timings_ms: Timings,
    /// The name Save proposes.
    pub suggested_name: String,
}

/// A path that was not added, and why.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Skipped {
    /// The path as given.
    pub path: String,
    /// Why, in words a user can act on.
    pub reason: String,
}

/// What adding paths did.
#[derive(Clone, Debug, Serialize)]
pub struct AddReport {
    /// New images, in order.
    pub added: Vec<ImageView>,
    /// Paths not added.
    pub skipped: Vec<Skipped>,
}

/// The images, in the order they were added.
#[derive(Debug, Default)]
pub struct Library {
    entries: Vec<Entry>,
    next_id: ImageId,
    next_rev: u64,
}

impl Library {
    /// An empty library.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds files, and every image under folders (recursively, sorted). Paths already in
    /// the library, missing paths and files that are not images are skipped with a reason.
    pub fn add(&mut self, paths: &[PathBuf]) -> AddReport {
        let (files, skipped) = expand(paths);
        self.insert(files, skipped)
    }

    /// Adds files [`expand`] found (walking folders needs no lock on the library).
    pub fn insert(&mut self, files: Vec<PathBuf>, skipped: Vec<Skipped>) -> AddReport {
        let mut report = AddReport {
            added: Vec::new(),
            skipped,
        };
        let mut known: HashSet<PathBuf> = self.entries.iter().map(|e| e.source.clone()).collect();
        for file in files {
            if known.contains(&file) {
                report.skipped.push(skipped_for(&file, "already added"));
                continue;
            }
            if self.entries.len() >= MAX_IMAGES {
                // One line for the lot, not one per file.
                report.skipped.push(skipped_for(
                    &file,
                    "the library is full (10000 images): this and the files after it were not added; remove some first",
                ));
                break;
            }
            let id = self.next_id;
            self.next_id += 1;
            let name = file
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            known.insert(file.clone());
            self.entries.push(Entry {
                id,
                source: file,
                name,
                override_ops: None,
                state: ImageState::Idle,
                result: None,
            });
            if let Some(v) = self.view(id) {
                report.added.push(v);
            }
        }
        report
    }

    /// Removes images, deleting their outputs from the work folder.
    pub fn remove(&mut self, ids: &[ImageId]) {
        for output in self.take(ids) {
            remove_output(&output);
        }
    }

    /// Removes images and returns their outputs, for the caller to delete once it no
    /// longer holds the library (deleting thousands of files takes a while).
    pub fn take(&mut self, ids: &[ImageId]) -> Vec<PathBuf> {
        let ids: HashSet<ImageId> = ids.iter().copied().collect();
        let mut outputs = Vec::new();
        self.entries.retain(|e| {
            let keep = !ids.contains(&e.id);
            if !keep {
                if let Some(r) = &e.result {
                    outputs.push(r.output.clone());
                }
            }
            keep
        });
        outputs
    }

    /// Every image, in order.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// One image.
    pub fn get(&self, id: ImageId) -> Option<&Entry> {
        self.position(id).map(|i| &self.entries[i])
    }

    /// One image, to change.
    pub fn get_mut(&mut self, id: ImageId) -> Option<&mut Entry> {
        self.position(id).map(|i| &mut self.entries[i])
    }

    /// Where image `id` is in `entries`. Ids are handed out in increasing order and
    /// entries are only appended or removed, so they stay sorted by id: a binary search
    /// keeps each batch event's look-up cheap with tens of thousands of images.
    fn position(&self, id: ImageId) -> Option<usize> {
        self.entries.binary_search_by_key(&id, |e| e.id).ok()
    }

    /// Sets or clears an image's own op. Returns false for an unknown id.
    pub fn set_override(&mut self, id: ImageId, ops: Option<Vec<Op>>) -> bool {
        match self.get_mut(id) {
            Some(e) => {
                e.override_ops = ops;
                true
            }
            None => false,
        }
    }

    /// Ids of images whose last batch failed on them (cancelled ones included).
    pub fn failed_ids(&self) -> Vec<ImageId> {
        self.entries
            .iter()
            .filter(|e| matches!(e.state, ImageState::Failed { .. }))
            .map(|e| e.id)
            .collect()
    }

    /// Stores a new result, deleting the one it replaces. Returns its rev.
    pub fn record_result(&mut self, id: ImageId, mut record: ResultRecord) -> Option<u64> {
        self.next_rev += 1;
        let rev = self.next_rev;
        let e = self.get_mut(id)?;
        record.rev = rev;
        if let Some(old) = e.result.replace(record) {
            if Some(&old.output) != e.result.as_ref().map(|r| &r.output) {
                remove_output(&old.output);
            }
        }
        e.state = ImageState::Done;
        Some(rev)
    }

    /// What the UI shows of one image.
    pub fn view(&self, id: ImageId) -> Option<ImageView> {
        let e = self.get(id)?;
        Some(ImageView {
            id: e.id,
            name: e.name.clone(),
            path: e.source.display().to_string(),
            override_ops: e.override_ops.clone(),
            state: e.state.clone(),
            result: e.result.as_ref().map(|r| result_view(e, r)),
        })
    }

    /// What the UI shows of every image.
    pub fn views(&self) -> Vec<ImageView> {
        self.entries
            .iter()
            .filter_map(|e| self.view(e.id))
            .collect()
    }
}

fn skipped_for(p: &Path, reason: &str) -> Skipped {
    Skipped {
        path: p.display().to_string(),
        reason: reason.to_string(),
    }
}

/// Turns dropped or picked paths into image files: files by their extension, folders
/// walked recursively (sorted), everything canonical. The rest is skipped with a reason.
pub fn expand(paths: &[PathBuf]) -> (Vec<PathBuf>, Vec<Skipped>) {
    let mut files = Vec::new();
    let mut skipped = Vec::new();
    // A drop of `/` or a home folder must not walk for minutes: stop once the library
    // could not take more, or after this many entries of any kind.
    let mut budget = MAX_WALK_ENTRIES;
    for given in paths.iter().take(MAX_WALK_ENTRIES) {
        if files.len() >= MAX_IMAGES || budget == 0 {
            skipped.push(skipped_for(given, STOPPED));
            break;
        }
        let Ok(canon) = std::fs::canonicalize(given) else {
            skipped.push(skipped_for(given, "not found"));
            continue;
        };
        if canon.is_dir() {
            let mut found = Vec::new();
            let mut stopped = false;
            for e in walkdir::WalkDir::new(&canon).follow_links(false) {
                if budget == 0 || files.len() + found.len() >= MAX_IMAGES {
                    stopped = true;
                    break;
                }
                budget -= 1;
                let Ok(e) = e else { continue };
                if e.file_type().is_file() && claimed_format(e.path()).is_some() {
                    found.push(e.into_path());
                }
            }
            if stopped {
                skipped.push(skipped_for(given, STOPPED));
            } else if found.is_empty() {
                skipped.push(skipped_for(
                    given,
                    "no JPEG, PNG, WebP, TIFF or BMP images in this folder",
                ));
            }
            found.sort();
            files.extend(found);
        } else if claimed_format(&canon).is_none() {
            skipped.push(skipped_for(
                given,
                "not a JPEG, PNG, WebP, TIFF or BMP file (by its extension)",
            ));
        } else {
            files.push(canon);
        }
    }
    (files, skipped)
}

/// Files and folders looked at, at most, for one add.
pub const MAX_WALK_ENTRIES: usize = 1_000_000;

const STOPPED: &str =
    "stopped looking here: 10000 images or a million files seen; add smaller folders";

fn result_view(e: &Entry, r: &ResultRecord) -> ResultView {
    ResultView {
        rev: r.rev,
        ops: r.ops.clone(),
        worker: r.worker.clone(),
        keypoints: r.keypoints,
        timings_ms: r.timings,
        suggested_name: crate::save::suggested_name(&e.name, &chain_name(&r.ops), r.format),
    }
}

/// A chain's ops by id, `+` between them, for file names: `edge-detection+dilation`.
pub fn chain_name(ops: &[Op]) -> String {
    ops.iter().map(|o| o.id()).collect::<Vec<_>>().join("+")
}

/// Deletes an output and its features file; they are the app's own copies in the work
/// folder, so a failure only leaves a file the next start clears.
pub(crate) fn remove_output(output: &Path) {
    let _ = std::fs::remove_file(output);
    let _ = std::fs::remove_file(prism_engine::exec::features_path(output));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(p: &Path) {
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, b"x").unwrap();
    }

    #[test]
    fn adds_files_and_folders_recursively_once() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        touch(&d.join("shots/b.png"));
        touch(&d.join("shots/deep/a.JPG"));
        touch(&d.join("shots/notes.txt"));
        touch(&d.join("single.webp"));
        touch(&d.join("readme.md"));
        std::fs::create_dir(d.join("empty")).unwrap();
        let mut lib = Library::new();
        let r = lib.add(&[
            d.join("shots"),
            d.join("single.webp"),
            d.join("readme.md"),
            d.join("missing.png"),
            d.join("empty"),
        ]);
        let names: Vec<_> = r.added.iter().map(|v| v.name.as_str()).collect();
        assert_eq!(names, ["b.png", "a.JPG", "single.webp"]);
        let reasons: Vec<_> = r.skipped.iter().map(|s| s.reason.as_str()).collect();
        assert_eq!(reasons.len(), 3, "{reasons:?}");
        assert!(reasons[0].starts_with("not a JPEG"));
        assert_eq!(reasons[1], "not found");
        assert!(reasons[2].starts_with("no JPEG"));
        // The same file again, by another spelling, is not added twice.
        let again = lib.add(&[d.join("shots/../single.webp")]);
        assert!(again.added.is_empty());
        assert_eq!(again.skipped[0].reason, "already added");
        assert_eq!(lib.entries().len(), 3);
        // Ids are unique and never reused after removal.
        let first = r.added[0].id;
        lib.remove(&[first]);
        touch(&d.join("later.png"));
        let later = lib.add(&[d.join("later.png")]);
        assert!(later.added[0].id > r.added[2].id);
    }

    #[test]
    fn overrides_and_failed_ids() {
        let dir = tempfile::tempdir().unwrap();
        touch(&dir.path().join("a.png"));
        touch(&dir.path().join("b.png"));
        let mut lib = Library::new();
        let r = lib.add(&[dir.path().to_path_buf()]);
        let (a, b) = (r.added[0].id, r.added[1].id);
        let op = Op::default_for("color-manipulation").unwrap();
        let chain = vec![op.clone(), Op::default_for("erosion").unwrap()];
        assert!(lib.set_override(a, Some(chain.clone())));
        assert!(!lib.set_override(999, None));
        assert_eq!(lib.view(a).unwrap().override_ops, Some(chain));
        let v = serde_json::to_value(lib.view(a).unwrap()).unwrap();
        assert_eq!(v["override"][1]["op"], "erosion");
        assert_eq!(
            chain_name(&[op, Op::default_for("erosion").unwrap()]),
            "color-manipulation+erosion"
        );
        lib.get_mut(b).unwrap().state = ImageState::failed(ErrorKind::Cancelled, "stop");
        assert_eq!(lib.failed_ids(), vec![b]);
        let v = serde_json::to_value(lib.view(b).unwrap()).unwrap();
        assert_eq!(v["state"]["state"], "failed");
        assert_eq!(v["state"]["kind"], "cancelled");
        assert!(v["override"].is_null());
    }

    #[test]
    fn every_image_is_found_by_id_after_adds_and_removes() {
        let dir = tempfile::tempdir().unwrap();
        for i in 0..40 {
            touch(&dir.path().join(format!("{i:02}.png")));
        }
        let mut lib = Library::new();
        let first: Vec<_> = (0..20)
            .map(|i| lib.add(&[dir.path().join(format!("{i:02}.png"))]).added[0].id)
            .collect();
        let odd: Vec<_> = first.iter().copied().filter(|id| id % 2 == 1).collect();
        lib.remove(&odd);
        let later = lib.add(&[dir.path().to_path_buf()]).added;
        assert_eq!(later.len(), 30, "the 20 never added and the 10 removed");
        for id in first.iter().chain(later.iter().map(|v| &v.id)) {
            assert_eq!(lib.get(*id).is_some(), !odd.contains(id), "image {id}");
            if let Some(e) = lib.get(*id) {
                assert_eq!(e.id, *id);
            }
        }
        assert!(lib.get_mut(999).is_none());
    }

    #[test]
    fn a_new_result_replaces_and_deletes_the_old_output() {
        let dir = tempfile::tempdir().unwrap();
        touch(&dir.path().join("a.png"));
        let mut lib = Library::new();
        let id = lib.add(&[dir.path().join("a.png")]).added[0].id;
        let old = dir.path().join("work/1/a.png");
        let new = dir.path().join("work/2/a.png");
        touch(&old);
        touch(&new);
        let rec = |output: PathBuf| ResultRecord {
            rev: 0,
            output,
            ops: vec![Op::default_for("color-manipulation").unwrap()],
            format: Format::Png,
            worker: "local".into(),
            keypoints: None,
            timings: Timings::default(),
        };
        let r1 = lib.record_result(id, rec(old.clone())).unwrap();
        let r2 = lib.record_result(id, rec(new.clone())).unwrap();
        assert!(r2 > r1);
        assert!(!old.exists() && new.exists());
        let v = lib.view(id).unwrap();
        assert_eq!(v.state, ImageState::Done);
        assert_eq!(v.result.unwrap().suggested_name, "a-color-manipulation.png");
    }
}
