//! The op catalogue: one module per op family, pure functions on pixel buffers.
//!
//! [`Op`] is the typed job an input goes through. Its serde form is
//! `{"op": "<id>", "params": {...}}`; ids are a contract shared with the CLI, the UI and
//! the wire protocol, so they never change.

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

use crate::frame::Pixels;
pub use dispatch::{cpu_features, simd_path};
pub use params::{Kind, ParamError, ParamSpec, Params};

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
    /// The params were rejected.
    #[error(transparent)]
    Param(#[from] ParamError),
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
        /// One operation with its typed, validated parameters.
        #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
        #[serde(tag = "op", content = "params", rename_all = "kebab-case")]
        pub enum Op {
            $(
                #[doc = $summary]
                $variant($params),
            )*
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
            /// // Out of range, unknown keys and unknown ops are errors, never silently dropped.
            /// assert!(Op::from_pairs("edge-detection", [("low", "-1")]).is_err());
            /// assert!(Op::from_pairs("edge-detection", [("lo", "50")]).is_err());
            /// assert!(Op::from_pairs("blur", []).is_err());
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

            /// Checks every parameter; ops from JSON (UI, wire) must pass this before running.
            pub fn validate(&self) -> Result<(), ParamError> {
                match self { $(Op::$variant(p) => p.validate($id),)* }
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

            #[test]
            fn every_params_type_declares_its_fields() {
                $(params::assert_specs_match_fields::<$params>();)*
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

    /// Runs the op on one image. Params must have passed [`Op::validate`].
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
    let mut out = OpOutput::pixels(input);
    for op in ops {
        let next = op.apply(out.pixels, ctx)?;
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

    #[test]
    fn ids_round_trip_through_serde() {
        for id in OP_IDS {
            let op = Op::default_for(id).unwrap();
            assert_eq!(op.id(), *id);
            let json = serde_json::to_string(&op).unwrap();
            let back: Op = serde_json::from_str(&json).unwrap();
            assert_eq!(back, op);
        }
    }

    #[test]
    fn unknown_op_and_param_are_errors() {
        assert!(Op::default_for("blur").is_err());
        let e = Op::from_pairs("color-manipulation", [("nope", "1")]).unwrap_err();
        assert!(e.reason.contains("unknown parameter"), "{e}");
    }

    #[test]
    fn json_with_unknown_field_is_rejected() {
        let r: Result<Op, _> =
            serde_json::from_str(r#"{"op":"color-manipulation","params":{"bogus":1}}"#);
        assert!(r.is_err());
    }
}
