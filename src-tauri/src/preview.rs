//! Pixels for the webview, by id, at preview size: the engine decodes the file as it
//! does for processing, the image is scaled down here, and a JPEG (a PNG when the image
//! has transparent pixels, which the page draws over a checkerboard) goes out through the
//! `prism://` URI scheme. Full-size images never reach the DOM.
//!
//! Decoded as for processing (EXIF orientation applied) so the original and the result
//! line up pixel for pixel in the before/after views.

use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::sync::{Arc, Mutex};

use image::imageops;
use prism_engine::codec::{self, EncodeOptions, Format, Limits, Metadata, REDUCTIONS};
use prism_engine::{EngineError, Frame, Pixels};

use crate::library::ImageId;

/// Longest edge of grid thumbnails (2x a card's CSS size for HiDPI screens).
pub const THUMB_EDGE: u32 = 320;
/// Most the longest edge of the display renditions the panes open with: enough for the
/// inspector's panes at fit on a HiDPI screen.
pub const DISPLAY_EDGE: u32 = 1280;
/// Most a live preview's edge may ask for (a screen's width; a preview is never larger
/// than the display rendition anyway).
pub const MAX_LIVE_EDGE: u32 = 8192;
/// Longest edge of the images in the result views once zoomed in: enough to zoom in a
/// few times.
pub const PREVIEW_EDGE: u32 = 2048;
/// JPEG quality of previews: they are looked at, never saved.
const PREVIEW_QUALITY: u8 = 88;
/// Bytes of encoded previews kept in memory.
pub const CACHE_BYTES: usize = 256 << 20;

/// The sizes pixels are rendered at.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Rendition {
    /// A grid card: [`THUMB_EDGE`].
    Thumb,
    /// What a pane opens with: the image halved until it fits [`DISPLAY_EDGE`] (a JPEG
    /// decodes straight to that size through DCT scaling: no resampling at all).
    Display,
    /// What a pane shows zoomed in: [`PREVIEW_EDGE`].
    Zoom,
}

impl Rendition {
    /// The reduction to decode an image whose longest edge is `edge` at, and the longest
    /// edge of the rendition made from it.
    pub fn plan(self, edge: u32) -> (u32, u32) {
        let reduced = |d: u32| edge.div_ceil(d);
        match self {
            // The smallest power-of-two reduction that fits; past 1/8, scaled from 1/8.
            Rendition::Display => REDUCTIONS
                .iter()
                .find(|&&d| reduced(d) <= DISPLAY_EDGE)
                .map_or((8, DISPLAY_EDGE), |&d| (d, reduced(d))),
            // The largest reduction that still covers the box, then scaled into it.
            Rendition::Thumb | Rendition::Zoom => {
                let target = if self == Rendition::Thumb {
                    THUMB_EDGE
                } else {
                    PREVIEW_EDGE
                };
                let d = REDUCTIONS
                    .iter()
                    .rev()
                    .find(|&&d| reduced(d) >= target)
                    .copied()
                    .unwrap_or(1);
                (d, target.min(edge))
            }
        }
    }
}

/// What a `prism://localhost/...` URL asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PixelRequest {
    /// `/thumb/<id>`: the source, thumbnail size.
    Thumb(ImageId),
    /// `/display/<id>`: the source, display size.
    Display(ImageId),
    /// `/source/<id>`: the source, preview (zoom) size.
    Source(ImageId),
    /// `/result/<id>/<rev>`: a result, preview (zoom) size.
    Result(ImageId, u64),
    /// `/result-display/<id>/<rev>`: a result, display size.
    ResultDisplay(ImageId, u64),
    /// `/result-thumb/<id>/<rev>`: a result, thumbnail size.
    ResultThumb(ImageId, u64),
    /// `/diff/<id>/<rev>/<gain>`: `|original - result|` per channel times `gain` (one of
    /// [`crate::compare::GAINS`]), computed at full resolution, display size.
    Diff(ImageId, u64, u8),
    /// `/live/<id>/<gen>/<edge>`: the live preview of generation `gen` (see
    /// [`crate::live`]), its longest edge at most `edge` (1 to [`MAX_LIVE_EDGE`]) and
    /// the display rendition's; never cached.
    Live(ImageId, u64, u32),
}

impl PixelRequest {
    /// Parses a URL path; `None` for anything else.
    pub fn parse(path: &str) -> Option<Self> {
        let mut parts = path.trim_start_matches('/').split('/');
        let kind = parts.next()?;
        let id: ImageId = parts.next()?.parse().ok()?;
        let req = match kind {
            "thumb" => PixelRequest::Thumb(id),
            "display" => PixelRequest::Display(id),
            "source" => PixelRequest::Source(id),
            "result" => PixelRequest::Result(id, parts.next()?.parse().ok()?),
            "result-display" => PixelRequest::ResultDisplay(id, parts.next()?.parse().ok()?),
            "result-thumb" => PixelRequest::ResultThumb(id, parts.next()?.parse().ok()?),
            "live" => {
                let gen = parts.next()?.parse().ok()?;
                let edge = parts.next()?.parse().ok()?;
                if !(1..=MAX_LIVE_EDGE).contains(&edge) {
                    return None;
                }
                PixelRequest::Live(id, gen, edge)
            }
            "diff" => {
                let rev = parts.next()?.parse().ok()?;
                let gain = parts.next()?.parse().ok()?;
                if !crate::compare::GAINS.contains(&gain) {
                    return None;
                }
                PixelRequest::Diff(id, rev, gain)
            }
            _ => return None,
        };
        parts.next().is_none().then_some(req)
    }

    /// The image it is about.
    pub fn id(self) -> ImageId {
        match self {
            PixelRequest::Thumb(id)
            | PixelRequest::Display(id)
            | PixelRequest::Source(id)
            | PixelRequest::Result(id, _)
            | PixelRequest::ResultDisplay(id, _)
            | PixelRequest::ResultThumb(id, _)
            | PixelRequest::Diff(id, ..)
            | PixelRequest::Live(id, ..) => id,
        }
    }

    /// The result revision it is about; `None` for the source.
    pub fn rev(self) -> Option<u64> {
        match self {
            PixelRequest::Result(_, r)
            | PixelRequest::ResultDisplay(_, r)
            | PixelRequest::ResultThumb(_, r)
            | PixelRequest::Diff(_, r, _) => Some(r),
            _ => None,
        }
    }

    /// The size this request is rendered at.
    pub fn rendition(self) -> Rendition {
        match self {
            PixelRequest::Thumb(_) | PixelRequest::ResultThumb(..) => Rendition::Thumb,
            PixelRequest::Display(_)
            | PixelRequest::ResultDisplay(..)
            | PixelRequest::Diff(..)
            | PixelRequest::Live(..) => Rendition::Display,
            PixelRequest::Source(_) | PixelRequest::Result(..) => Rendition::Zoom,
        }
    }

    /// What one decode makes for this request: a grid thumbnail brings the display
    /// rendition with it (a few ms more), so the pane a click opens finds it made.
    pub fn made_with(self) -> Vec<PixelRequest> {
        match self {
            PixelRequest::Thumb(id) => vec![self, PixelRequest::Display(id)],
            PixelRequest::ResultThumb(id, rev) => vec![self, PixelRequest::ResultDisplay(id, rev)],
            _ => vec![self],
        }
    }

    /// Whether a grid card asks for it (the rest is for the inspector someone looks at).
    pub fn for_grid(self) -> bool {
        self.rendition() == Rendition::Thumb
    }
}

/// Images whose decode holds over this many pixels render one at a time.
const BIG_PIXELS: u64 = 16_000_000;
static BIG_RENDER: Mutex<()> = Mutex::new(());

/// Decodes `path` once and makes each rendition asked for: a JPEG each, or a PNG with its
/// alpha when any pixel is not opaque. A JPEG decodes at the smallest size all of them
/// can be made from (DCT scaling).
pub fn render_all(path: &Path, wanted: &[Rendition]) -> Result<Vec<Vec<u8>>, EngineError> {
    let limits = Limits::default();
    let bytes = codec::read_file(path, &limits)?;
    let (w, h) = codec::peek_dimensions(&bytes, codec::sniff(&bytes)?)?;
    let edge = w.max(h);
    let denom = wanted.iter().map(|r| r.plan(edge).0).min().unwrap_or(1);
    // Up to four previews render at once; only one of them may be a big image, so
    // previews hold a few hundred MB at most on top of the batch's own budget.
    let held = u64::from(w.div_ceil(denom)) * u64::from(h.div_ceil(denom));
    let _big = (held > BIG_PIXELS).then(|| BIG_RENDER.lock().unwrap_or_else(|e| e.into_inner()));
    let decoded = codec::decode_reduced(&bytes, &limits, denom)?;
    drop(bytes);
    let frame = decoded.frame;
    wanted
        .iter()
        .map(|r| encode_preview(fit_frame(&frame, r.plan(edge).1)))
        .collect()
}

/// [`render_all`] for one rendition.
pub fn render(path: &Path, r: Rendition) -> Result<Vec<u8>, EngineError> {
    Ok(render_all(path, &[r])?.remove(0))
}

/// Scales a frame (its alpha too) to fit `max_edge`.
pub fn fit_frame(frame: &Frame, max_edge: u32) -> Frame {
    let Some((nw, nh)) = fitted_size(frame.pixels.width(), frame.pixels.height(), max_edge) else {
        return frame.clone();
    };
    // `thumbnail` averages every source pixel into its target: no aliasing on
    // edge maps and keypoint drawings, which point sampling would break up.
    let pixels = match &frame.pixels {
        Pixels::Gray(g) => Pixels::Gray(imageops::thumbnail(g, nw, nh)),
        Pixels::Rgb(c) => Pixels::Rgb(imageops::thumbnail(c, nw, nh)),
    };
    let alpha = frame.alpha.as_ref().map(|a| imageops::thumbnail(a, nw, nh));
    Frame { pixels, alpha }
}

/// The size `w` x `h` scales down to in a `max_edge` box; `None` when it fits already.
fn fitted_size(w: u32, h: u32, max_edge: u32) -> Option<(u32, u32)> {
    if w.max(h) <= max_edge {
        return None;
    }
    let scale = max_edge as f64 / w.max(h) as f64;
    let nw = ((w as f64 * scale).round() as u32).max(1);
    let nh = ((h as f64 * scale).round() as u32).max(1);
    Some((nw, nh))
}

/// A JPEG of the frame, or a PNG with its alpha when any pixel is not opaque.
pub fn encode_preview(frame: Frame) -> Result<Vec<u8>, EngineError> {
    // An alpha channel that is opaque everywhere shows nothing: such previews stay JPEG.
    let alpha = frame.alpha.filter(|a| a.as_raw().iter().any(|&v| v < 255));
    let Some(alpha) = alpha else {
        return Ok(codec::encode(
            &Frame::new(frame.pixels),
            Format::Jpeg,
            &Metadata::default(),
            &EncodeOptions {
                jpeg_quality: PREVIEW_QUALITY,
            },
        )?);
    };
    Ok(codec::encode(
        &Frame {
            pixels: frame.pixels,
            alpha: Some(alpha),
        },
        Format::Png,
        &Metadata::default(),
        &EncodeOptions::default(),
    )?)
}

/// The media type of an encoded preview (what [`render`] made it).
pub fn media_type(preview: &[u8]) -> &'static str {
    match codec::sniff(preview) {
        Ok(Format::Png) => "image/png",
        _ => "image/jpeg",
    }
}

/// Scales down to fit in `max_edge` x `max_edge`, keeping the aspect ratio.
pub fn fit(pixels: Pixels, max_edge: u32) -> Pixels {
    match fitted_size(pixels.width(), pixels.height(), max_edge) {
        None => pixels,
        Some(_) => fit_frame(&Frame::new(pixels), max_edge).pixels,
    }
}

/// Encoded previews by request, oldest dropped first past [`CACHE_BYTES`].
#[derive(Default)]
pub struct PreviewCache {
    inner: Mutex<CacheInner>,
}

#[derive(Default)]
struct CacheInner {
    map: HashMap<PixelRequest, Arc<Vec<u8>>>,
    order: VecDeque<PixelRequest>,
    bytes: usize,
}

impl PreviewCache {
    /// A cached preview.
    pub fn get(&self, req: PixelRequest) -> Option<Arc<Vec<u8>>> {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.map.get(&req).cloned()
    }

    /// Keeps a preview, evicting the oldest ones past the budget.
    pub fn put(&self, req: PixelRequest, bytes: Arc<Vec<u8>>) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(old) = inner.map.insert(req, bytes.clone()) {
            inner.bytes -= old.len();
        } else {
            inner.order.push_back(req);
        }
        inner.bytes += bytes.len();
        while inner.bytes > CACHE_BYTES {
            let Some(oldest) = inner.order.pop_front() else {
                break;
            };
            if let Some(b) = inner.map.remove(&oldest) {
                inner.bytes -= b.len();
            }
        }
    }

    /// Drops every preview of an image (removed from the library).
    pub fn forget(&self, id: ImageId) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let of = |r: &PixelRequest| r.id() == id;
        let gone: Vec<PixelRequest> = inner.order.iter().copied().filter(of).collect();
        for r in gone {
            if let Some(b) = inner.map.remove(&r) {
                inner.bytes -= b.len();
            }
        }
        inner.order.retain(|r| !of(r));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{GrayImage, Luma, RgbImage};

    #[test]
    fn parses_only_known_paths() {
        assert_eq!(
            PixelRequest::parse("/thumb/3"),
            Some(PixelRequest::Thumb(3))
        );
        assert_eq!(
            PixelRequest::parse("/source/12"),
            Some(PixelRequest::Source(12))
        );
        assert_eq!(
            PixelRequest::parse("/result/4/9"),
            Some(PixelRequest::Result(4, 9))
        );
        assert_eq!(
            PixelRequest::parse("/result-thumb/4/9"),
            Some(PixelRequest::ResultThumb(4, 9))
        );
        assert_eq!(
            PixelRequest::parse("/display/5"),
            Some(PixelRequest::Display(5))
        );
        assert_eq!(
            PixelRequest::parse("/result-display/5/2"),
            Some(PixelRequest::ResultDisplay(5, 2))
        );
        assert_eq!(
            PixelRequest::parse("/diff/5/2/16"),
            Some(PixelRequest::Diff(5, 2, 16))
        );
        assert_eq!(
            PixelRequest::parse("/live/5/7/320"),
            Some(PixelRequest::Live(5, 7, 320))
        );
        for bad in [
            "/live/5",
            "/live/5/7",
            "/live/5/7/0",
            "/live/5/7/8193",
            "/live/5/7/320/1",
            "/diff/5/2",
            "/diff/5/2/3",
            "/diff/5/2/4/1",
            "/display/5/1",
            "/result-display/5",
            "/",
            "/thumb",
            "/thumb/x",
            "/result/4",
            "/thumb/1/2",
            "/file/etc/passwd",
        ] {
            assert_eq!(PixelRequest::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn fits_inside_the_box_and_keeps_small_images() {
        let big = Pixels::Rgb(RgbImage::new(4000, 1000));
        let p = fit(big, 2048);
        assert_eq!((p.width(), p.height()), (2048, 512));
        let small = Pixels::Gray(GrayImage::from_pixel(30, 20, Luma([7])));
        let p = fit(small.clone(), 320);
        assert_eq!(p, small);
    }

    #[test]
    fn renditions_decode_at_the_smallest_power_of_two_that_serves_them() {
        // A 12 MP photo: the display rendition is a quarter (1000 px, no resampling),
        // the thumbnail comes from an eighth, the zoom preview from the full image.
        assert_eq!(Rendition::Display.plan(4000), (4, 1000));
        assert_eq!(Rendition::Thumb.plan(4000), (8, THUMB_EDGE));
        assert_eq!(Rendition::Zoom.plan(4000), (1, PREVIEW_EDGE));
        assert_eq!(Rendition::Zoom.plan(4096), (2, PREVIEW_EDGE));
        // Small images are not enlarged nor reduced.
        assert_eq!(Rendition::Display.plan(900), (1, 900));
        assert_eq!(Rendition::Thumb.plan(200), (1, 200));
        // Huge ones: an eighth, then scaled.
        assert_eq!(Rendition::Display.plan(20_000), (8, DISPLAY_EDGE));
        // A thumbnail brings the display rendition along; the rest come alone.
        assert_eq!(
            PixelRequest::ResultThumb(3, 1).made_with(),
            [
                PixelRequest::ResultThumb(3, 1),
                PixelRequest::ResultDisplay(3, 1)
            ]
        );
        assert_eq!(
            PixelRequest::Display(3).made_with(),
            [PixelRequest::Display(3)]
        );
        assert!(PixelRequest::Thumb(3).for_grid() && !PixelRequest::Display(3).for_grid());
    }

    #[test]
    fn a_jpeg_renders_at_a_quarter_with_its_orientation_and_its_colours() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("photo.jpg");
        // 4000 x 3000, left half red, right half blue, stored sideways with EXIF
        // orientation 6 (turn clockwise to view): it shows 3000 wide, 4000 high.
        let img = RgbImage::from_fn(4000, 3000, |x, _| {
            if x < 2000 {
                image::Rgb([220, 30, 30])
            } else {
                image::Rgb([30, 30, 220])
            }
        });
        let exif = b"II*\0\x08\0\0\0\x01\0\x12\x01\x03\0\x01\0\0\0\x06\0\0\0\0\0\0\0".to_vec();
        let jpeg = codec::encode(
            &Frame::new(Pixels::Rgb(img)),
            Format::Jpeg,
            &Metadata {
                exif: Some(exif),
                icc: None,
            },
            &EncodeOptions::default(),
        )
        .unwrap();
        std::fs::write(&path, jpeg).unwrap();
        let out = render_all(&path, &[Rendition::Thumb, Rendition::Display]).unwrap();
        let thumb = codec::decode(&out[0], &Limits::default())
            .unwrap()
            .frame
            .pixels;
        let display = codec::decode(&out[1], &Limits::default())
            .unwrap()
            .frame
            .pixels;
        assert_eq!((thumb.width(), thumb.height()), (240, 320));
        assert_eq!((display.width(), display.height()), (750, 1000));
        let Pixels::Rgb(d) = display else {
            panic!("colour")
        };
        // Turned clockwise: red on top, blue below.
        assert!(d.get_pixel(375, 100).0[0] > 180 && d.get_pixel(375, 100).0[2] < 80);
        assert!(d.get_pixel(375, 900).0[2] > 180 && d.get_pixel(375, 900).0[0] < 80);
    }

    #[test]
    fn renders_a_jpeg_preview_of_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("g.png");
        GrayImage::from_fn(900, 300, |x, _| Luma([(x % 256) as u8]))
            .save(&path)
            .unwrap();
        let jpeg = render(&path, Rendition::Thumb).unwrap();
        let decoded = codec::decode(&jpeg, &Limits::default()).unwrap();
        assert_eq!(decoded.format, Format::Jpeg);
        assert_eq!(
            (decoded.frame.pixels.width(), decoded.frame.pixels.height()),
            (320, 107)
        );
        std::fs::write(&path, b"not an image").unwrap();
        assert!(render(&path, Rendition::Thumb).is_err());
    }

    #[test]
    fn transparent_pixels_keep_their_alpha_and_opaque_ones_stay_jpeg() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.png");
        // Left half transparent red, right half opaque blue.
        image::RgbaImage::from_fn(800, 400, |x, _| {
            if x < 400 {
                image::Rgba([255, 0, 0, 0])
            } else {
                image::Rgba([0, 0, 255, 255])
            }
        })
        .save(&path)
        .unwrap();
        let png = render(&path, Rendition::Thumb).unwrap();
        assert_eq!(media_type(&png), "image/png");
        let d = codec::decode(&png, &Limits::default()).unwrap();
        assert_eq!(
            (d.frame.pixels.width(), d.frame.pixels.height()),
            (320, 160)
        );
        let alpha = d.frame.alpha.expect("alpha kept");
        assert_eq!(alpha.get_pixel(10, 80).0[0], 0);
        assert_eq!(alpha.get_pixel(310, 80).0[0], 255);
        // Fully opaque RGBA shows nothing an opaque JPEG does not.
        image::RgbaImage::from_pixel(50, 40, image::Rgba([9, 9, 9, 255]))
            .save(&path)
            .unwrap();
        let jpeg = render(&path, Rendition::Thumb).unwrap();
        assert_eq!(media_type(&jpeg), "image/jpeg");
    }

    #[test]
    fn cache_evicts_oldest_and_forgets_by_id() {
        let c = PreviewCache::default();
        c.put(PixelRequest::Thumb(1), Arc::new(vec![0; 10]));
        c.put(PixelRequest::Result(1, 2), Arc::new(vec![0; 10]));
        c.put(PixelRequest::Thumb(2), Arc::new(vec![0; 10]));
        c.forget(1);
        assert!(c.get(PixelRequest::Thumb(1)).is_none());
        assert!(c.get(PixelRequest::Result(1, 2)).is_none());
        assert!(c.get(PixelRequest::Thumb(2)).is_some());
        c.put(PixelRequest::Thumb(3), Arc::new(vec![0; CACHE_BYTES]));
        assert!(c.get(PixelRequest::Thumb(2)).is_none());
        assert!(c.get(PixelRequest::Thumb(3)).is_some());
    }
}
