//! The op catalogue: one module per op family, pure functions on pixel buffers.
//!
//! [`Op`] is the typed job an input goes through. Its serde form is
//! `{"op": "<id>", "params": {...}}`; ids are a contract shared with the CLI, the UI and
//! the wire protocol, so they never change.
//!
//! An `Op` that exists is valid: its params are typed ([`params`]), and every way to build
//! one from outside ([`Op::from_pairs`] for the CLI, [`Op::from_json`] and serde for the
//! UI, the wire protocol and saved settings) parses them through the same
//! [`Params::from_values`]. A bad value is a [`ParamError`] naming the op, the parameter
//! and what is allowed; no op falls back to a default at run time.
//!
//! # Adding an op
//!
//! Two files: the op's module and this one. Say a `blur` op, in `ops/blur.rs`:
//!
//! ```ignore
//! use super::params::{choice, params, ranged};
//! use super::{OpContext, OpError};
//! use crate::frame::Pixels;
//!
//! choice! {
//!     /// How pixels outside the image are read.
//!     pub enum Edge {
//!         /// `aaa|abcd|ddd`.
//!         Replicate = "replicate",
//!         /// `cb|abcd|cb`.
//!         Reflect = "reflect",
//!     }
//! }
//!
//! ranged! {
//!     /// Side of the box, in pixels.
//!     pub struct BoxSize(u32): odd 1..=99;
//! }
//!
//! params! {
//!     /// Parameters of `blur`.
//!     pub struct BlurParams {
//!         /// Side of the box.
//!         pub size: BoxSize = BoxSize::of(3) => "size", "box side in pixels";
//!         /// The border rule.
//!         pub edge: Edge = Edge::Reflect => "edge", "how pixels outside are read";
//!     }
//! }
//!
//! /// OpenCV's `blur(img, (size, size))`.
//! pub fn blur(input: Pixels, p: &BlurParams, ctx: &OpContext) -> Result<Pixels, OpError> {
//!     let (size, edge) = (p.size.get() as usize, p.edge); // valid by their types
//!     // ...
//! }
//! ```
//!
//! Then, in this file: `pub mod blur;`, its row in the `op_table!` below
//! (`Blur => "blur", blur::BlurParams, "colour", "Box blur (OpenCV's blur)";`), and its
//! arms in [`Op::apply`] and [`Op::peak_bytes_per_pixel`] (the compiler asks for both;
//! [`Op::finds_features`] too if it reports keypoints). That is all: the CLI
//! (`--op blur --param blur.size=5`), the JSON form, the wire protocol, `prism ops --json`
//! and the app's forms (built from the catalogue) follow from the row and the params.
//! A rule between fields goes in a `check = BlurParams::check;` line after the struct's
//! braces, with the fields private and a checked `new` (see `canny.rs`).

mod bands;
pub mod canny;
pub mod color;
pub mod denoise;
pub mod dispatch;
pub mod equalize;
mod gray;
pub mod harris;
pub mod morph;
pub mod params;
pub mod sift;
mod sobel;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::frame::Pixels;
pub use dispatch::{cpu_features, simd_path};
pub use params::{InvalidValue, Kind, ParamError, ParamSpec, ParamValue, Params};
pub use sobel::{Aperture, CannyAperture};

/// A flag an op polls between rows or bands so a batch can stop promptly.
#[derive(Clone, Debug, Default)]
pub struct CancelToken(Arc<AtomicBool>);

impl CancelToken {
    /// A token that is not cancelled.
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks every holder to stop.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    /// Whether [`cancel`](Self::cancel) was called.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    /// `Err(OpError::Cancelled)` once cancelled, for `?` inside loops.
    pub fn check(&self) -> Result<(), OpError> {
        if self.is_cancelled() {
            Err(OpError::Cancelled)
        } else {
            Ok(())
        }
    }
}

/// What an op needs besides pixels: cancellation and a progress sink for long ops.
#[derive(Clone, Default)]
pub struct OpContext {
    /// Polled by long ops.
    pub cancel: CancelToken,
    /// Called with a fraction in `0.0..=1.0` by ops that take long on big images.
    pub progress: Option<Arc<dyn Fn(f32) + Send + Sync>>,
}

impl OpContext {
    /// Reports progress within the current op, if anyone listens.
    pub fn report(&self, fraction: f32) {
        if let Some(p) = &self.progress {
            p(fraction.clamp(0.0, 1.0));
        }
    }
}

/// Why an op could not produce a result.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum OpError {
    /// The batch was cancelled while the op ran.
    #[error("cancelled")]
    Cancelled,
    /// The image cannot be processed by this op (e.g. too small).
    #[error("{0}")]
    Unsupported(String),
}

/// A point feature found by an op, in OpenCV's `KeyPoint` terms.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KeyPoint {
    /// Column, in pixels of the input.
    pub x: f32,
    /// Row, in pixels of the input.
    pub y: f32,
    /// Diameter of the meaningful neighbourhood.
    pub size: f32,
    /// Orientation in degrees, `-1` when not applicable.
    pub angle: f32,
    /// Strength.
    pub response: f32,
    /// Packed as OpenCV packs `KeyPoint.octave` (octave in the low byte, layer above).
    pub octave: i32,
}

/// Keypoints and, for SIFT, their descriptors (one row of 128 bytes per keypoint).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Features {
    /// Keypoints in the order the op found them.
    pub keypoints: Vec<KeyPoint>,
    /// Descriptors in keypoint order, when the op computes them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub descriptors: Option<Vec<Vec<u8>>>,
}

/// The result of one op: pixels and, for feature ops, what was found.
#[derive(Clone, Debug)]
pub struct OpOutput {
    /// The output image.
    pub pixels: Pixels,
    /// Keypoints (and descriptors) for feature ops.
    pub features: Option<Features>,
}

impl OpOutput {
    fn pixels(pixels: Pixels) -> Self {
        Self {
            pixels,
            features: None,
        }
    }
}

/// Static facts about an op for `prism ops` and the UI.
#[derive(Clone, Debug, Serialize)]
pub struct OpInfo {
    /// The stable id.
    pub id: &'static str,
    /// One line saying what it does.
    pub summary: &'static str,
    /// Whether the output is grey or colour.
    pub output: &'static str,
    /// Every parameter with type, range and default.
    pub params: Vec<serde_json::Value>,
}

macro_rules! op_table {
    ($( $variant:ident => $id:literal, $params:ty, $output:literal, $summary:literal; )*) => {
        /// One operation with its typed parameters: valid by construction.
        #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
        #[serde(tag = "op", content = "params", try_from = "RawOp")]
        pub enum Op {
            $(
                #[doc = $summary]
                #[serde(rename = $id)]
                $variant($params),
            )*
        }

        /// The JSON form of an op before its params are parsed: the same tag and content
        /// as [`Op`], so ids and shape are read exactly as `Op` writes them.
        #[derive(Deserialize)]
        #[serde(tag = "op", content = "params", rename = "Op")]
        enum RawOp {
            $(
                #[serde(rename = $id)]
                $variant(Map<String, Value>),
            )*
        }

        impl TryFrom<RawOp> for Op {
            type Error = ParamError;

            fn try_from(raw: RawOp) -> Result<Op, ParamError> {
                match raw {
                    $(RawOp::$variant(v) => <$params as Params>::from_values($id, &v).map(Op::$variant),)*
                }
            }
        }

        /// Every op id, in catalogue order.
        pub const OP_IDS: &[&str] = &[$($id),*];

        impl Op {
            /// The op's stable id.
            pub fn id(&self) -> &'static str {
                match self { $(Op::$variant(_) => $id,)* }
            }

            /// Builds an op from its id and `key=value` pairs over the defaults.
            ///
            /// ```
            /// use prism_engine::Op;
            ///
            /// let canny = Op::from_pairs("edge-detection", [("low", "50"), ("high", "150")])?;
            /// assert_eq!(canny.id(), "edge-detection");
            /// // Out of range, unknown values, keys and ops are errors, never silently dropped.
            /// assert!(Op::from_pairs("edge-detection", [("low", "-1")]).is_err());
            /// let e = Op::from_pairs("color-manipulation", [("mode", "neon")]).unwrap_err();
            /// assert_eq!(
            ///     e.to_string(),
            ///     r#"color-manipulation.mode: "neon" is not one of invert, grayscale, sepia, hue-saturation"#
            /// );
            /// assert!(Op::from_pairs("edge-detection", [("lo", "50")]).is_err());
            /// assert!(Op::from_pairs("no-such-op", []).is_err());
            /// # Ok::<(), prism_engine::ops::ParamError>(())
            /// ```
            pub fn from_pairs<'a>(
                id: &str,
                pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
            ) -> Result<Op, ParamError> {
                match id {
                    $($id => Ok(Op::$variant(<$params as Params>::from_pairs(id, pairs)?)),)*
                    _ => Err(ParamError::new(
                        id,
                        "",
                        format!("unknown op (known: {})", OP_IDS.join(", ")),
                    )),
                }
            }

            /// The catalogue `prism ops` prints.
            pub fn catalogue() -> Vec<OpInfo> {
                vec![$(OpInfo {
                    id: $id,
                    summary: $summary,
                    output: $output,
                    params: <$params as Params>::schema(),
                }),*]
            }
        }

        #[cfg(test)]
        mod table_tests {
            use super::*;

            /// Every params type of the table.
            pub(super) fn specs() -> Vec<(&'static str, &'static [ParamSpec])> {
                vec![$(($id, <$params as Params>::SPECS)),*]
            }

            #[test]
            fn defaults_read_back_as_themselves() {
                $({
                    let d = <$params>::default();
                    let Value::Object(m) = serde_json::to_value(d).unwrap() else {
                        panic!("{}: params are not an object", $id);
                    };
                    let keys: Vec<&str> = m.keys().map(|k| k.as_str()).collect();
                    let mut specs: Vec<&str> =
                        <$params as Params>::SPECS.iter().map(|s| s.key).collect();
                    specs.sort_unstable();
                    assert_eq!(keys, specs, "{}", $id);
                    assert_eq!(<$params as Params>::from_values($id, &m).unwrap(), d, "{}", $id);
                })*
            }
        }
    };
}

op_table! {
    EdgeDetection => "edge-detection", canny::CannyParams, "grey",
        "Canny edges on the grey image (OpenCV's Canny)";
    ColorManipulation => "color-manipulation", color::ColorParams, "colour",
        "Invert (bitwise_not), grayscale, sepia or hue/saturation shift";
    CornerDetection => "corner-detection", harris::HarrisParams, "colour",
        "Harris corners (cornerHarris, dilate, threshold) drawn as filled red circles";
    HistogramEqualization => "histogram-equalization", equalize::EqualizeParams, "grey",
        "equalizeHist on the grey image";
    Erosion => "erosion", morph::MorphParams, "colour",
        "erode: per-channel minimum under a rect, ellipse or cross element";
    Dilation => "dilation", morph::MorphParams, "colour",
        "dilate: per-channel maximum under a rect, ellipse or cross element";
    Denoise => "denoise", denoise::DenoiseParams, "colour",
        "Non-local means (fastNlMeansDenoisingColored): Lab, luminance with h, colour with h-color";
    Sift => "sift", sift::SiftParams, "colour",
        "SIFT keypoints and descriptors (OpenCV's detectAndCompute), drawn as rich keypoints";
}

impl Op {
    /// The op with the original app's parameters.
    pub fn default_for(id: &str) -> Result<Op, ParamError> {
        Op::from_pairs(id, std::iter::empty())
    }

    /// Builds an op from its JSON form, `{"op": "<id>", "params": {...}}` (what the UI
    /// sends and serde writes). Unlike deserializing with serde, the error keeps its
    /// parts: the op and the key at fault (both empty when the JSON names no known op).
    ///
    /// ```
    /// use prism_engine::Op;
    /// use serde_json::json;
    ///
    /// let op = Op::from_json(json!({"op": "erosion", "params": {"shape": "cross"}}))?;
    /// assert_eq!(op, Op::from_pairs("erosion", [("shape", "cross")])?);
    /// let e = Op::from_json(json!({"op": "erosion", "params": {"shape": "star"}})).unwrap_err();
    /// assert_eq!((e.op.as_str(), e.key.as_str()), ("erosion", "shape"));
    /// assert_eq!(e.reason, r#""star" is not one of rect, ellipse, cross"#);
    /// # Ok::<(), prism_engine::ops::ParamError>(())
    /// ```
    pub fn from_json(value: Value) -> Result<Op, ParamError> {
        let raw: RawOp =
            serde_json::from_value(value).map_err(|e| ParamError::new("", "", e.to_string()))?;
        Op::try_from(raw)
    }

    /// Whether the op reports keypoints (written as `<name>.features.json` on request).
    pub fn finds_features(&self) -> bool {
        matches!(self, Op::CornerDetection(_) | Op::Sift(_))
    }

    /// Bytes per input pixel the op holds at its peak (input, output and working planes),
    /// an upper estimate that memory admission charges before the image is decoded.
    pub fn peak_bytes_per_pixel(&self) -> u64 {
        match self {
            // u8 in and out plus at most a grey copy.
            Op::ColorManipulation(_) | Op::HistogramEqualization(_) => 8,
            Op::Erosion(_) | Op::Dilation(_) => 12,
            // Grey copy, i16 Sobel planes, magnitudes and the edge map.
            Op::EdgeDetection(_) => 24,
            // Grey copy, f32 derivative products, response and its dilation, output.
            Op::CornerDetection(_) => 40,
            // The 2x upsampled base and one octave of Gaussian and DoG layers in f32
            // (4 px each at octave 0), freed octave by octave.
            Op::Sift(_) => 160,
            // Bordered Lab copy, per-band i32 distance sums and the weighted accumulators.
            Op::Denoise(_) => 48,
        }
    }

    /// Runs the op on one image.
    pub fn apply(&self, input: Pixels, ctx: &OpContext) -> Result<OpOutput, OpError> {
        ctx.cancel.check()?;
        match self {
            Op::EdgeDetection(p) => Ok(OpOutput::pixels(Pixels::Gray(canny::canny(
                &input.into_gray(),
                p,
                ctx,
            )?))),
            Op::CornerDetection(p) => harris::detect_corners(input, p, ctx),
            Op::ColorManipulation(p) => Ok(OpOutput::pixels(color::manipulate(input, p))),
            Op::HistogramEqualization(_) => {
                Ok(OpOutput::pixels(Pixels::Gray(equalize::equalize(input))))
            }
            Op::Erosion(p) => Ok(OpOutput::pixels(morph::erode(input, p, ctx)?)),
            Op::Dilation(p) => Ok(OpOutput::pixels(morph::dilate(input, p, ctx)?)),
            Op::Denoise(p) => Ok(OpOutput::pixels(Pixels::Rgb(denoise::denoise_colored(
                &input.into_rgb(),
                p,
                ctx,
            )?))),
            Op::Sift(p) => sift::sift(input, p, ctx),
        }
    }
}

/// Runs ops in order, each on the previous one's output; features come from the last op
/// that produced any.
///
/// ```
/// use prism_engine::ops::{run_pipeline, OpContext};
/// use prism_engine::{Op, Pixels};
///
/// // A white square on black: equalize (a no-op here), then Harris corners.
/// let img = image::RgbImage::from_fn(64, 64, |x, y| {
///     let inside = (16..48).contains(&x) && (16..48).contains(&y);
///     image::Rgb(if inside { [255; 3] } else { [0; 3] })
/// });
/// let ops = [
///     Op::default_for("histogram-equalization")?,
///     Op::default_for("corner-detection")?,
/// ];
/// let out = run_pipeline(&ops, Pixels::Rgb(img), &OpContext::default())?;
/// assert_eq!((out.pixels.width(), out.pixels.height()), (64, 64));
/// assert!(!out.features.expect("corners").keypoints.is_empty());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn run_pipeline(ops: &[Op], input: Pixels, ctx: &OpContext) -> Result<OpOutput, OpError> {
    run_pipeline_timed(ops, input, ctx, &mut |_, _| {})
}

/// [`run_pipeline`], telling `on_op` each op's id and how long it took as it finishes (a
/// node's per-op latency metrics).
pub fn run_pipeline_timed(
    ops: &[Op],
    input: Pixels,
    ctx: &OpContext,
    on_op: &mut dyn FnMut(&'static str, std::time::Duration),
) -> Result<OpOutput, OpError> {
    let mut out = OpOutput::pixels(input);
    for op in ops {
        let t = std::time::Instant::now();
        let next = op.apply(out.pixels, ctx)?;
        on_op(op.id(), t.elapsed());
        out = OpOutput {
            pixels: next.pixels,
            features: next.features.or(out.features),
        };
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ids_round_trip_through_serde() {
        for id in OP_IDS {
            let op = Op::default_for(id).unwrap();
            assert_eq!(op.id(), *id);
            let json = serde_json::to_string(&op).unwrap();
            let back: Op = serde_json::from_str(&json).unwrap();
            assert_eq!(back, op);
            assert_eq!(
                Op::from_json(serde_json::from_str(&json).unwrap()).unwrap(),
                op
            );
        }
    }

    /// What every published op's defaults were before params were typed (`prism ops
    /// --json` of the untyped catalogue): the typed ones must write exactly the same.
    #[test]
    fn defaults_are_the_original_apps() {
        let expected = [
            json!({"op": "edge-detection", "params":
                {"low": 90.0, "high": 180.0, "aperture": 3, "l2-gradient": false}}),
            json!({"op": "color-manipulation", "params":
                {"mode": "invert", "hue": 0.0, "saturation": 1.0}}),
            json!({"op": "corner-detection", "params":
                {"block": 2, "ksize": 3, "k": 0.04, "threshold": 0.1, "radius": 5}}),
            json!({"op": "histogram-equalization", "params": {}}),
            json!({"op": "erosion", "params": {"shape": "rect", "size": 5, "iterations": 1}}),
            json!({"op": "dilation", "params": {"shape": "rect", "size": 5, "iterations": 1}}),
            json!({"op": "denoise", "params":
                {"h": 10.0, "h-color": 10.0, "template": 7, "search": 21}}),
            json!({"op": "sift", "params": {"nfeatures": 0, "octave-layers": 3,
                "contrast": 0.04, "edge": 10.0, "sigma": 1.6}}),
        ];
        for want in expected {
            let op = Op::default_for(want["op"].as_str().unwrap()).unwrap();
            assert_eq!(serde_json::to_value(&op).unwrap(), want);
        }
        // Byte for byte, key order included (the wire and saved settings carry this).
        assert_eq!(
            serde_json::to_string(&Op::default_for("edge-detection").unwrap()).unwrap(),
            r#"{"op":"edge-detection","params":{"low":90.0,"high":180.0,"aperture":3,"l2-gradient":false}}"#
        );
    }

    #[test]
    fn unknown_op_and_param_are_errors() {
        let e = Op::default_for("no-such-op").unwrap_err();
        assert_eq!((e.op.as_str(), e.key.as_str()), ("no-such-op", ""));
        assert!(
            e.to_string()
                .starts_with("no-such-op: unknown op (known: edge-detection"),
            "{e}"
        );
        let e = Op::from_pairs("color-manipulation", [("nope", "1")]).unwrap_err();
        assert!(e.reason.contains("unknown parameter"), "{e}");
        let e = Op::from_pairs("histogram-equalization", [("x", "1")]).unwrap_err();
        assert_eq!(e.reason, "this op takes no parameters");
    }

    #[test]
    fn json_with_unknown_field_is_rejected() {
        let r: Result<Op, _> =
            serde_json::from_str(r#"{"op":"color-manipulation","params":{"bogus":1}}"#);
        assert!(r.is_err());
        let e = Op::from_json(json!({"op": "color-manipulation", "params": {"bogus": 1}}));
        assert_eq!(e.unwrap_err().key, "bogus");
    }

    #[test]
    fn every_choice_refuses_an_unknown_name_saying_which_are_allowed() {
        let mut seen = 0;
        for (id, specs) in table_tests::specs() {
            for spec in specs {
                let Kind::Choice(names) = spec.kind else {
                    continue;
                };
                seen += 1;
                let bad = "no-such-choice";
                let from_cli = Op::from_pairs(id, [(spec.key, bad)]).unwrap_err();
                let from_json = Op::from_json(json!({"op": id, "params": {spec.key: bad}}));
                for e in [from_cli, from_json.unwrap_err()] {
                    assert_eq!((e.op.as_str(), e.key.as_str()), (id, spec.key));
                    assert_eq!(
                        e.to_string(),
                        format!(
                            "{id}.{}: \"{bad}\" is not one of {}",
                            spec.key,
                            names.join(", ")
                        )
                    );
                }
                // Every listed name is accepted, and written back as given.
                for name in names.iter() {
                    let op = Op::from_pairs(id, [(spec.key, *name)]).unwrap();
                    assert_eq!(
                        serde_json::to_value(&op).unwrap()["params"][spec.key],
                        *name
                    );
                }
            }
        }
        // At least mode of color-manipulation, shape of erosion and of dilation.
        assert!(seen >= 3, "{seen}");
    }

    /// Params other fields must take for `key` to reach `value` (rules between fields).
    fn partner(id: &str, key: &str) -> Vec<(&'static str, String)> {
        match (id, key) {
            ("edge-detection", "low") => vec![("high", "100000".into())],
            ("edge-detection", "high") => vec![("low", "0".into())],
            ("denoise", "search") => vec![("template", "1".into())],
            _ => vec![],
        }
    }

    fn with(id: &str, key: &'static str, value: String) -> Result<Op, ParamError> {
        let mut pairs = partner(id, key);
        pairs.push((key, value));
        Op::from_pairs(id, pairs.iter().map(|(k, v)| (*k, v.as_str())))
    }

    #[test]
    fn every_range_refuses_values_outside_it_and_takes_its_bounds() {
        let mut seen = 0;
        for (id, specs) in table_tests::specs() {
            for spec in specs {
                let (inside, outside, even): (Vec<String>, Vec<String>, Option<String>) =
                    match spec.kind {
                        Kind::Int { min, max } => (
                            vec![min.to_string(), max.to_string()],
                            vec![(min - 1).to_string(), (max + 1).to_string()],
                            None,
                        ),
                        Kind::OddInt { min, max } => (
                            vec![min.to_string(), max.to_string()],
                            vec![(min - 2).to_string(), (max + 2).to_string()],
                            Some((min + 1).to_string()),
                        ),
                        Kind::Float { min, max } => (
                            vec![min.to_string(), max.to_string()],
                            vec![(min - 0.5).to_string(), (max + 0.5).to_string()],
                            None,
                        ),
                        Kind::Bool | Kind::Choice(_) => continue,
                    };
                seen += 1;
                for v in inside {
                    let op = with(id, spec.key, v.clone());
                    assert!(op.is_ok(), "{id}.{}={v}: {:?}", spec.key, op.unwrap_err());
                }
                for v in outside {
                    let e = with(id, spec.key, v.clone()).unwrap_err();
                    assert_eq!((e.op.as_str(), e.key.as_str()), (id, spec.key), "{v}");
                    assert!(
                        e.reason.contains("is outside"),
                        "{id}.{}={v}: {e}",
                        spec.key
                    );
                }
                if let Some(v) = even {
                    let e = with(id, spec.key, v.clone()).unwrap_err();
                    assert_eq!(e.reason, format!("{v} must be odd"), "{id}.{}", spec.key);
                }
            }
        }
        // At least the 23 numbers of the ops published before params were typed.
        assert!(seen >= 23, "{seen}");
    }

    #[test]
    fn serde_errors_name_the_op_the_param_and_what_is_allowed() {
        let e =
            serde_json::from_str::<Op>(r#"{"op":"color-manipulation","params":{"mode":"neon"}}"#)
                .unwrap_err();
        assert!(
            e.to_string().starts_with(
                r#"color-manipulation.mode: "neon" is not one of invert, grayscale, sepia, hue-saturation"#
            ),
            "{e}"
        );
        let e = serde_json::from_str::<Op>(r#"{"op":"edge-detection","params":{"aperture":1}}"#)
            .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("edge-detection.aperture: 1 is outside 3..=7"),
            "{e}"
        );
        // The shape around the params is still serde's to judge.
        for bad in [
            json!("edge-detection"),
            json!({"op": "teleport", "params": {}}),
            json!({"op": "histogram-equalization"}),
            json!({"op": "sift", "params": 5}),
        ] {
            assert!(serde_json::from_value::<Op>(bad.clone()).is_err(), "{bad}");
            let e = Op::from_json(bad.clone()).unwrap_err();
            assert_eq!((e.op.as_str(), e.key.as_str()), ("", ""), "{bad}");
        }
    }
}
