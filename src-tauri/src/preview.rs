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

use image::{imageops, GrayImage};
use prism_engine::codec::{self, EncodeOptions, Format, Limits, Metadata};
use prism_engine::{EngineError, Frame, Pixels};

use crate::library::ImageId;

/// Longest edge of grid thumbnails (2x a card's CSS size for HiDPI screens).
pub const THUMB_EDGE: u32 = 320;
/// Longest edge of the images in the result views: enough to zoom in a few times.
pub const PREVIEW_EDGE: u32 = 2048;
/// JPEG quality of previews: they are looked at, never saved.
const PREVIEW_QUALITY: u8 = 88;
/// Bytes of encoded previews kept in memory.
pub const CACHE_BYTES: usize = 256 << 20;

/// What a `prism://localhost/...` URL asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PixelRequest {
    /// `/thumb/<id>`: the source, thumbnail size.
    Thumb(ImageId),
    /// `/source/<id>`: the source, preview size.
    Source(ImageId),
    /// `/result/<id>/<rev>`: a result, preview size.
    Result(ImageId, u64),
    /// `/result-thumb/<id>/<rev>`: a result, thumbnail size.
    ResultThumb(ImageId, u64),
}

impl PixelRequest {
    /// Parses a URL path; `None` for anything else.
    pub fn parse(path: &str) -> Option<Self> {
        let mut parts = path.trim_start_matches('/').split('/');
        let kind = parts.next()?;
        let id: ImageId = parts.next()?.parse().ok()?;
        let req = match kind {
            "thumb" => PixelRequest::Thumb(id),
            "source" => PixelRequest::Source(id),
            "result" => PixelRequest::Result(id, parts.next()?.parse().ok()?),
            "result-thumb" => PixelRequest::ResultThumb(id, parts.next()?.parse().ok()?),
            _ => return None,
        };
        parts.next().is_none().then_some(req)
    }

    /// The image it is about.
    pub fn id(self) -> ImageId {
        match self {
            PixelRequest::Thumb(id)
            | PixelRequest::Source(id)
            | PixelRequest::Result(id, _)
            | PixelRequest::ResultThumb(id, _) => id,
        }
    }

    /// The longest edge this request is rendered at.
    pub fn max_edge(self) -> u32 {
        match self {
            PixelRequest::Thumb(_) | PixelRequest::ResultThumb(..) => THUMB_EDGE,
            PixelRequest::Source(_) | PixelRequest::Result(..) => PREVIEW_EDGE,
        }
    }
}

/// Images over this many pixels render one at a time.
const BIG_PIXELS: u64 = 16_000_000;
static BIG_RENDER: Mutex<()> = Mutex::new(());

/// Decodes `path`, scales it to fit `max_edge` (never up) and encodes a JPEG, or a PNG
/// with its alpha when any pixel is not opaque.
pub fn render(path: &Path, max_edge: u32) -> Result<Vec<u8>, EngineError> {
    let limits = Limits::default();
    let bytes = codec::read_file(path, &limits)?;
    // Up to four previews render at once; only one of them may be a big image, so
    // previews hold a few hundred MB at most on top of the batch's own budget.
    let (w, h) = codec::peek_dimensions(&bytes, codec::sniff(&bytes)?)?;
    let _big = (u64::from(w) * u64::from(h) > BIG_PIXELS)
        .then(|| BIG_RENDER.lock().unwrap_or_else(|e| e.into_inner()));
    let decoded = codec::decode(&bytes, &limits)?;
    drop(bytes);
    // An alpha channel that is opaque everywhere shows nothing: such previews stay JPEG.
    let alpha = decoded
        .frame
        .alpha
        .filter(|a| a.as_raw().iter().any(|&v| v < 255));
    let pixels = fit(decoded.frame.pixels, max_edge);
    let Some(alpha) = alpha else {
        return Ok(codec::encode(
            &Frame::new(pixels),
            Format::Jpeg,
            &Metadata::default(),
            &EncodeOptions {
                jpeg_quality: PREVIEW_QUALITY,
            },
        )?);
    };
    let alpha = fit_alpha(alpha, pixels.width(), pixels.height());
    Ok(codec::encode(
        &Frame {
            pixels,
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

/// Scales an alpha channel to the size its colour was scaled to.
fn fit_alpha(alpha: GrayImage, w: u32, h: u32) -> GrayImage {
    if alpha.dimensions() == (w, h) {
        alpha
    } else {
        imageops::thumbnail(&alpha, w, h)
    }
}

/// Scales down to fit in `max_edge` x `max_edge`, keeping the aspect ratio.
pub fn fit(pixels: Pixels, max_edge: u32) -> Pixels {
    let (w, h) = (pixels.width(), pixels.height());
    if w.max(h) <= max_edge {
        return pixels;
    }
    let scale = max_edge as f64 / w.max(h) as f64;
    let nw = ((w as f64 * scale).round() as u32).max(1);
    let nh = ((h as f64 * scale).round() as u32).max(1);
    // `thumbnail` averages every source pixel into its target: no aliasing on
    // edge maps and keypoint drawings, which point sampling would break up.
    match pixels {
        Pixels::Gray(g) => Pixels::Gray(imageops::thumbnail(&g, nw, nh)),
        Pixels::Rgb(c) => Pixels::Rgb(imageops::thumbnail(&c, nw, nh)),
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
        for bad in [
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
    fn renders_a_jpeg_preview_of_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("g.png");
        GrayImage::from_fn(900, 300, |x, _| Luma([(x % 256) as u8]))
            .save(&path)
            .unwrap();
        let jpeg = render(&path, THUMB_EDGE).unwrap();
        let decoded = codec::decode(&jpeg, &Limits::default()).unwrap();
        assert_eq!(decoded.format, Format::Jpeg);
        assert_eq!(
            (decoded.frame.pixels.width(), decoded.frame.pixels.height()),
            (320, 107)
        );
        std::fs::write(&path, b"not an image").unwrap();
        assert!(render(&path, THUMB_EDGE).is_err());
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
        let png = render(&path, THUMB_EDGE).unwrap();
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
        let jpeg = render(&path, THUMB_EDGE).unwrap();
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
