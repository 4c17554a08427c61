//! Bytes to pixels and back, with limits on everything that comes from outside.
//!
//! Decoding follows OpenCV's `imread(IMREAD_COLOR)`: 8 bits per channel (16-bit samples
//! keep their high byte, except TIFF colour, which libtiff's RGBA reader rounds to
//! `(v + 128) / 257`), EXIF orientation applied, alpha split off (Prism carries it
//! through to colour outputs). Grey sources stay one channel: every op gives the same
//! answer on grey as on grey replicated to BGR, at a third of the memory.
//!
//! JPEG goes through libjpeg-turbo (`turbojpeg`), the library OpenCV itself uses, so the
//! decoded pixels are the ones OpenCV sees, and because the pure-Rust JPEG encoders are
//! 3-10x slower than OpenCV's. Other formats use the `image` crate; PNG is written with the
//! `png` crate's fast level, like OpenCV's default compression level 1.

use std::borrow::Cow;
use std::fmt;
use std::io::{Cursor, Read};
use std::path::Path;

use image::{DynamicImage, GrayImage, ImageDecoder, ImageEncoder, ImageReader, RgbImage};
use serde::{Deserialize, Serialize};

use crate::frame::{Frame, Pixels};

/// Default cap on decoded pixels per image (100 MP).
pub const DEFAULT_MAX_PIXELS: u64 = 100_000_000;
/// Default cap on the size of an input file (512 MiB).
pub const DEFAULT_MAX_BYTES: u64 = 512 << 20;

/// Why bytes could not become pixels, or pixels bytes.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CodecError {
    /// The file is empty.
    #[error("empty file")]
    Empty,
    /// The bytes are not any image format Prism reads.
    #[error("not an image (the first bytes match no JPEG, PNG, WebP, TIFF or BMP signature)")]
    NotAnImage,
    /// The image is corrupt or truncated.
    #[error("cannot decode: {0}")]
    Decode(String),
    /// A valid file in a variant Prism does not handle.
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// The image breaks a limit; nothing was allocated for it.
    #[error("{0}")]
    Limit(String),
    /// Reading the file failed.
    #[error("{0}")]
    Io(String),
    /// Writing the output failed.
    #[error("cannot encode: {0}")]
    Encode(String),
}

/// Caps applied before anything big is allocated.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Maximum width x height.
    pub max_pixels: u64,
    /// Maximum input size in bytes.
    pub max_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_pixels: DEFAULT_MAX_PIXELS,
            max_bytes: DEFAULT_MAX_BYTES,
        }
    }
}

/// The image formats Prism reads and writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// JPEG (JFIF/EXIF).
    Jpeg,
    /// PNG.
    Png,
    /// WebP (written lossless).
    Webp,
    /// TIFF.
    Tiff,
    /// Windows bitmap.
    Bmp,
}

impl Format {
    /// The usual file extension.
    pub fn extension(self) -> &'static str {
        match self {
            Format::Jpeg => "jpg",
            Format::Png => "png",
            Format::Webp => "webp",
            Format::Tiff => "tiff",
            Format::Bmp => "bmp",
        }
    }

    /// Parses a `--format` name.
    pub fn from_name(name: &str) -> Option<Format> {
        match name.to_ascii_lowercase().as_str() {
            "jpeg" | "jpg" => Some(Format::Jpeg),
            "png" => Some(Format::Png),
            "webp" => Some(Format::Webp),
            "tiff" | "tif" => Some(Format::Tiff),
            "bmp" => Some(Format::Bmp),
            _ => None,
        }
    }

    /// Whether a file name's extension is one Prism reads (for walking folders).
    pub fn is_image_path(path: &Path) -> bool {
        path.extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| Format::from_name(e).is_some())
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.extension())
    }
}

/// Identifies the format from the first bytes; the extension is never trusted.
pub fn sniff(bytes: &[u8]) -> Result<Format, CodecError> {
    if bytes.is_empty() {
        return Err(CodecError::Empty);
    }
    let f = if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Format::Jpeg
    } else if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        Format::Png
    } else if bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
        Format::Webp
    } else if bytes.starts_with(b"II*\0") || bytes.starts_with(b"MM\0*") {
        Format::Tiff
    } else if bytes.starts_with(b"BM") {
        Format::Bmp
    } else {
        return Err(CodecError::NotAnImage);
    };
    Ok(f)
}

/// Metadata carried from input to output where the format allows.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Metadata {
    /// The EXIF block (a TIFF structure, without the `Exif\0\0` prefix), orientation
    /// already reset to "normal" because decoding applied it.
    pub exif: Option<Vec<u8>>,
    /// The ICC colour profile.
    pub icc: Option<Vec<u8>>,
}

/// A decoded input: pixels, the format it came in, and its metadata.
#[derive(Clone, Debug)]
pub struct Decoded {
    /// Pixels with EXIF orientation applied.
    pub frame: Frame,
    /// The source format.
    pub format: Format,
    /// EXIF and ICC.
    pub meta: Metadata,
}

/// Reads a file, refusing more than `limits.max_bytes` without reading it all.
pub fn read_file(path: &Path, limits: &Limits) -> Result<Vec<u8>, CodecError> {
    let file =
        std::fs::File::open(path).map_err(|e| CodecError::Io(format!("cannot open: {e}")))?;
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    if len > limits.max_bytes {
        return Err(too_many_bytes(len, limits));
    }
    let mut buf = Vec::with_capacity(len as usize);
    file.take(limits.max_bytes + 1)
        .read_to_end(&mut buf)
        .map_err(|e| CodecError::Io(format!("cannot read: {e}")))?;
    if buf.len() as u64 > limits.max_bytes {
        return Err(too_many_bytes(buf.len() as u64, limits));
    }
    Ok(buf)
}

fn too_many_bytes(len: u64, limits: &Limits) -> CodecError {
    CodecError::Limit(format!(
        "file is {len} bytes, over the limit of {} bytes",
        limits.max_bytes
    ))
}

fn check_pixels(w: u64, h: u64, limits: &Limits) -> Result<(), CodecError> {
    if w == 0 || h == 0 {
        return Err(CodecError::Decode(format!("image has no pixels ({w}x{h})")));
    }
    if w.saturating_mul(h) > limits.max_pixels {
        return Err(CodecError::Limit(format!(
            "image is {w}x{h} = {} pixels, over the limit of {}",
            w * h,
            limits.max_pixels
        )));
    }
    Ok(())
}

/// Reads width and height from the header only, to admit or refuse an image before
/// any pixel buffer exists.
pub fn peek_dimensions(bytes: &[u8], format: Format) -> Result<(u32, u32), CodecError> {
    if format == Format::Jpeg {
        let h = turbojpeg::read_header(bytes).map_err(|e| CodecError::Decode(e.to_string()))?;
        return Ok((h.width as u32, h.height as u32));
    }
    // PNG's size sits at a fixed place in IHDR; reading it directly refuses a huge claim
    // even when the rest of the file is missing.
    if format == Format::Png && bytes.len() >= 24 && &bytes[12..16] == b"IHDR" {
        let be =
            |o: usize| u32::from_be_bytes([bytes[o], bytes[o + 1], bytes[o + 2], bytes[o + 3]]);
        return Ok((be(16), be(20)));
    }
    let reader = ImageReader::with_format(Cursor::new(bytes), image_format(format));
    reader.into_dimensions().map_err(image_error)
}

fn image_format(format: Format) -> image::ImageFormat {
    match format {
        Format::Jpeg => image::ImageFormat::Jpeg,
        Format::Png => image::ImageFormat::Png,
        Format::Webp => image::ImageFormat::WebP,
        Format::Tiff => image::ImageFormat::Tiff,
        Format::Bmp => image::ImageFormat::Bmp,
    }
}

/// Decodes an image as OpenCV's `imread(IMREAD_COLOR)` would, keeping alpha aside.
///
/// ```
/// use prism_engine::codec::{decode, encode, EncodeOptions, Format, Limits, Metadata};
/// use prism_engine::{Frame, Pixels};
///
/// let img = image::RgbImage::from_pixel(4, 3, image::Rgb([10, 20, 30]));
/// let png = encode(&Frame::new(Pixels::Rgb(img)), Format::Png, &Metadata::default(),
///                  &EncodeOptions::default())?;
/// let decoded = decode(&png, &Limits::default())?;
/// assert_eq!(decoded.format, Format::Png);
/// assert_eq!((decoded.frame.pixels.width(), decoded.frame.pixels.height()), (4, 3));
/// // Limits are checked from the header, before any pixel buffer exists.
/// let tight = Limits { max_pixels: 11, ..Limits::default() };
/// assert!(decode(&png, &tight).is_err());
/// # Ok::<(), prism_engine::codec::CodecError>(())
/// ```
pub fn decode(bytes: &[u8], limits: &Limits) -> Result<Decoded, CodecError> {
    decode_reduced(bytes, limits, 1)
}

/// The reductions [`decode_reduced`] takes: libjpeg-turbo has SIMD inverse DCTs for
/// these (1/8 keeps only each block's DC coefficient).
pub const REDUCTIONS: [u32; 4] = [1, 2, 4, 8];

/// Decodes as [`decode`] does, but a JPEG at `1/denom` of its size (rounded up) through
/// libjpeg-turbo's DCT scaling, which skips most of the inverse DCT and the colour
/// conversion of the pixels it does not produce: for previews. Other formats (and
/// CMYK JPEGs) decode at full size; the caller scales those. `denom` is one of
/// [`REDUCTIONS`]. Limits apply to the full size the file declares.
///
/// ```
/// use prism_engine::codec::{decode_reduced, encode, EncodeOptions, Format, Limits, Metadata};
/// use prism_engine::{Frame, Pixels};
///
/// let img = image::RgbImage::from_pixel(64, 30, image::Rgb([10, 20, 30]));
/// let jpeg = encode(&Frame::new(Pixels::Rgb(img)), Format::Jpeg, &Metadata::default(),
///                   &EncodeOptions::default())?;
/// let quarter = decode_reduced(&jpeg, &Limits::default(), 4)?;
/// assert_eq!((quarter.frame.pixels.width(), quarter.frame.pixels.height()), (16, 8));
/// # Ok::<(), prism_engine::codec::CodecError>(())
/// ```
pub fn decode_reduced(bytes: &[u8], limits: &Limits, denom: u32) -> Result<Decoded, CodecError> {
    if !REDUCTIONS.contains(&denom) {
        return Err(CodecError::Unsupported(format!(
            "reduction 1/{denom} (1/1, 1/2, 1/4 or 1/8)"
        )));
    }
    if bytes.len() as u64 > limits.max_bytes {
        return Err(too_many_bytes(bytes.len() as u64, limits));
    }
    let format = sniff(bytes)?;
    let (w, h) = peek_dimensions(bytes, format)?;
    check_pixels(w as u64, h as u64, limits)?;
    match format {
        Format::Jpeg => decode_jpeg(bytes, limits, denom),
        _ => decode_with_image(bytes, format, limits),
    }
}

fn decode_jpeg(bytes: &[u8], limits: &Limits, denom: u32) -> Result<Decoded, CodecError> {
    let header = turbojpeg::read_header(bytes).map_err(|e| CodecError::Decode(e.to_string()))?;
    check_pixels(header.width as u64, header.height as u64, limits)?;
    let (exif, icc) = jpeg_segments(bytes);
    let gray = matches!(header.colorspace, turbojpeg::Colorspace::Gray);
    let format = if gray {
        turbojpeg::PixelFormat::GRAY
    } else {
        turbojpeg::PixelFormat::RGB
    };
    let scans = jpeg_scan_count(bytes);
    if scans > MAX_JPEG_SCANS {
        return Err(CodecError::Limit(format!(
            "JPEG with {scans} scans, over the limit of {MAX_JPEG_SCANS} (real files have \
             about ten; each scan makes the decoder go over the whole image again)"
        )));
    }
    let img = match decompress_jpeg(bytes, format, denom) {
        Ok(img) => img,
        // libjpeg-turbo's TurboJPEG API cannot turn CMYK/YCCK into RGB; `image` can.
        Err(_)
            if matches!(
                header.colorspace,
                turbojpeg::Colorspace::CMYK | turbojpeg::Colorspace::YCCK
            ) =>
        {
            return decode_with_image(bytes, Format::Jpeg, limits)
        }
        Err(e) => return Err(e),
    };
    let (w, h) = (img.width as u32, img.height as u32);
    let mut dynamic = if gray {
        DynamicImage::ImageLuma8(
            GrayImage::from_raw(w, h, img.pixels).ok_or_else(|| bad_buffer(w, h))?,
        )
    } else {
        DynamicImage::ImageRgb8(
            RgbImage::from_raw(w, h, img.pixels).ok_or_else(|| bad_buffer(w, h))?,
        )
    };
    let exif = exif.map(|e| {
        if let Some(o) = image::metadata::Orientation::from_exif_chunk(&e) {
            dynamic.apply_orientation(o);
        }
        reset_orientation(e)
    });
    Ok(Decoded {
        frame: split_alpha(dynamic, Format::Jpeg),
        format: Format::Jpeg,
        meta: Metadata { exif, icc },
    })
}

/// Most scans a JPEG may have. Progressive files have about ten; a crafted one with
/// thousands of tiny scans makes libjpeg-turbo re-run its whole-image passes thousands of
/// times (a CPU bomb in a few kilobytes). A few hundred leaves room for odd encoders.
pub const MAX_JPEG_SCANS: usize = 500;

/// Counts the scans (SOS markers) of a JPEG up to its end marker, skipping entropy-coded
/// data, without decoding anything.
fn jpeg_scan_count(b: &[u8]) -> usize {
    let (mut i, mut scans) = (2, 0);
    while i + 1 < b.len() {
        if b[i] != 0xFF {
            // Entropy-coded data between markers.
            i += 1;
            continue;
        }
        match b[i + 1] {
            // Fill byte: the marker starts at the next 0xFF.
            0xFF => i += 1,
            // A stuffed zero, a restart marker or TEM: no length follows.
            0x00 | 0x01 | 0xD0..=0xD7 => i += 2,
            0xD9 => break,
            m => {
                let Some(len) = b.get(i + 2..i + 4) else {
                    break;
                };
                if m == 0xDA {
                    scans += 1;
                }
                i += 2 + u16::from_be_bytes([len[0], len[1]]) as usize;
            }
        }
    }
    scans
}

/// libjpeg-turbo's decompressor through its TurboJPEG 3 API with both of its guards
/// against hostile files, the scan limit and the memory limit (the `turbojpeg` crate
/// exposes only the first).
struct TjDecompressor(turbojpeg::raw::tjhandle);

impl TjDecompressor {
    fn new() -> Result<Self, CodecError> {
        // SAFETY: tj3Init has no preconditions; a null handle is checked below.
        let h = unsafe { turbojpeg::raw::tj3Init(turbojpeg::raw::TJINIT_TJINIT_DECOMPRESS as _) };
        if h.is_null() {
            return Err(CodecError::Decode("cannot start the JPEG decoder".into()));
        }
        Ok(Self(h))
    }

    fn error(&self) -> String {
        // SAFETY: the handle is live; the string is owned by it and copied at once.
        let msg = unsafe { std::ffi::CStr::from_ptr(turbojpeg::raw::tj3GetErrorStr(self.0)) };
        msg.to_string_lossy().into_owned()
    }

    fn set(&mut self, param: turbojpeg::raw::TJPARAM, value: i32) -> Result<(), CodecError> {
        // SAFETY: the handle is live.
        if unsafe { turbojpeg::raw::tj3Set(self.0, param as _, value) } != 0 {
            return Err(CodecError::Decode(self.error()));
        }
        Ok(())
    }

    fn get(&mut self, param: turbojpeg::raw::TJPARAM) -> i32 {
        // SAFETY: the handle is live.
        unsafe { turbojpeg::raw::tj3Get(self.0, param as _) }
    }
}

impl Drop for TjDecompressor {
    fn drop(&mut self) {
        // SAFETY: the handle came from tj3Init and is destroyed once.
        unsafe { turbojpeg::raw::tj3Destroy(self.0) }
    }
}

/// Decodes a JPEG to `format` (RGB or GRAY) under the scan limit and a memory limit
/// derived from its declared size; either one broken is a [`CodecError::Limit`].
fn decompress_jpeg(
    bytes: &[u8],
    format: turbojpeg::PixelFormat,
    denom: u32,
) -> Result<turbojpeg::Image<Vec<u8>>, CodecError> {
    use turbojpeg::raw;
    let mut d = TjDecompressor::new()?;
    d.set(raw::TJPARAM_TJPARAM_SCANLIMIT, MAX_JPEG_SCANS as i32)?;
    // SAFETY: the pointer and length describe `bytes`, which outlives the call.
    if unsafe { raw::tj3DecompressHeader(d.0, bytes.as_ptr(), bytes.len() as _) } != 0 {
        return Err(CodecError::Decode(d.error()));
    }
    let w = d.get(raw::TJPARAM_TJPARAM_JPEGWIDTH);
    let h = d.get(raw::TJPARAM_TJPARAM_JPEGHEIGHT);
    let (w, h) = match (usize::try_from(w), usize::try_from(h)) {
        (Ok(w), Ok(h)) if w > 0 && h > 0 => (w, h),
        _ => return Err(CodecError::Decode(format!("bad JPEG size {w}x{h}"))),
    };
    // A progressive image keeps all its coefficients (2 bytes per sample, up to four
    // components); a file that needs more than that for its declared size is refused.
    let mib = ((w * h * 8) >> 20) + 64;
    d.set(
        raw::TJPARAM_TJPARAM_MAXMEMORY,
        mib.min(i32::MAX as usize) as i32,
    )?;
    if denom != 1 {
        let factor = raw::tjscalingfactor {
            num: 1,
            denom: denom as _,
        };
        // SAFETY: the handle is live and has read the header.
        if unsafe { raw::tj3SetScalingFactor(d.0, factor) } != 0 {
            return Err(CodecError::Decode(d.error()));
        }
    }
    // TJSCALED: the scaled size rounds up.
    let denom = denom as usize;
    let (w, h) = (w.div_ceil(denom), h.div_ceil(denom));
    let pitch = w * format.size();
    let mut pixels = vec![0u8; pitch * h];
    // SAFETY: `pixels` holds `pitch * h` bytes, exactly what a w x h image of `format`
    // with this pitch needs; `bytes` outlives the call.
    let rc = unsafe {
        raw::tj3Decompress8(
            d.0,
            bytes.as_ptr(),
            bytes.len() as _,
            pixels.as_mut_ptr(),
            pitch as _,
            format as _,
        )
    };
    if rc != 0 {
        let msg = d.error();
        // libjpeg-turbo says "more than N scans" or, for the memory limit, that it would
        // need a backing store: limits, not corrupt files.
        return Err(if msg.contains("scans") || msg.contains("acking store") {
            CodecError::Limit(format!("JPEG decoder limit: {msg}"))
        } else {
            CodecError::Decode(msg)
        });
    }
    Ok(turbojpeg::Image {
        pixels,
        width: w,
        pitch,
        height: h,
        format,
    })
}

fn bad_buffer(w: u32, h: u32) -> CodecError {
    CodecError::Decode(format!("decoder returned a short buffer for {w}x{h}"))
}

fn decode_with_image(bytes: &[u8], format: Format, limits: &Limits) -> Result<Decoded, CodecError> {
    let reader = ImageReader::with_format(Cursor::new(bytes), image_format(format));
    let mut decoder = reader.into_decoder().map_err(image_error)?;
    let (w, h) = decoder.dimensions();
    check_pixels(w as u64, h as u64, limits)?;
    let icc = match format {
        Format::Tiff => crate::exif::icc_from_tiff_file(bytes),
        _ => decoder.icc_profile().ok().flatten(),
    };
    let mut lim = image::Limits::default();
    // 16-bit RGBA is the widest layout: 8 bytes a pixel, plus the decoder's own buffers.
    lim.max_alloc = Some(limits.max_pixels.saturating_mul(8).saturating_add(64 << 20));
    decoder.set_limits(lim).map_err(image_error)?;
    // TIFF keeps EXIF fields in its own IFDs, not as one blob: lift them into one.
    let exif = match format {
        Format::Tiff => crate::exif::blob_from_tiff_file(bytes),
        _ => decoder.exif_metadata().ok().flatten(),
    };
    let orientation = decoder.orientation().ok();
    let mut dynamic = DynamicImage::from_decoder(decoder).map_err(image_error)?;
    if let Some(o) = orientation {
        dynamic.apply_orientation(o);
    }
    Ok(Decoded {
        frame: split_alpha(dynamic, format),
        format,
        meta: Metadata {
            exif: exif.map(reset_orientation),
            icc,
        },
    })
}

fn image_error(e: image::ImageError) -> CodecError {
    use image::ImageError as E;
    match e {
        E::Limits(l) => CodecError::Limit(format!("image over the decoder's limits: {l}")),
        E::Unsupported(u) => CodecError::Unsupported(u.to_string()),
        E::IoError(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
            CodecError::Decode("truncated file".into())
        }
        other => CodecError::Decode(other.to_string()),
    }
}

/// A 16-bit colour sample as OpenCV's `IMREAD_COLOR` reads it from `format`: libtiff's RGBA
/// reader (OpenCV's TIFF path to 8 bits) rounds with `(v + 128) / 257`; libpng's
/// `png_set_strip_16` and the rest keep the high byte. Grey always keeps the high byte
/// (libtiff's grey reader does too).
fn colour16_to_8(format: Format) -> fn(&u16) -> u8 {
    fn high(v: &u16) -> u8 {
        (v >> 8) as u8
    }
    fn rounded(v: &u16) -> u8 {
        ((*v as u32 + 128) / 257) as u8
    }
    if format == Format::Tiff {
        rounded
    } else {
        high
    }
}

/// Splits any decoded layout into 8-bit grey or RGB plus an optional alpha channel.
/// 16-bit samples become 8-bit as OpenCV's `IMREAD_COLOR` reads them from `format`
/// ([`colour16_to_8`]; alpha as the colour); float samples keep their high byte.
fn split_alpha(img: DynamicImage, format: Format) -> Frame {
    let colour16 = colour16_to_8(format);
    match img {
        DynamicImage::ImageLuma8(g) => Frame::new(Pixels::Gray(g)),
        DynamicImage::ImageRgb8(c) => Frame::new(Pixels::Rgb(c)),
        DynamicImage::ImageLuma16(g) => {
            let (w, h) = g.dimensions();
            let raw = g.as_raw().iter().map(|v| (v >> 8) as u8).collect();
            Frame::new(Pixels::Gray(GrayImage::from_raw(w, h, raw).expect("sized")))
        }
        DynamicImage::ImageRgb16(c) => {
            let (w, h) = c.dimensions();
            let raw = c.as_raw().iter().map(colour16).collect();
            Frame::new(Pixels::Rgb(RgbImage::from_raw(w, h, raw).expect("sized")))
        }
        DynamicImage::ImageLumaA8(_) | DynamicImage::ImageLumaA16(_) => {
            let la = match img {
                DynamicImage::ImageLumaA8(la) => la,
                other => high_bytes_la(&other),
            };
            let (w, h) = la.dimensions();
            let mut g = Vec::with_capacity((w * h) as usize);
            let mut a = Vec::with_capacity((w * h) as usize);
            for p in la.as_raw().chunks_exact(2) {
                g.push(p[0]);
                a.push(p[1]);
            }
            Frame {
                pixels: Pixels::Gray(GrayImage::from_raw(w, h, g).expect("sized")),
                alpha: Some(GrayImage::from_raw(w, h, a).expect("sized")),
            }
        }
        other => {
            let has_alpha = other.color().has_alpha();
            let rgba = match other {
                DynamicImage::ImageRgba8(x) => x,
                DynamicImage::ImageRgba16(x) => {
                    let (w, h) = x.dimensions();
                    let raw = x.as_raw().iter().map(colour16).collect();
                    image::RgbaImage::from_raw(w, h, raw).expect("sized")
                }
                x => x.to_rgba8(),
            };
            let (w, h) = rgba.dimensions();
            let mut c = Vec::with_capacity((w * h * 3) as usize);
            let mut a = Vec::with_capacity((w * h) as usize);
            for p in rgba.as_raw().chunks_exact(4) {
                c.extend_from_slice(&p[..3]);
                a.push(p[3]);
            }
            Frame {
                pixels: Pixels::Rgb(RgbImage::from_raw(w, h, c).expect("sized")),
                alpha: has_alpha.then(|| GrayImage::from_raw(w, h, a).expect("sized")),
            }
        }
    }
}

fn high_bytes_la(img: &DynamicImage) -> image::GrayAlphaImage {
    match img {
        DynamicImage::ImageLumaA16(x) => {
            let (w, h) = x.dimensions();
            let raw = x.as_raw().iter().map(|v| (v >> 8) as u8).collect();
            image::GrayAlphaImage::from_raw(w, h, raw).expect("sized")
        }
        other => other.to_luma_alpha8(),
    }
}

/// Walks JPEG markers up to the first scan and returns the EXIF block and ICC profile.
fn jpeg_segments(bytes: &[u8]) -> (Option<Vec<u8>>, Option<Vec<u8>>) {
    let mut exif = None;
    let mut icc_chunks: Vec<(u8, &[u8])> = Vec::new();
    let mut i = 2;
    while i + 4 <= bytes.len() {
        if bytes[i] != 0xFF {
            break;
        }
        let marker = bytes[i + 1];
        if marker == 0xFF {
            i += 1;
            continue;
        }
        if marker == 0xDA || marker == 0xD9 {
            break;
        }
        let len = u16::from_be_bytes([bytes[i + 2], bytes[i + 3]]) as usize;
        let end = i + 2 + len;
        if len < 2 || end > bytes.len() {
            break;
        }
        let body = &bytes[i + 4..end];
        if marker == 0xE1 && body.starts_with(b"Exif\0\0") && exif.is_none() {
            exif = Some(body[6..].to_vec());
        } else if marker == 0xE2 && body.starts_with(b"ICC_PROFILE\0") && body.len() > 14 {
            icc_chunks.push((body[12], &body[14..]));
        }
        i = end;
    }
    icc_chunks.sort_by_key(|c| c.0);
    let icc =
        (!icc_chunks.is_empty()).then(|| icc_chunks.iter().flat_map(|c| c.1).copied().collect());
    (exif, icc)
}

/// Sets the Orientation tag of IFD0 to 1 ("normal"): the pixels are already rotated.
fn reset_orientation(mut exif: Vec<u8>) -> Vec<u8> {
    let le = match exif.get(..4) {
        Some(b"II*\0") => true,
        Some(b"MM\0*") => false,
        _ => return exif,
    };
    let rd16 = |b: &[u8], o: usize| -> Option<u16> {
        let s = b.get(o..o + 2)?;
        Some(if le {
            u16::from_le_bytes([s[0], s[1]])
        } else {
            u16::from_be_bytes([s[0], s[1]])
        })
    };
    let Some(ifd) = exif.get(4..8).map(|s| {
        let a = [s[0], s[1], s[2], s[3]];
        (if le {
            u32::from_le_bytes(a)
        } else {
            u32::from_be_bytes(a)
        }) as usize
    }) else {
        return exif;
    };
    let Some(count) = rd16(&exif, ifd) else {
        return exif;
    };
    for n in 0..count as usize {
        let e = ifd + 2 + n * 12;
        if rd16(&exif, e) == Some(0x0112) && exif.len() >= e + 10 {
            let one = if le {
                1u16.to_le_bytes()
            } else {
                1u16.to_be_bytes()
            };
            exif[e + 8..e + 10].copy_from_slice(&one);
            break;
        }
    }
    exif
}

/// How outputs are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EncodeOptions {
    /// JPEG quality, 1-100 (default 95; the original app's 75 lost visible detail).
    pub jpeg_quality: u8,
}

impl Default for EncodeOptions {
    fn default() -> Self {
        Self { jpeg_quality: 95 }
    }
}

/// Encodes a frame, re-attaching alpha where the format has it and embedding metadata
/// where the format carries it.
pub fn encode(
    frame: &Frame,
    format: Format,
    meta: &Metadata,
    opts: &EncodeOptions,
) -> Result<Vec<u8>, CodecError> {
    match format {
        Format::Jpeg => encode_jpeg(&frame.pixels, meta, opts),
        Format::Png => encode_png(frame, meta),
        _ => encode_with_image(frame, format, meta),
    }
}

fn encode_jpeg(
    pixels: &Pixels,
    meta: &Metadata,
    opts: &EncodeOptions,
) -> Result<Vec<u8>, CodecError> {
    let (w, h) = (pixels.width() as usize, pixels.height() as usize);
    let (raw, format, subsamp) = match pixels {
        Pixels::Gray(g) => (
            g.as_raw(),
            turbojpeg::PixelFormat::GRAY,
            turbojpeg::Subsamp::Gray,
        ),
        // 4:2:0, as OpenCV's imwrite does by default.
        Pixels::Rgb(c) => (
            c.as_raw(),
            turbojpeg::PixelFormat::RGB,
            turbojpeg::Subsamp::Sub2x2,
        ),
    };
    let image = turbojpeg::Image {
        pixels: raw.as_slice(),
        width: w,
        pitch: w * format.size(),
        height: h,
        format,
    };
    let enc = |e: turbojpeg::Error| CodecError::Encode(e.to_string());
    let mut c = turbojpeg::Compressor::new().map_err(enc)?;
    c.set_quality(opts.jpeg_quality.clamp(1, 100) as i32)
        .map_err(enc)?;
    c.set_subsamp(subsamp).map_err(enc)?;
    let jpeg = c.compress_to_vec(image).map_err(enc)?;
    Ok(insert_jpeg_metadata(jpeg, meta))
}

/// Inserts APP1 (EXIF) and APP2 (ICC, chunked) after SOI and the JFIF APP0 segment.
fn insert_jpeg_metadata(jpeg: Vec<u8>, meta: &Metadata) -> Vec<u8> {
    if meta.exif.is_none() && meta.icc.is_none() {
        return jpeg;
    }
    let mut at = 2;
    if jpeg.len() > 6 && jpeg[2] == 0xFF && jpeg[3] == 0xE0 {
        at = 4 + u16::from_be_bytes([jpeg[4], jpeg[5]]) as usize;
    }
    let mut seg = Vec::new();
    if let Some(exif) = meta.exif.as_ref().filter(|e| e.len() + 8 <= 0xFFFF) {
        seg.extend_from_slice(&[0xFF, 0xE1]);
        seg.extend_from_slice(&((exif.len() + 8) as u16).to_be_bytes());
        seg.extend_from_slice(b"Exif\0\0");
        seg.extend_from_slice(exif);
    }
    if let Some(icc) = &meta.icc {
        const CHUNK: usize = 65_519;
        let chunks: Vec<&[u8]> = icc.chunks(CHUNK).collect();
        if chunks.len() <= 255 {
            for (n, c) in chunks.iter().enumerate() {
                seg.extend_from_slice(&[0xFF, 0xE2]);
                seg.extend_from_slice(&((c.len() + 16) as u16).to_be_bytes());
                seg.extend_from_slice(b"ICC_PROFILE\0");
                seg.push(n as u8 + 1);
                seg.push(chunks.len() as u8);
                seg.extend_from_slice(c);
            }
        }
    }
    let mut out = Vec::with_capacity(jpeg.len() + seg.len());
    out.extend_from_slice(&jpeg[..at.min(jpeg.len())]);
    out.extend_from_slice(&seg);
    out.extend_from_slice(&jpeg[at.min(jpeg.len())..]);
    out
}

/// Interleaves colour and alpha into the layout encoders take (borrowed when no alpha).
fn interleaved(frame: &Frame) -> (Cow<'_, [u8]>, png::ColorType) {
    match (&frame.pixels, &frame.alpha) {
        (Pixels::Gray(g), None) => (Cow::Borrowed(g.as_raw()), png::ColorType::Grayscale),
        (Pixels::Rgb(c), None) => (Cow::Borrowed(c.as_raw()), png::ColorType::Rgb),
        (Pixels::Gray(g), Some(a)) => {
            let v = g
                .as_raw()
                .iter()
                .zip(a.as_raw())
                .flat_map(|(&g, &a)| [g, a])
                .collect();
            (v, png::ColorType::GrayscaleAlpha)
        }
        (Pixels::Rgb(c), Some(a)) => {
            let v = c
                .as_raw()
                .chunks_exact(3)
                .zip(a.as_raw())
                .flat_map(|(p, &a)| [p[0], p[1], p[2], a])
                .collect();
            (Cow::Owned(v), png::ColorType::Rgba)
        }
    }
}

fn encode_png(frame: &Frame, meta: &Metadata) -> Result<Vec<u8>, CodecError> {
    let (data, color) = interleaved(frame);
    let mut info = png::Info::with_size(frame.pixels.width(), frame.pixels.height());
    info.color_type = color;
    info.bit_depth = png::BitDepth::Eight;
    info.icc_profile = meta.icc.as_deref().map(Into::into);
    info.exif_metadata = meta.exif.as_deref().map(Into::into);
    let mut out = Vec::new();
    let enc = |e: png::EncodingError| CodecError::Encode(e.to_string());
    let mut encoder = png::Encoder::with_info(&mut out, info).map_err(enc)?;
    encoder.set_compression(png::Compression::Fast);
    let mut writer = encoder.write_header().map_err(enc)?;
    writer.write_image_data(&data).map_err(enc)?;
    writer.finish().map_err(enc)?;
    Ok(out)
}

fn encode_with_image(
    frame: &Frame,
    format: Format,
    meta: &Metadata,
) -> Result<Vec<u8>, CodecError> {
    let (data, color) = interleaved(frame);
    let ct = match color {
        png::ColorType::Grayscale => image::ExtendedColorType::L8,
        png::ColorType::GrayscaleAlpha => image::ExtendedColorType::La8,
        png::ColorType::Rgba => image::ExtendedColorType::Rgba8,
        _ => image::ExtendedColorType::Rgb8,
    };
    let (w, h) = (frame.pixels.width(), frame.pixels.height());
    let mut out = Cursor::new(Vec::new());
    let res = match format {
        Format::Webp => {
            // WebP has no grey layout: widen to RGB(A), as any viewer would show it.
            let (data, ct) = match ct {
                image::ExtendedColorType::L8 => (
                    Cow::Owned(data.iter().flat_map(|&g| [g, g, g]).collect()),
                    image::ExtendedColorType::Rgb8,
                ),
                image::ExtendedColorType::La8 => (
                    Cow::Owned(
                        data.chunks_exact(2)
                            .flat_map(|p| [p[0], p[0], p[0], p[1]])
                            .collect(),
                    ),
                    image::ExtendedColorType::Rgba8,
                ),
                _ => (data, ct),
            };
            let mut enc = image::codecs::webp::WebPEncoder::new_lossless(&mut out);
            if let Some(icc) = &meta.icc {
                let _ = enc.set_icc_profile(icc.clone());
            }
            if let Some(exif) = &meta.exif {
                let _ = enc.set_exif_metadata(exif.clone());
            }
            enc.write_image(&data, w, h, ct)
        }
        Format::Tiff => {
            // TIFF has no grey + alpha layout in the encoder: widen to RGBA.
            let (data, channels) = match ct {
                image::ExtendedColorType::L8 => (data, 1),
                image::ExtendedColorType::La8 => (
                    Cow::Owned(
                        data.chunks_exact(2)
                            .flat_map(|p| [p[0], p[0], p[0], p[1]])
                            .collect(),
                    ),
                    4,
                ),
                image::ExtendedColorType::Rgba8 => (data, 4),
                _ => (data, 3),
            };
            return crate::exif::encode_tiff(
                &data,
                w,
                h,
                channels,
                meta.icc.as_deref(),
                meta.exif.as_deref(),
            )
            .map_err(|e| CodecError::Encode(e.to_string()));
        }
        _ => image::codecs::bmp::BmpEncoder::new(&mut out).write_image(&data, w, h, ct),
    };
    res.map_err(|e| CodecError::Encode(e.to_string()))?;
    Ok(out.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Frame {
        Frame::new(Pixels::Rgb(RgbImage::from_fn(37, 23, |x, y| {
            image::Rgb([(x * 7) as u8, (y * 11) as u8, (x * y) as u8])
        })))
    }

    #[test]
    fn libjpeg_turbo_enforces_the_scan_limit_itself() {
        let mut c = turbojpeg::Compressor::new().unwrap();
        c.set_progressive(true).unwrap();
        let img = turbojpeg::Image {
            pixels: vec![90u8; 32 * 32 * 3],
            width: 32,
            pitch: 32 * 3,
            height: 32,
            format: turbojpeg::PixelFormat::RGB,
        };
        let jpeg = c.compress_to_vec(img.as_deref()).unwrap();
        let normal = jpeg_scan_count(&jpeg);
        assert!((2..20).contains(&normal), "{normal} scans");
        assert!(decompress_jpeg(&jpeg, turbojpeg::PixelFormat::RGB, 1).is_ok());
        // The last scan again and again, past the limit: the counter sees them all, and
        // the decoder refuses on its own too (the counter runs first in `decode`).
        let last = jpeg.windows(2).rposition(|w| w == [0xFF, 0xDA]).unwrap();
        let eoi = jpeg.len() - 2;
        let mut bomb = jpeg[..eoi].to_vec();
        for _ in 0..MAX_JPEG_SCANS {
            bomb.extend_from_slice(&jpeg[last..eoi]);
        }
        bomb.extend_from_slice(&[0xFF, 0xD9]);
        assert_eq!(jpeg_scan_count(&bomb), normal + MAX_JPEG_SCANS);
        match decompress_jpeg(&bomb, turbojpeg::PixelFormat::RGB, 1) {
            Err(CodecError::Limit(m)) => assert!(m.contains("scans"), "{m}"),
            other => panic!("{:?}", other.map(|i| i.width)),
        }
    }

    #[test]
    fn sniff_rejects_empty_and_garbage() {
        assert_eq!(sniff(b""), Err(CodecError::Empty));
        assert_eq!(sniff(b"hello world"), Err(CodecError::NotAnImage));
    }

    #[test]
    fn lossless_formats_round_trip() {
        let f = sample();
        for fmt in [Format::Png, Format::Webp, Format::Tiff, Format::Bmp] {
            let bytes = encode(&f, fmt, &Metadata::default(), &EncodeOptions::default()).unwrap();
            let d = decode(&bytes, &Limits::default()).unwrap();
            assert_eq!(d.format, fmt);
            assert_eq!(d.frame.pixels, f.pixels, "{fmt}");
        }
    }

    #[test]
    fn alpha_survives_png() {
        let mut f = sample();
        f.alpha = Some(GrayImage::from_fn(37, 23, |x, _| image::Luma([x as u8])));
        let bytes = encode(
            &f,
            Format::Png,
            &Metadata::default(),
            &EncodeOptions::default(),
        )
        .unwrap();
        let d = decode(&bytes, &Limits::default()).unwrap();
        assert_eq!(d.frame.alpha, f.alpha);
    }

    #[test]
    fn jpeg_carries_exif_and_icc() {
        let meta = Metadata {
            exif: Some(b"II*\0\x08\0\0\0\0\0\0\0\0\0".to_vec()),
            icc: Some(vec![7u8; 70_000]),
        };
        let bytes = encode(&sample(), Format::Jpeg, &meta, &EncodeOptions::default()).unwrap();
        let d = decode(&bytes, &Limits::default()).unwrap();
        assert_eq!(d.meta, meta);
    }

    #[test]
    fn pixel_limit_refuses_before_decoding() {
        let bytes = encode(
            &sample(),
            Format::Png,
            &Metadata::default(),
            &EncodeOptions::default(),
        )
        .unwrap();
        let lim = Limits {
            max_pixels: 100,
            ..Limits::default()
        };
        assert!(matches!(decode(&bytes, &lim), Err(CodecError::Limit(_))));
    }

    #[test]
    fn orientation_is_reset_in_both_byte_orders() {
        let mut le = b"II*\0\x08\0\0\0\x01\0\x12\x01\x03\0\x01\0\0\0\x06\0\0\0".to_vec();
        le = reset_orientation(le);
        assert_eq!(&le[18..20], &[1, 0]);
        let be =
            reset_orientation(b"MM\0*\0\0\0\x08\0\x01\x01\x12\0\x03\0\0\0\x01\0\x08\0\0".to_vec());
        assert_eq!(&be[18..20], &[0, 1]);
    }

    #[test]
    fn exif_orientation_is_applied_and_reset() {
        // Orientation 6: the stored image must be turned 90 degrees clockwise to view.
        let exif = b"II*\0\x08\0\0\0\x01\0\x12\x01\x03\0\x01\0\0\0\x06\0\0\0\0\0\0\0".to_vec();
        let meta = Metadata {
            exif: Some(exif),
            icc: None,
        };
        let img = GrayImage::from_fn(16, 8, |x, _| image::Luma([if x < 8 { 0 } else { 255 }]));
        let bytes = encode(
            &Frame::new(Pixels::Gray(img)),
            Format::Png,
            &meta,
            &EncodeOptions::default(),
        )
        .unwrap();
        let d = decode(&bytes, &Limits::default()).unwrap();
        let Pixels::Gray(g) = d.frame.pixels else {
            panic!("grey expected")
        };
        assert_eq!(g.dimensions(), (8, 16));
        // The left half (dark) ends up on top after a clockwise turn.
        assert_eq!(g.get_pixel(3, 2).0, [0]);
        assert_eq!(g.get_pixel(3, 13).0, [255]);
        let exif = d.meta.exif.unwrap();
        assert_eq!(&exif[18..20], &[1, 0], "the written tag says normal");
    }

    #[test]
    fn reduced_jpeg_decodes_are_smaller_turned_and_close_to_the_full_one() {
        // Orientation 6 again, on a JPEG this time: the reduced decode turns it as well.
        let exif = b"II*\0\x08\0\0\0\x01\0\x12\x01\x03\0\x01\0\0\0\x06\0\0\0\0\0\0\0".to_vec();
        let meta = Metadata {
            exif: Some(exif),
            icc: None,
        };
        let img = RgbImage::from_fn(203, 96, |x, y| {
            image::Rgb([if x < 101 { 20 } else { 230 }, (y * 2) as u8, 90])
        });
        let bytes = encode(
            &Frame::new(Pixels::Rgb(img)),
            Format::Jpeg,
            &meta,
            &EncodeOptions::default(),
        )
        .unwrap();
        let full = decode(&bytes, &Limits::default()).unwrap();
        assert_eq!(full.frame.pixels.width(), 96);
        for denom in [2u32, 4, 8] {
            let d = decode_reduced(&bytes, &Limits::default(), denom).unwrap();
            let Pixels::Rgb(c) = d.frame.pixels else {
                panic!("colour expected")
            };
            // Turned: 96 x 203 stored sideways, each edge divided and rounded up.
            assert_eq!(
                c.dimensions(),
                (96u32.div_ceil(denom), 203u32.div_ceil(denom))
            );
            // The left half (dark red) ends up on top, the bright half below.
            let (w, h) = c.dimensions();
            assert!(c.get_pixel(w / 2, h / 8).0[0] < 60, "1/{denom}");
            assert!(c.get_pixel(w / 2, h - 1 - h / 8).0[0] > 190, "1/{denom}");
            assert!(d.meta.exif.is_some());
        }
        assert!(matches!(
            decode_reduced(&bytes, &Limits::default(), 3),
            Err(CodecError::Unsupported(_))
        ));
        // Limits are those of the full size, whatever the reduction.
        let lim = Limits {
            max_pixels: 1000,
            ..Limits::default()
        };
        assert!(matches!(
            decode_reduced(&bytes, &lim, 8),
            Err(CodecError::Limit(_))
        ));
        // Other formats decode whole: the caller scales them.
        let png = encode(
            &sample(),
            Format::Png,
            &Metadata::default(),
            &EncodeOptions::default(),
        )
        .unwrap();
        let d = decode_reduced(&png, &Limits::default(), 4).unwrap();
        assert_eq!(d.frame.pixels, sample().pixels);
    }
}
