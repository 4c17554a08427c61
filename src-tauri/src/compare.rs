//! The compare tools' pixels: the difference of an original and its result, and the
//! values under the cursor, both from the full-resolution images (decoded once and kept
//! for the image being looked at), never from the JPEG previews on screen.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::{Arc, Mutex};

use prism_engine::codec::{self, Limits};
use prism_engine::{EngineError, Frame, Pixels};
use serde::Serialize;

use crate::error::AppError;
use crate::library::ImageId;
use crate::sync::lock;

/// Bytes of decoded full-resolution images kept (an original and its result of 12 MP
/// take 72 MB; the last one decoded always stays).
pub const FRAME_CACHE_BYTES: usize = 320 << 20;

/// The amplifications the difference view offers: `min(255, |a - b| * gain)`.
pub const GAINS: [u8; 3] = [1, 4, 16];

/// Which full-resolution image: an original (`rev` none) or a result.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FrameKey {
    /// The image.
    pub id: ImageId,
    /// The result's revision, or `None` for the original.
    pub rev: Option<u64>,
}

/// Decoded images, the most recently used last.
#[derive(Default)]
pub struct FrameCache {
    inner: Mutex<VecDeque<(FrameKey, Arc<Frame>)>>,
}

fn frame_bytes(f: &Frame) -> usize {
    let px = f.pixels.width() as usize * f.pixels.height() as usize;
    px * f.pixels.channels() + f.alpha.as_ref().map_or(0, |_| px)
}

impl FrameCache {
    /// The image `key` names, decoded from `path` (as for processing: EXIF orientation
    /// applied) on a miss.
    pub fn get_or_decode(&self, key: FrameKey, path: &Path) -> Result<Arc<Frame>, AppError> {
        {
            let mut inner = lock(&self.inner);
            if let Some(i) = inner.iter().position(|(k, _)| *k == key) {
                let hit = inner.remove(i).expect("position is in range");
                let frame = hit.1.clone();
                inner.push_back(hit);
                return Ok(frame);
            }
        }
        // Decoded outside the lock: a readout of the cached image must not wait for it.
        let limits = Limits::default();
        let bytes = codec::read_file(path, &limits).map_err(EngineError::from)?;
        let frame = Arc::new(
            codec::decode(&bytes, &limits)
                .map_err(EngineError::from)?
                .frame,
        );
        let mut inner = lock(&self.inner);
        if !inner.iter().any(|(k, _)| *k == key) {
            inner.push_back((key, frame.clone()));
        }
        let mut total: usize = inner.iter().map(|(_, f)| frame_bytes(f)).sum();
        while total > FRAME_CACHE_BYTES && inner.len() > 1 {
            if let Some((_, f)) = inner.pop_front() {
                total -= frame_bytes(&f);
            }
        }
        Ok(frame)
    }

    /// Drops an image's frames (removed from the library).
    pub fn forget(&self, id: ImageId) {
        lock(&self.inner).retain(|(k, _)| k.id != id);
    }

    /// Whether `key` is held (for tests).
    pub fn holds(&self, key: FrameKey) -> bool {
        lock(&self.inner).iter().any(|(k, _)| *k == key)
    }
}

/// `|a - b|` per channel, times `gain` (saturating), at full resolution. A grey image
/// compared with a colour one counts as its grey in every channel; alpha is left out.
pub fn difference(a: &Pixels, b: &Pixels, gain: u8) -> Result<Pixels, AppError> {
    if (a.width(), a.height()) != (b.width(), b.height()) {
        return Err(AppError::BadRequest(format!(
            "the result is {}x{} and the original {}x{}: no pixel-by-pixel difference",
            b.width(),
            b.height(),
            a.width(),
            a.height()
        )));
    }
    let d = |x: u8, y: u8| (x.abs_diff(y) as u16 * gain as u16).min(255) as u8;
    let (w, h) = (a.width(), a.height());
    Ok(match (a, b) {
        (Pixels::Gray(a), Pixels::Gray(b)) => {
            let raw = a.as_raw().iter().zip(b.as_raw()).map(|(&x, &y)| d(x, y));
            Pixels::Gray(image::GrayImage::from_vec(w, h, raw.collect()).expect("same size"))
        }
        _ => {
            let (a, b) = (rgb_of(a), rgb_of(b));
            let raw = a.iter().zip(b.iter()).map(|(&x, &y)| d(x, y));
            Pixels::Rgb(image::RgbImage::from_vec(w, h, raw.collect()).expect("same size"))
        }
    })
}

/// Interleaved RGB samples (grey repeated in each channel).
fn rgb_of(p: &Pixels) -> std::borrow::Cow<'_, [u8]> {
    match p {
        Pixels::Rgb(c) => std::borrow::Cow::Borrowed(c.as_raw()),
        Pixels::Gray(g) => g.as_raw().iter().flat_map(|&v| [v, v, v]).collect(),
    }
}

/// The values of one pixel of one image.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Sample {
    /// Column, in the full-resolution image.
    pub x: u32,
    /// Row.
    pub y: u32,
    /// Its size.
    pub width: u32,
    /// Its size.
    pub height: u32,
    /// `[grey]` or `[r, g, b]`, then alpha when the image has it.
    pub values: Vec<u8>,
}

/// The pixel values under the cursor in both panes.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Readout {
    /// The original's pixel there.
    pub original: Sample,
    /// The result's, when there is one.
    pub result: Option<Sample>,
}

/// The pixel at `(u, v)`, fractions of the image's width and height (where the cursor
/// is on the image as laid out, whatever rendition is on screen).
pub fn sample(f: &Frame, u: f64, v: f64) -> Result<Sample, AppError> {
    if !(0.0..=1.0).contains(&u) || !(0.0..=1.0).contains(&v) {
        return Err(AppError::BadRequest(format!(
            "({u}, {v}) is outside the image (0 to 1 across and down)"
        )));
    }
    let (w, h) = (f.pixels.width(), f.pixels.height());
    let x = ((u * w as f64) as u32).min(w - 1);
    let y = ((v * h as f64) as u32).min(h - 1);
    let mut values = match &f.pixels {
        Pixels::Gray(g) => vec![g.get_pixel(x, y).0[0]],
        Pixels::Rgb(c) => c.get_pixel(x, y).0.to_vec(),
    };
    if let Some(a) = &f.alpha {
        values.push(a.get_pixel(x, y).0[0]);
    }
    Ok(Sample {
        x,
        y,
        width: w,
        height: h,
        values,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{GrayImage, Luma, Rgb, RgbImage};

    #[test]
    fn the_difference_is_per_channel_and_amplified_with_saturation() {
        let a = Pixels::Rgb(RgbImage::from_pixel(3, 2, Rgb([100, 50, 0])));
        let b = Pixels::Rgb(RgbImage::from_fn(3, 2, |x, _| {
            Rgb([100 + x as u8, 40, 200])
        }));
        let Pixels::Rgb(d) = difference(&a, &b, 1).unwrap() else {
            panic!("colour")
        };
        assert_eq!(d.get_pixel(2, 1).0, [2, 10, 200]);
        let Pixels::Rgb(d) = difference(&a, &b, 16).unwrap() else {
            panic!("colour")
        };
        assert_eq!(d.get_pixel(2, 1).0, [32, 160, 255]);
        assert_eq!(d.get_pixel(0, 0).0, [0, 160, 255]);
        // Grey against colour: the grey in every channel.
        let g = Pixels::Gray(GrayImage::from_pixel(3, 2, Luma([60])));
        let Pixels::Rgb(d) = difference(&a, &g, 1).unwrap() else {
            panic!("colour")
        };
        assert_eq!(d.get_pixel(1, 1).0, [40, 10, 60]);
        let Pixels::Gray(d) = difference(&g, &g, 4).unwrap() else {
            panic!("grey")
        };
        assert!(d.as_raw().iter().all(|&v| v == 0));
        let small = Pixels::Gray(GrayImage::new(2, 2));
        assert!(matches!(
            difference(&a, &small, 1),
            Err(AppError::BadRequest(m)) if m.contains("2x2")
        ));
    }

    #[test]
    fn samples_map_fractions_to_full_resolution_pixels() {
        let f = Frame {
            pixels: Pixels::Rgb(RgbImage::from_fn(400, 300, |x, y| {
                Rgb([(x % 256) as u8, (y % 256) as u8, 7])
            })),
            alpha: Some(GrayImage::from_pixel(400, 300, Luma([128]))),
        };
        let s = sample(&f, 0.5, 0.25).unwrap();
        assert_eq!((s.x, s.y, s.width, s.height), (200, 75, 400, 300));
        assert_eq!(s.values, [200, 75, 7, 128]);
        // The far edges are the last pixel, not one past it.
        let s = sample(&f, 1.0, 1.0).unwrap();
        assert_eq!((s.x, s.y), (399, 299));
        for (u, v) in [(-0.1, 0.5), (0.5, 1.5), (f64::NAN, 0.0)] {
            assert!(sample(&f, u, v).is_err(), "{u} {v}");
        }
    }

    #[test]
    fn the_cache_keeps_the_last_used_and_forgets_by_image() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.png");
        RgbImage::from_pixel(4, 4, Rgb([1, 2, 3]))
            .save(&path)
            .unwrap();
        let c = FrameCache::default();
        let k = |id, rev| FrameKey { id, rev };
        let a = c.get_or_decode(k(1, None), &path).unwrap();
        let again = c.get_or_decode(k(1, None), &path).unwrap();
        assert!(Arc::ptr_eq(&a, &again), "decoded once");
        c.get_or_decode(k(1, Some(3)), &path).unwrap();
        c.get_or_decode(k(2, None), &path).unwrap();
        c.forget(1);
        assert!(!c.holds(k(1, None)) && !c.holds(k(1, Some(3))));
        assert!(c.holds(k(2, None)));
        std::fs::write(&path, b"not an image").unwrap();
        assert!(c.get_or_decode(k(5, None), &path).is_err());
    }
}
