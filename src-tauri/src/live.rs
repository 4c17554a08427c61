//! Live previews: the selected image run through the ops being edited, at display size,
//! before anyone presses Process. Each edit takes a new generation and cancels the render
//! of the one before, so only the latest is ever finished.
//!
//! The input is the display rendition (a 12 MP photo at a quarter), so ops that work in
//! pixels (kernels, windows, thresholds on gradients, keypoint scales) give an
//! approximation of the result scaled down, not the same thing; only the drawn corner
//! radius is scaled (a mark is a size on the picture, so it is correct to), and an op
//! that works on each pixel alone (colour manipulation) is exact up to the scaling.

use std::sync::{Arc, Mutex};

use prism_engine::ops::CancelToken;
use prism_engine::Op;
use serde::Serialize;

use crate::library::ImageId;
use crate::sync::lock;

/// What the page needs to show a live preview: its generation (part of its URL) and
/// whether it is only an approximation of the result.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LivePlan {
    /// Larger for each edit; `/live/<id>/<gen>` renders it while it is the latest.
    pub gen: u64,
    /// Whether an op in it works in pixels, so the preview at display size only
    /// approximates the full-size result.
    pub approximate: bool,
}

/// The latest live preview asked for.
#[derive(Default)]
pub struct Live {
    inner: Mutex<Latest>,
}

#[derive(Default)]
struct Latest {
    gen: u64,
    id: Option<ImageId>,
    ops: Arc<[Op]>,
    cancel: CancelToken,
}

impl Live {
    /// Takes a new edit: cancels the render of the previous one.
    pub fn set(&self, id: ImageId, ops: Vec<Op>) -> LivePlan {
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
        }
    }

    /// The ops of generation `gen` of image `id` and its cancel token, while it is the
    /// latest; `None` once another replaced it.
    pub fn current(&self, id: ImageId, gen: u64) -> Option<(Arc<[Op]>, CancelToken)> {
        let l = lock(&self.inner);
        (l.gen == gen && l.id == Some(id)).then(|| (l.ops.clone(), l.cancel.clone()))
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
        let first = live.set(3, vec![op("color-manipulation", &[])]);
        assert!(!first.approximate);
        let (ops, cancel) = live.current(3, first.gen).expect("the latest");
        assert_eq!(ops.len(), 1);
        assert!(!cancel.is_cancelled());
        let second = live.set(3, vec![op("erosion", &[]), op("color-manipulation", &[])]);
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
}
