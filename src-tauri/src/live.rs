//! Live previews: the selected image run through the ops being edited, at the size it is
//! shown, before anyone presses Process. Each edit takes a new generation and cancels the
//! render of the one before, so only the latest is ever finished.
//!
//! The input is the display rendition (a 12 MP photo at a quarter), scaled down to the
//! pixels the pane shows, so ops that work in pixels (kernels, windows, thresholds on
//! gradients, keypoint scales) give an approximation of the result scaled down, not the
//! same thing; only the drawn corner radius is scaled (a mark is a size on the picture,
//! so it is correct to), and an op that works on each pixel alone (colour manipulation)
//! is exact up to the scaling.
//!
//! Slow ops (denoise, SIFT) cannot fill a pane in the time an edit should take to show.
//! Each plan estimates the ops' time from what earlier previews measured (per op, per
//! pixel) and, when the pane's size would take longer than [`BUDGET`], starts with a
//! smaller first pass that fits it; the page then asks for the pane's size, which
//! replaces it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prism_engine::ops::CancelToken;
use prism_engine::Op;
use serde::Serialize;

use crate::library::ImageId;
use crate::sync::lock;

/// What the ops of a first pass may take: the rest of the 150 ms from an edit to the
/// preview on screen goes to the request, the scaling, the JPEG and the webview.
pub const BUDGET: Duration = Duration::from_millis(80);
/// The smallest first pass worth showing (longest edge, pixels).
pub const MIN_EDGE: u32 = 96;

/// What the page needs to show a live preview: its generation (part of its URL), whether
/// it is only an approximation of the result, and the size of its first pass.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LivePlan {
    /// Larger for each edit; `/live/<id>/<gen>/<edge>` renders it while it is the latest.
    pub gen: u64,
    /// Whether an op in it works in pixels, so the preview on a scaled-down copy only
    /// approximates the full-size result.
    pub approximate: bool,
    /// The longest edge of the first pass: the size asked for, or less when that would
    /// take longer than [`BUDGET`].
    pub first: u32,
    /// The longest edge worth asking for: no pass is larger than the display rendition.
    pub full: u32,
}

/// The latest live preview asked for, and what earlier ones took.
#[derive(Default)]
pub struct Live {
    inner: Mutex<Latest>,
    costs: Mutex<Costs>,
}

#[derive(Default)]
struct Latest {
    gen: u64,
    id: Option<ImageId>,
    ops: Arc<[Op]>,
    cancel: CancelToken,
}

impl Live {
    /// Takes a new edit to be shown `width` x `height` pixels (at most `full` each):
    /// cancels the render of the previous one.
    pub fn set(&self, id: ImageId, ops: Vec<Op>, width: u32, height: u32, full: u32) -> LivePlan {
        let (width, height) = fit_within(width, height, full);
        let first = lock(&self.costs).first_edge(&ops, width, height);
        let mut l = lock(&self.inner);
        l.cancel.cancel();
        l.gen += 1;
        l.id = Some(id);
        l.cancel = CancelToken::new();
        let approximate = ops.iter().any(|op| !matches!(op, Op::ColorManipulation(_)));
        l.ops = Arc::from(ops);
        LivePlan {
            gen: l.gen,
            approximate,
            first,
            full,
        }
    }

    /// The ops of generation `gen` of image `id` and its cancel token, while it is the
    /// latest; `None` once another replaced it.
    pub fn current(&self, id: ImageId, gen: u64) -> Option<(Arc<[Op]>, CancelToken)> {
        let l = lock(&self.inner);
        (l.gen == gen && l.id == Some(id)).then(|| (l.ops.clone(), l.cancel.clone()))
    }

    /// Learns from a finished render: `op` took `took` on a `width` x `height` image.
    pub fn record(&self, op: &Op, width: u32, height: u32, took: Duration) {
        lock(&self.costs).record(op, width, height, took);
    }
}

/// `width` x `height` scaled down, aspect kept, until its longest edge is at most `edge`.
fn fit_within(width: u32, height: u32, edge: u32) -> (u32, u32) {
    let long = width.max(height);
    if long <= edge {
        return (width, height);
    }
    let k = f64::from(edge) / f64::from(long);
    let scale = |v: u32| ((f64::from(v) * k).round() as u32).clamp(1, edge);
    (scale(width), scale(height))
}

/// Nanoseconds per unit of [`work`] of each op, as measured by earlier previews in this
/// run.
#[derive(Default)]
struct Costs {
    ns_per_unit: HashMap<&'static str, f64>,
}

impl Costs {
    /// What `op` is expected to take on a `width` x `height` image, in nanoseconds.
    fn estimate(&self, op: &Op, width: u32, height: u32) -> f64 {
        let per_unit = self
            .ns_per_unit
            .get(op.id())
            .copied()
            .unwrap_or_else(|| prior_ns_per_px(op.id()));
        per_unit * work(op, width, height)
    }

    fn record(&mut self, op: &Op, width: u32, height: u32, took: Duration) {
        let units = work(op, width, height);
        if units <= 0.0 {
            return;
        }
        let seen = took.as_nanos() as f64 / units;
        // Half the old, half the new: follows the machine's load within a few edits
        // without one slow render deciding alone.
        self.ns_per_unit
            .entry(op.id())
            .and_modify(|c| *c = 0.5 * *c + 0.5 * seen)
            .or_insert(seen);
    }

    /// The longest edge of a first pass of `ops` that fits [`BUDGET`], for an image
    /// shown `width` x `height` pixels: that size's longest edge when it fits.
    fn first_edge(&self, ops: &[Op], width: u32, height: u32) -> u32 {
        let (width, height) = (width.max(1), height.max(1));
        let edge = width.max(height);
        let budget = BUDGET.as_nanos() as f64;
        let fits = |e: u32| {
            let k = f64::from(e) / f64::from(edge);
            let w = (f64::from(width) * k).round().max(1.0) as u32;
            let h = (f64::from(height) * k).round().max(1.0) as u32;
            ops.iter().map(|op| self.estimate(op, w, h)).sum::<f64>() <= budget
        };
        if fits(edge) {
            return edge;
        }
        // The largest edge that fits (time only grows with the size), not below the
        // smallest worth showing.
        let (mut lo, mut hi) = (MIN_EDGE.min(edge), edge);
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if fits(mid) {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        lo
    }
}

/// What an op takes per unit of [`work`] before a preview measured it: 2 threads of this
/// project's 2-core test machine, debug (opt-level 2) build, a 1000x750 photo. Only the
/// first preview of an op in a run uses it.
fn prior_ns_per_px(id: &str) -> f64 {
    match id {
        "denoise" => 1300.0,
        "sift" => 300.0,
        "corner-detection" | "edge-detection" => 20.0,
        _ => 5.0,
    }
}

/// The work `op` does on a `width` x `height` image, in pixels of its default params.
/// Denoise compares every patch of its search window, so its time grows with the window's
/// area, and it works on the image padded by both windows' radii, which counts on a
/// small preview.
fn work(op: &Op, width: u32, height: u32) -> f64 {
    match op {
        Op::Denoise(p) => {
            let s = f64::from(p.search().get());
            let border = f64::from(p.template().get() / 2 + p.search().get() / 2);
            let padded = (f64::from(width) + 2.0 * border) * (f64::from(height) + 2.0 * border);
            padded * (s / 21.0).powi(2)
        }
        _ => f64::from(width) * f64::from(height),
    }
}

/// The ops to run on an input `factor` (at most 1) times the image's size: a corner's
/// drawn radius shrinks with the picture (at least 1 pixel when it was some); nothing
/// else is changed.
pub fn scaled(ops: &[Op], factor: f64) -> Vec<Op> {
    ops.iter()
        .map(|op| {
            if !matches!(op, Op::CornerDetection(_)) || factor >= 1.0 {
                return op.clone();
            }
            let mut v = serde_json::to_value(op).expect("ops serialize");
            if let Some(r) = v["params"]["radius"].as_i64() {
                let s = if r > 0 {
                    ((r as f64 * factor).round() as i64).max(1)
                } else {
                    0
                };
                v["params"]["radius"] = s.into();
            }
            // The radius only got smaller: still in range.
            Op::from_json(v).unwrap_or_else(|_| op.clone())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(id: &str, pairs: &[(&str, &str)]) -> Op {
        Op::from_pairs(id, pairs.iter().copied()).unwrap()
    }

    #[test]
    fn each_edit_cancels_the_one_before_and_only_the_latest_renders() {
        let live = Live::default();
        let first = live.set(3, vec![op("color-manipulation", &[])], 400, 300, 1280);
        assert!(!first.approximate);
        let (ops, cancel) = live.current(3, first.gen).expect("the latest");
        assert_eq!(ops.len(), 1);
        assert!(!cancel.is_cancelled());
        let second = live.set(
            3,
            vec![op("erosion", &[]), op("color-manipulation", &[])],
            400,
            300,
            1280,
        );
        assert!(second.gen > first.gen);
        assert!(second.approximate);
        assert!(cancel.is_cancelled(), "the stale render stops");
        assert!(live.current(3, first.gen).is_none());
        assert!(live.current(4, second.gen).is_none(), "another image");
        assert_eq!(live.current(3, second.gen).unwrap().0.len(), 2);
    }

    #[test]
    fn only_the_drawn_radius_is_scaled() {
        let ops = [
            op("corner-detection", &[("radius", "5"), ("block", "3")]),
            op("erosion", &[]),
        ];
        let s = scaled(&ops, 0.25);
        assert_eq!(
            s[0],
            op("corner-detection", &[("radius", "1"), ("block", "3")])
        );
        assert_eq!(s[1], ops[1]);
        let s = scaled(&[op("corner-detection", &[("radius", "20")])], 0.5);
        assert_eq!(s[0], op("corner-detection", &[("radius", "10")]));
        let s = scaled(&[op("corner-detection", &[("radius", "0")])], 0.5);
        assert_eq!(s[0], op("corner-detection", &[("radius", "0")]));
        assert_eq!(scaled(&ops, 1.0), ops);
    }

    #[test]
    fn a_slow_chain_starts_with_a_first_pass_that_fits_the_budget() {
        let live = Live::default();
        let cheap = vec![op("color-manipulation", &[])];
        assert_eq!(live.set(1, cheap.clone(), 1000, 750, 1280).first, 1000);
        // Never more than the display rendition, whatever the pane asks.
        assert_eq!(live.set(1, cheap.clone(), 5000, 3000, 1280).first, 1280);
        assert_eq!(fit_within(5000, 3000, 1280), (1280, 768));
        assert_eq!(fit_within(3, 9000, 1280), (1, 1280));
        // Denoise at 1000x750 is far over budget before anything was measured: a first
        // pass whose pixel count fits it.
        let denoise = vec![op("denoise", &[])];
        let first = live.set(1, denoise.clone(), 1000, 750, 1280).first;
        assert!((MIN_EDGE..1000).contains(&first), "{first}");
        let (w, h) = (first, first * 3 / 4);
        assert!(work(&denoise[0], w, h) * prior_ns_per_px("denoise") <= BUDGET.as_nanos() as f64);
        assert!(
            work(&denoise[0], w + 2, h + 2) * prior_ns_per_px("denoise") > BUDGET.as_nanos() as f64,
            "the largest that fits"
        );
        // Measured faster than the prior: a larger first pass; a pane it fits: all of it.
        live.record(&denoise[0], 1000, 750, Duration::from_millis(70));
        let faster = live.set(1, denoise.clone(), 1000, 750, 1280).first;
        assert!(faster > first, "{faster} vs {first}");
        assert_eq!(live.set(1, denoise.clone(), 200, 150, 1280).first, 200);
        // A wider search window is more work: a smaller first pass.
        let wide = vec![op("denoise", &[("search", "41")])];
        assert!(live.set(1, wide, 1000, 750, 1280).first < faster);
        // Never below the smallest worth showing, nor above the size asked for.
        live.record(&denoise[0], 10, 10, Duration::from_secs(10));
        assert_eq!(
            live.set(1, denoise.clone(), 1000, 750, 1280).first,
            MIN_EDGE
        );
        assert_eq!(live.set(1, denoise, 50, 40, 1280).first, 50);
    }
}
