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

use super::params::{params, ranged, ParamError};
use super::{OpContext, OpError};
use nlmeans::{Weights, Windows};

ranged! {
    /// A filter strength (`h`, `hColor`): higher removes more noise and more detail.
    pub struct Strength(f32): float 0.0..=100.0;
}

ranged! {
    /// Side of the patch compared around each pixel (`templateWindowSize`).
    pub struct TemplateSize(u32): odd 1..=15;
}

ranged! {
    /// Side of the window searched for similar patches (`searchWindowSize`).
    pub struct SearchSize(u32): odd 1..=51;
}

params! {
    /// Parameters of `denoise` (OpenCV's names: `h`, `hColor`, `templateWindowSize`,
    /// `searchWindowSize`). The fields are private because the search window may not be
    /// smaller than the template: [`DenoiseParams::new`] checks it.
    pub struct DenoiseParams {
        /// Filter strength for luminance.
        h: Strength = Strength::of(10.0)
            => "h", "luminance strength: higher removes more noise and more detail";
        /// Filter strength for colour (a and b).
        h_color: Strength = Strength::of(10.0) => "h-color", "colour strength (a and b of Lab)";
        /// Side of the patch compared around each pixel.
        template: TemplateSize = TemplateSize::of(7)
            => "template", "patch size compared around each pixel";
        /// Side of the window searched for similar patches (at least `template`).
        search: SearchSize = SearchSize::of(21)
            => "search", "size of the window searched for similar patches; time grows with its square";
    }
    check = DenoiseParams::check;
}

impl DenoiseParams {
    /// The params, unless `search` is smaller than `template`. The defaults are OpenCV's
    /// documented ones (10, 10, 7, 21).
    pub fn new(
        h: Strength,
        h_color: Strength,
        template: TemplateSize,
        search: SearchSize,
    ) -> Result<Self, ParamError> {
        let p = Self {
            h,
            h_color,
            template,
            search,
        };
        p.check("denoise")?;
        Ok(p)
    }

    fn check(&self, op: &str) -> Result<(), ParamError> {
        if self.search.get() < self.template.get() {
            return Err(ParamError::new(
                op,
                "search",
                format!(
                    "{} must be at least template ({})",
                    self.search.get(),
                    self.template.get()
                ),
            ));
        }
        Ok(())
    }

    /// Filter strength for luminance.
    pub fn h(&self) -> Strength {
        self.h
    }

    /// Filter strength for colour.
    pub fn h_color(&self) -> Strength {
        self.h_color
    }

    /// Side of the compared patch.
    pub fn template(&self) -> TemplateSize {
        self.template
    }

    /// Side of the searched window.
    pub fn search(&self) -> SearchSize {
        self.search
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
    let (template, search) = (p.template.get() as usize, p.search.get() as usize);
    let win = Windows::new(template, search);
    let [l, a, b] = lab::rgb_to_lab_planes(rgb);
    ctx.cancel.check()?;

    let total = 2 * nlmeans::work_units(w, h);
    let done = AtomicUsize::new(0);
    let tick = || {
        let n = done.fetch_add(1, Ordering::Relaxed) + 1;
        ctx.report(n as f32 / total as f32);
    };
    let wl = Weights::new(p.h.get(), 1, template, search);
    let l = nlmeans::denoise([&l[..]], w, h, win, &wl, ctx, &tick)?;
    let wab = Weights::new(p.h_color.get(), 2, template, search);
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
    use crate::ops::{CancelToken, Params};
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
        assert_eq!(p.unwrap().h().get(), 3.5);
        let e = params(&[("template", "9"), ("search", "7")]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "denoise.search: 7 must be at least template (9)"
        );
        let (t, s) = (TemplateSize::new(9).unwrap(), SearchSize::new(7).unwrap());
        let h = Strength::new(1.0).unwrap();
        assert_eq!(DenoiseParams::new(h, h, t, s).unwrap_err().key, "search");
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
