//! `sift`: OpenCV 5's `SIFT_create(..).detectAndCompute` on the grey image, drawn as
//! `drawKeypoints(.., DRAW_RICH_KEYPOINTS)`, with the keypoints and their 128-byte
//! descriptors returned for `--features`.
//!
//! Written here rather than taken from a crate: `kornia-imgproc`'s SIFT follows OpenCV
//! faithfully but is about ten times slower than OpenCV on x86 (scalar blur with a
//! strided column pass, `mul_add` without FMA compiled to a library call, ARM-only
//! vectorised helpers) and allocates and zeroes a workspace of gigabytes per call at
//! 12 MP; `sift-features` and `sift-wgpu` are different algorithms. See
//! `shared/notes/sift.md`.
//!
//! The stages, each in its own module and each following OpenCV's order of operations:
//! [`scale_space`] (doubled base, Gaussian octaves, bit-exact with FMA), [`extrema`]
//! (DoG extrema, sub-pixel refinement, contrast and edge tests), [`orientation`]
//! (36-bin histogram, peaks at 80 %), [`descriptor`] (4x4x8 trilinear histogram, clip,
//! bytes), [`select`] (OpenCV's duplicate removal and `retainBest`), [`draw`].
//!
//! Memory: the doubled base image of a 50 MP photo alone is 200 MP of `f32` (800 MB), and
//! OpenCV keeps every layer of every octave at once (about 11 GB there). Prism builds an
//! octave in horizontal bands whose layers fit [`STACK_BUDGET`], each band recomputing the
//! few dozen rows of blur context it needs, finds and describes the keypoints whose rows
//! it owns, then drops its layers; only the next octave's base (a quarter of the current
//! octave) is kept. A refinement step that wanders out of its band (rare: a Newton step
//! of many pixels) is finished in a small band built around where it went, so the result
//! does not depend on the banding.

pub mod draw;

mod descriptor;
mod extrema;
mod math;
mod orientation;
mod scale_space;
mod select;

use std::borrow::Cow;
use std::ops::Range;

use image::GrayImage;
use rayon::prelude::*;

use super::bands::Bands;
use super::params::{params, ranged};
use super::{Features, KeyPoint, OpContext, OpError, OpOutput};
use crate::frame::Pixels;
use extrema::{Limits, Refined, IMG_BORDER};
use math::{cv_round, cv_round_f64};
use scale_space::{Band, Doubled, Kernel, Stack};
use select::Found;

/// Bytes of Gaussian layers one band of an octave may hold; octaves smaller than this are
/// processed whole.
pub const STACK_BUDGET: usize = 512 << 20;
/// Rows a refinement may wander beyond its band before it is finished elsewhere.
const ADJUST_MARGIN: usize = 4;
/// Bands are never thinner than this, whatever the budget says.
const MIN_BAND_ROWS: usize = 128;

ranged! {
    /// How many of the strongest keypoints to keep (0 = all).
    pub struct FeatureCount(u32): int 0..=100_000;
}

ranged! {
    /// DoG layers per octave.
    pub struct OctaveLayers(u32): int 1..=10;
}

ranged! {
    /// Contrast threshold (divided by the layers).
    pub struct ContrastThreshold(f64): float 0.0..=1.0;
}

ranged! {
    /// Edge threshold (ratio of principal curvatures).
    pub struct EdgeThreshold(f64): float 1.0..=1000.0;
}

ranged! {
    /// Gaussian sigma of the first octave.
    pub struct Sigma(f64): float 0.5..=8.0;
}

params! {
    /// Parameters of `sift`, OpenCV's `SIFT_create` arguments (and its defaults).
    pub struct SiftParams {
        /// Keep only the strongest N keypoints (0 = all).
        pub nfeatures: FeatureCount = FeatureCount::of(0)
            => "nfeatures", "keep the N keypoints with the highest response (0 = all)";
        /// DoG layers per octave.
        pub octave_layers: OctaveLayers = OctaveLayers::of(3)
            => "octave-layers", "layers per octave (Lowe uses 3)";
        /// Contrast threshold (divided by the layers).
        pub contrast: ContrastThreshold = ContrastThreshold::of(0.04)
            => "contrast", "contrast threshold, divided by the octave layers; higher finds fewer";
        /// Edge threshold (ratio of principal curvatures).
        pub edge: EdgeThreshold = EdgeThreshold::of(10.0)
            => "edge", "edge threshold; higher keeps more edge-like keypoints";
        /// Gaussian sigma of the first octave.
        pub sigma: Sigma = Sigma::of(1.6) => "sigma", "Gaussian sigma of the first octave";
    }
}

/// Runs SIFT on the grey image and draws the keypoints over the colour image.
pub fn sift(input: Pixels, p: &SiftParams, ctx: &OpContext) -> Result<OpOutput, OpError> {
    let grey = input.to_gray();
    let (keypoints, descriptors) = detect_and_compute(&grey, p, ctx)?;
    let mut canvas = input.into_rgb();
    draw::draw_keypoints(&mut canvas, &keypoints, &mut draw::Rng::opencv_default());
    Ok(OpOutput {
        pixels: Pixels::Rgb(canvas),
        features: Some(Features {
            keypoints,
            descriptors: Some(descriptors.iter().map(|d| d.to_vec()).collect()),
        }),
    })
}

/// Keypoints (OpenCV's order, input-image coordinates) and their descriptors.
pub fn detect_and_compute(
    grey: &GrayImage,
    p: &SiftParams,
    ctx: &OpContext,
) -> Result<(Vec<KeyPoint>, Vec<[u8; 128]>), OpError> {
    let (gw, gh) = (grey.width() as usize, grey.height() as usize);
    let octaves = if gw == 0 || gh == 0 {
        0
    } else {
        scale_space::octave_count(gw, gh)
    };
    let cfg = Config::new(p);
    let mut found = Vec::new();
    let total: f64 = (0..octaves)
        .map(|o| ((4 * gw * gh) >> (2 * o)) as f64)
        .sum();
    let mut done = 0.0;
    let mut base: Option<Band> = None;
    // Layer buffers, reused from band to band and octave to octave.
    let mut pool: Vec<Vec<f32>> = Vec::new();
    let (mut w, mut h) = (2 * gw, 2 * gh);
    for o in 0..octaves {
        ctx.cancel.check()?;
        let mut next = (o + 1 < octaves).then(|| Band {
            w: w / 2,
            y0: 0,
            data: vec![0f32; (w / 2) * (h / 2)],
        });
        let source = match &base {
            None => Source::Doubled(Doubled {
                grey: grey.as_raw(),
                w: gw,
                h: gh,
            }),
            Some(b) => Source::Base(b),
        };
        let oct = Octave {
            o,
            w,
            h,
            source,
            cfg: &cfg,
        };
        oct.run(next.as_mut(), &mut found, &mut pool, ctx, &mut |rows| {
            done += (rows * w) as f64;
            ctx.report((done / total) as f32);
        })?;
        base = next;
        (w, h) = (w / 2, h / 2);
    }
    select::remove_duplicated_sorted(&mut found);
    let nfeatures = p.nfeatures.get();
    if nfeatures > 0 {
        select::retain_best(&mut found, nfeatures as usize);
    }
    ctx.report(1.0);
    Ok(found
        .into_iter()
        .map(|f| {
            // Back from the doubled image to the input's pixels (firstOctave = -1).
            let kp = KeyPoint {
                x: f.x * 0.5,
                y: f.y * 0.5,
                size: f.size * 0.5,
                angle: f.angle,
                response: f.response,
                octave: (f.octave & !255) | ((f.octave - 1) & 255),
            };
            (kp, f.desc)
        })
        .unzip())
}

/// Everything derived from the parameters once per call.
struct Config {
    layers: usize,
    sigma: f32,
    base_kernel: Kernel,
    /// `kernels[i]` blurs layer `i - 1` into layer `i` (index 0 unused).
    kernels: Vec<Kernel>,
    limits: Limits,
    threshold: f32,
    /// Rows of a keypoint's layer its orientation and descriptor windows may read, above
    /// and below its row.
    feature_rows: usize,
}

impl Config {
    fn new(p: &SiftParams) -> Self {
        let layers = p.octave_layers.get() as usize;
        let sig = scale_space::layer_sigmas(p.sigma.get(), layers);
        let sigma = p.sigma.get() as f32;
        // The largest keypoint scale in octave units: layer <= layers, |xi| < 0.5.
        let scl_max = sigma * 2f32.powf((layers as f32 + 0.5) / layers as f32);
        let ori_rows = (orientation::RADIUS_FACTOR * scl_max).ceil() as usize + 1;
        let feature_rows = descriptor::max_radius(scl_max).max(ori_rows) + 2;
        Config {
            layers,
            sigma,
            base_kernel: scale_space::gaussian_kernel(scale_space::base_sigma(sigma)),
            kernels: sig
                .iter()
                .map(|&s| scale_space::gaussian_kernel(s))
                .collect(),
            limits: Limits {
                layers,
                contrast: p.contrast.get() as f32,
                edge: p.edge.get() as f32,
            },
            threshold: extrema::threshold(p.contrast.get(), layers),
            feature_rows,
        }
    }
}

/// Returns a band's layer buffers to the pool.
fn recycle(stack: Stack, pool: &mut Vec<Vec<f32>>) {
    for layer in stack.layers {
        if let Cow::Owned(b) = layer {
            pool.push(b.data);
        }
    }
}

/// Where an octave's layer 0 comes from.
enum Source<'a> {
    /// Octave 0: the doubled grey image, blurred here.
    Doubled(Doubled<'a>),
    /// Later octaves: the previous octave's layer `layers`, halved, used as is.
    Base(&'a Band),
}

/// A refinement to resume in another band: step `step` at `(layer, r, c)`.
#[derive(Clone, Copy, Debug)]
struct Resume {
    layer: usize,
    r: usize,
    c: usize,
    step: usize,
}

/// Buffers one task reuses across keypoints.
#[derive(Default)]
struct Scratch {
    ori: orientation::Scratch,
    desc: descriptor::Scratch,
    angles: Vec<f32>,
}

struct Octave<'a> {
    o: usize,
    w: usize,
    h: usize,
    source: Source<'a>,
    cfg: &'a Config,
}

impl Octave<'_> {
    /// Finds and describes every keypoint of the octave; writes the next octave's base.
    fn run(
        &self,
        mut next: Option<&mut Band>,
        found: &mut Vec<Found>,
        pool: &mut Vec<Vec<f32>>,
        ctx: &OpContext,
        progress: &mut dyn FnMut(usize),
    ) -> Result<(), OpError> {
        let mut pending = Vec::new();
        for Range { start: y0, end: y1 } in self.bands().ranges() {
            ctx.cancel.check()?;
            let stack = self.stack(y0, y1, pool, ctx)?;
            if let Some(next) = next.as_deref_mut() {
                scale_space::decimate_into(&stack.layers[self.cfg.layers], y0, y1, next);
            }
            let lo = y0.max(IMG_BORDER);
            let hi = y1.min(self.h.saturating_sub(IMG_BORDER));
            let (kps, resume) = self.scan(&stack, lo, hi);
            found.extend(kps);
            pending.extend(resume);
            recycle(stack, pool);
            progress(y1 - y0);
        }
        // Refinements that left their band: finish each in a band around where it went.
        let mut scratch = Scratch::default();
        while let Some(s) = pending.pop() {
            ctx.cancel.check()?;
            let stack = self.stack(s.r, s.r + 1, pool, ctx)?;
            self.candidate(&stack, s, found, &mut pending, &mut scratch);
            recycle(stack, pool);
        }
        Ok(())
    }

    /// The bands (own rows) an octave is processed in.
    fn bands(&self) -> Bands {
        let per_row = (self.cfg.layers + 3) * self.w * std::mem::size_of::<f32>();
        if per_row * self.h <= STACK_BUDGET {
            return Bands::fixed(self.h, self.h);
        }
        let halo: usize = self.cfg.kernels[1..=self.cfg.layers]
            .iter()
            .map(|k| k.radius())
            .sum::<usize>()
            + self.cfg.feature_rows
            + ADJUST_MARGIN;
        let rows = (STACK_BUDGET / per_row)
            .saturating_sub(2 * halo)
            .max(MIN_BAND_ROWS);
        Bands::even(self.h, rows)
    }

    /// The Gaussian layers holding what the band of own rows `y0..y1` needs.
    fn stack(
        &self,
        y0: usize,
        y1: usize,
        pool: &mut Vec<Vec<f32>>,
        ctx: &OpContext,
    ) -> Result<Stack<'_>, OpError> {
        let cfg = self.cfg;
        let n = cfg.layers + 3;
        let h = self.h;
        let clip = |lo: isize, hi: isize| (lo.max(0) as usize, (hi.max(0) as usize).min(h));
        let (y0, y1) = (y0 as isize, y1 as isize);
        let m = ADJUST_MARGIN as isize;
        let dog = clip(y0 - m - 1, y1 + m + 1);
        let feat = clip(
            y0 - m - cfg.feature_rows as isize,
            y1 + m + cfg.feature_rows as isize,
        );
        let mut need = vec![dog; n];
        for i in (0..n).rev() {
            let (mut lo, mut hi) = dog;
            if (1..=cfg.layers).contains(&i) {
                lo = lo.min(feat.0);
                hi = hi.max(feat.1);
            }
            if i + 1 < n {
                let r = cfg.kernels[i + 1].radius() as isize;
                let (a, b) = clip(need[i + 1].0 as isize - r, need[i + 1].1 as isize + r);
                lo = lo.min(a);
                hi = hi.max(b);
            }
            need[i] = (lo, hi);
        }
        let mut layers: Vec<Cow<'_, Band>> = Vec::with_capacity(n);
        layers.push(match &self.source {
            Source::Doubled(d) => Cow::Owned(scale_space::blur(
                d,
                h,
                &cfg.base_kernel,
                need[0].0,
                need[0].1,
                pool.pop().unwrap_or_default(),
            )),
            Source::Base(b) => Cow::Borrowed(*b),
        });
        for i in 1..n {
            ctx.cancel.check()?;
            let g = scale_space::blur(
                layers[i - 1].as_ref(),
                h,
                &cfg.kernels[i],
                need[i].0,
                need[i].1,
                pool.pop().unwrap_or_default(),
            );
            layers.push(Cow::Owned(g));
        }
        Ok(Stack {
            w: self.w,
            h,
            layers,
        })
    }

    /// Scans rows `lo..hi` in parallel chunks: keypoints found, refinements to resume.
    fn scan(&self, stack: &Stack, lo: usize, hi: usize) -> (Vec<Found>, Vec<Resume>) {
        if lo >= hi {
            return (Vec::new(), Vec::new());
        }
        let rows = hi - lo;
        let chunk = rows
            .div_ceil(rayon::current_num_threads() * 16)
            .clamp(2, 64);
        let parts: Vec<(Vec<Found>, Vec<Resume>)> = (0..rows.div_ceil(chunk))
            .into_par_iter()
            .map(|ci| {
                let (a, b) = (lo + ci * chunk, (lo + (ci + 1) * chunk).min(hi));
                let mut kps = Vec::new();
                let mut resume = Vec::new();
                let mut scratch = Scratch::default();
                extrema::scan_rows(
                    stack,
                    self.cfg.layers,
                    self.cfg.threshold,
                    a,
                    b,
                    &mut |layer, r, c| {
                        let s = Resume {
                            layer,
                            r,
                            c,
                            step: 0,
                        };
                        self.candidate(stack, s, &mut kps, &mut resume, &mut scratch);
                    },
                );
                (kps, resume)
            })
            .collect();
        let mut kps = Vec::new();
        let mut resume = Vec::new();
        for (k, r) in parts {
            kps.extend(k);
            resume.extend(r);
        }
        (kps, resume)
    }

    /// Refines one candidate and, if kept, adds a keypoint per orientation peak.
    fn candidate(
        &self,
        stack: &Stack,
        s: Resume,
        out: &mut Vec<Found>,
        resume: &mut Vec<Resume>,
        scratch: &mut Scratch,
    ) {
        let cfg = self.cfg;
        let e = match extrema::refine(stack, &cfg.limits, s.layer, s.r, s.c, s.step) {
            Refined::Rejected => return,
            Refined::Elsewhere { layer, r, c, step } => {
                resume.push(Resume { layer, r, c, step });
                return;
            }
            Refined::Kept(e) => e,
        };
        let img = stack.layers[e.layer].as_ref();
        let rows = (
            e.r.saturating_sub(cfg.feature_rows),
            (e.r + cfg.feature_rows + 1).min(self.h),
        );
        if !img.holds(rows.0, rows.1) {
            resume.push(Resume {
                layer: e.layer,
                r: e.r,
                c: e.c,
                step: e.step,
            });
            return;
        }
        // The keypoint as adjustLocalExtrema fills it (doubled-image coordinates).
        let o = self.o;
        let scale = (1u32 << o) as f32;
        let x = (e.c as f32 + e.xc) * scale;
        let y = (e.r as f32 + e.xr) * scale;
        let octave = o as i32
            + ((e.layer as i32) << 8)
            + ((cv_round_f64((e.xi as f64 + 0.5) * 255.0) as i32) << 16);
        let size = cfg.sigma * 2f32.powf((e.layer as f32 + e.xi) / cfg.layers as f32) * scale * 2.0;
        let response = e.contrast.abs();

        let scl_octv = size * 0.5 / scale;
        let mut hist = [0f32; orientation::BINS];
        let omax = orientation::histogram(
            img,
            self.h,
            e.c,
            e.r,
            cv_round(orientation::RADIUS_FACTOR * scl_octv),
            orientation::SIGMA_FACTOR * scl_octv,
            &mut hist,
            &mut scratch.ori,
        );
        orientation::peaks(&hist, omax, &mut scratch.angles);

        // calcDescriptors reads the keypoint back after the half-scaling: position and
        // size times 2^(1 - o) (exact), angle turned back to counter-clockwise.
        let back = if o == 0 {
            2.0
        } else {
            1.0 / (1u32 << (o - 1)) as f32
        };
        let (px, py) = (x * 0.5 * back, y * 0.5 * back);
        let scl = size * 0.5 * back * 0.5;
        for &angle in &scratch.angles {
            let mut ori = 360.0 - angle;
            if (ori - 360.0).abs() < f32::EPSILON {
                ori = 0.0;
            }
            let mut desc = [0u8; 128];
            descriptor::describe(img, self.h, px, py, ori, scl, &mut desc, &mut scratch.desc);
            out.push(Found {
                x,
                y,
                size,
                angle,
                response,
                octave,
                desc,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blobs(w: u32, h: u32) -> GrayImage {
        GrayImage::from_fn(w, h, |x, y| {
            let v = ((x as f32 * 0.31).sin() * (y as f32 * 0.23).cos() * 90.0
                + ((x / 9 + y / 7) % 2) as f32 * 60.0
                + 80.0) as u8;
            image::Luma([v])
        })
    }

    #[test]
    fn tiny_and_flat_images_have_no_keypoints() {
        let ctx = OpContext::default();
        let p = SiftParams::default();
        for (w, h) in [(1, 1), (2, 7), (40, 30)] {
            let flat = GrayImage::from_pixel(w, h, image::Luma([77]));
            let (k, d) = detect_and_compute(&flat, &p, &ctx).unwrap();
            assert!(k.is_empty() && d.is_empty(), "{w}x{h}");
        }
    }

    #[test]
    fn keypoints_are_in_opencv_order_with_packed_octaves() {
        let img = blobs(96, 80);
        let (k, d) =
            detect_and_compute(&img, &SiftParams::default(), &OpContext::default()).unwrap();
        assert!(k.len() > 10, "{}", k.len());
        assert_eq!(k.len(), d.len());
        for pair in k.windows(2) {
            assert!((pair[0].x, pair[0].y) <= (pair[1].x, pair[1].y));
        }
        for kp in &k {
            let octave = (kp.octave & 255) as i8;
            let layer = (kp.octave >> 8) & 255;
            assert!((-1..8).contains(&octave), "{}", kp.octave);
            assert!((1..=3).contains(&layer));
            assert!(kp.x >= 0.0 && kp.x < 96.0 && kp.y >= 0.0 && kp.y < 80.0);
            assert!((0.0..360.0).contains(&kp.angle));
        }
    }

    #[test]
    fn nfeatures_keeps_the_strongest() {
        let img = blobs(96, 80);
        let ctx = OpContext::default();
        let (all, _) = detect_and_compute(&img, &SiftParams::default(), &ctx).unwrap();
        let p = SiftParams {
            nfeatures: FeatureCount::of(5),
            ..SiftParams::default()
        };
        let (best, _) = detect_and_compute(&img, &p, &ctx).unwrap();
        assert!(best.len() >= 5 && best.len() < all.len());
        let mut r: Vec<f32> = all.iter().map(|k| k.response).collect();
        r.sort_by(|a, b| b.partial_cmp(a).unwrap());
        assert!(best.iter().all(|k| k.response >= r[4]));
    }

    #[test]
    fn banded_octaves_give_the_same_keypoints_as_whole_ones() {
        let img = blobs(160, 120);
        let ctx = OpContext::default();
        let p = SiftParams::default();
        let (whole, dw) = detect_and_compute(&img, &p, &ctx).unwrap();
        // Force bands on the first octave (320x240) by processing it with a tiny budget.
        let cfg = Config::new(&p);
        let oct = Octave {
            o: 0,
            w: 320,
            h: 240,
            source: Source::Doubled(Doubled {
                grey: img.as_raw(),
                w: 160,
                h: 120,
            }),
            cfg: &cfg,
        };
        let mut banded = Vec::new();
        let mut pending = Vec::new();
        let mut scratch = Scratch::default();
        for (y0, y1) in [(0, 50), (50, 117), (117, 200), (200, 240)] {
            let stack = oct.stack(y0, y1, &mut Vec::new(), &ctx).unwrap();
            let (k, r) = oct.scan(&stack, y0.max(IMG_BORDER), y1.min(240 - IMG_BORDER));
            banded.extend(k);
            pending.extend(r);
        }
        while let Some(s) = pending.pop() {
            let stack = oct.stack(s.r, s.r + 1, &mut Vec::new(), &ctx).unwrap();
            oct.candidate(&stack, s, &mut banded, &mut pending, &mut scratch);
        }
        select::remove_duplicated_sorted(&mut banded);
        let first: Vec<(KeyPoint, [u8; 128])> = whole
            .into_iter()
            .zip(dw)
            .filter(|(k, _)| k.octave & 255 == 255)
            .collect();
        assert_eq!(first.len(), banded.len());
        for ((k, d), f) in first.iter().zip(&banded) {
            assert_eq!((k.x, k.y, k.angle), (f.x * 0.5, f.y * 0.5, f.angle));
            assert_eq!(d, &f.desc);
        }
    }

    #[test]
    fn op_draws_over_colour_and_returns_descriptors() {
        let img = blobs(64, 64);
        let out = sift(
            Pixels::Gray(img.clone()),
            &SiftParams::default(),
            &OpContext::default(),
        )
        .unwrap();
        let f = out.features.unwrap();
        let d = f.descriptors.unwrap();
        assert_eq!(d.len(), f.keypoints.len());
        assert!(d.iter().all(|r| r.len() == 128));
        match out.pixels {
            Pixels::Rgb(rgb) => {
                assert_eq!(rgb.dimensions(), (64, 64));
                assert!(rgb.pixels().any(|p| p.0[0] != p.0[1] || p.0[1] != p.0[2]));
            }
            Pixels::Gray(_) => panic!("sift draws in colour"),
        }
    }

    #[test]
    fn cancellation_stops_the_op() {
        let ctx = OpContext::default();
        ctx.cancel.cancel();
        let r = detect_and_compute(&blobs(64, 64), &SiftParams::default(), &ctx);
        assert_eq!(r.unwrap_err(), OpError::Cancelled);
    }
}
