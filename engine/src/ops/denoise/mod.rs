//! `denoise`: OpenCV's `fastNlMeansDenoisingColored(img, None, h, hColor, template,
//! search)`, with OpenCV's exact result.
//!
//! As OpenCV does: the image goes to 8-bit Lab with `COLOR_LBGR2Lab` ([`lab`]), L is
//! denoised alone with `h` and a, b together with `hColor` ([`nlmeans`]), and the result
//! comes back with `COLOR_Lab2LBGR`. Grey inputs are denoised as the 3-channel copy OpenCV
//! would be handed (`IMREAD_COLOR`), so the output is always colour.

pub mod lab;
pub mod nlmeans;

use std::sync::atomic::{AtomicUsize, Ordering};

use image::RgbImage;
use serde::{Deserialize, Serialize};

use super::params::{Kind, ParamError, ParamSpec, Params};
use super::{OpContext, OpError};
use nlmeans::{Weights, Windows};

/// Parameters of `denoise` (OpenCV's names: `h`, `hColor`, `templateWindowSize`,
/// `searchWindowSize`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct DenoiseParams {
    /// Filter strength for luminance.
    pub h: f32,
    /// Filter strength for colour (a and b).
    pub h_color: f32,
    /// Side of the patch compared around each pixel (odd).
    pub template: u32,
    /// Side of the window searched for similar patches (odd, at least `template`).
    pub search: u32,
}

impl Default for DenoiseParams {
    fn default() -> Self {
        Self {
            h: 10.0,
            h_color: 10.0,
            template: 7,
            search: 21,
        }
    }
}

impl Params for DenoiseParams {
    const SPECS: &'static [ParamSpec] = &[
        ParamSpec {
            key: "h",
            kind: Kind::Float {
                min: 0.0,
                max: 100.0,
            },
            help: "luminance strength: higher removes more noise and more detail",
        },
        ParamSpec {
            key: "h-color",
            kind: Kind::Float {
                min: 0.0,
                max: 100.0,
            },
            help: "colour strength (a and b of Lab)",
        },
        ParamSpec {
            key: "template",
            kind: Kind::OddInt { min: 1, max: 15 },
            help: "patch size compared around each pixel",
        },
        ParamSpec {
            key: "search",
            kind: Kind::OddInt { min: 1, max: 51 },
            help: "size of the window searched for similar patches; time grows with its square",
        },
    ];

    fn check_more(&self, op: &str) -> Result<(), ParamError> {
        if self.search < self.template {
            return Err(ParamError::new(
                op,
                "search",
                format!(
                    "{} must be at least template ({})",
                    self.search, self.template
                ),
            ));
        }
        Ok(())
    }
}

/// `fastNlMeansDenoisingColored` on an RGB image; reports progress through `ctx` and
/// stops with [`OpError::Cancelled`] soon after the token is cancelled.
pub fn denoise_colored(
    rgb: &RgbImage,
    p: &DenoiseParams,
    ctx: &OpContext,
) -> Result<RgbImage, OpError> {
    let (w, h) = (rgb.width() as usize, rgb.height() as usize);
    let win = Windows::new(p.template as usize, p.search as usize);
    let [l, a, b] = lab::rgb_to_lab_planes(rgb);
    ctx.cancel.check()?;

    let total = 2 * nlmeans::work_units(w, h);
    let done = AtomicUsize::new(0);
    let tick = || {
        let n = done.fetch_add(1, Ordering::Relaxed) + 1;
        ctx.report(n as f32 / total as f32);
    };
    let wl = Weights::new(p.h, 1, p.template as usize, p.search as usize);
    let l = nlmeans::denoise([&l[..]], w, h, win, &wl, ctx, &tick)?;
    let wab = Weights::new(p.h_color, 2, p.template as usize, p.search as usize);
    let ab = nlmeans::denoise([&a[..], &b[..]], w, h, win, &wab, ctx, &tick)?;

    let (a, b): (Vec<u8>, Vec<u8>) = ab.chunks_exact(2).map(|p| (p[0], p[1])).unzip();
    Ok(lab::lab_planes_to_rgb(
        [&l, &a, &b],
        rgb.width(),
        rgb.height(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::CancelToken;
    use std::sync::Arc;

    fn params(pairs: &[(&str, &str)]) -> Result<DenoiseParams, ParamError> {
        DenoiseParams::from_pairs("denoise", pairs.iter().copied())
    }

    #[test]
    fn params_are_validated() {
        assert_eq!(params(&[]).unwrap(), DenoiseParams::default());
        assert!(params(&[("template", "4")]).is_err());
        assert!(params(&[("search", "22")]).is_err());
        assert!(params(&[("template", "9"), ("search", "7")]).is_err());
        assert!(params(&[("h", "-1")]).is_err());
        assert!(params(&[("h-color", "101")]).is_err());
        let p = params(&[
            ("h", "3.5"),
            ("h-color", "0"),
            ("template", "3"),
            ("search", "3"),
        ]);
        assert_eq!(p.unwrap().h, 3.5);
    }

    #[test]
    fn cancelling_from_progress_stops_the_op() {
        let rgb = RgbImage::from_fn(300, 200, |x, y| {
            image::Rgb([(x * 7 + y) as u8, (x ^ y) as u8, (y * 3) as u8])
        });
        let cancel = CancelToken::new();
        let calls = Arc::new(AtomicUsize::new(0));
        let ctx = OpContext {
            cancel: cancel.clone(),
            progress: Some({
                let calls = calls.clone();
                Arc::new(move |_| {
                    calls.fetch_add(1, Ordering::Relaxed);
                    cancel.cancel();
                })
            }),
        };
        let r = denoise_colored(&rgb, &DenoiseParams::default(), &ctx);
        assert_eq!(r.unwrap_err(), OpError::Cancelled);
        // Each band already running may finish its current unit, no more.
        let total = 2 * nlmeans::work_units(300, 200);
        let n = calls.load(Ordering::Relaxed);
        assert!(
            n >= 1 && n <= rayon::current_num_threads() + 1,
            "{n} of {total} units ran"
        );
    }

    #[test]
    fn progress_reaches_one() {
        let rgb = RgbImage::from_pixel(70, 40, image::Rgb([10, 20, 30]));
        let last = Arc::new(std::sync::Mutex::new(0f32));
        let ctx = OpContext {
            cancel: CancelToken::new(),
            progress: Some({
                let last = last.clone();
                Arc::new(move |f| {
                    let mut l = last.lock().unwrap();
                    *l = l.max(f);
                })
            }),
        };
        let out = denoise_colored(&rgb, &DenoiseParams::default(), &ctx).unwrap();
        assert_eq!(*last.lock().unwrap(), 1.0);
        // A flat image stays flat (up to the Lab round trip).
        let first = *out.get_pixel(0, 0);
        assert!(out.pixels().all(|p| *p == first));
    }
}
