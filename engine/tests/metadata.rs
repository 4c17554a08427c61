//! The README's metadata promise, tried from outside: one image per format carrying
//! EXIF (camera make, an Exif sub-IFD field) and an ICC profile goes through
//! `prism process` into every format that carries metadata; the output keeps both.

use std::io::Cursor;
use std::path::Path;

use image::RgbImage;
use prism_engine::codec::{self, EncodeOptions, Format, Limits, Metadata};
use prism_engine::{Frame, Pixels};

mod common;

const MAKE: &[u8] = b"PrismCam";
/// ISOSpeedRatings = 400 as a little-endian IFD entry (tag 0x8827, SHORT, count 1).
const ISO_ENTRY: [u8; 10] = [0x27, 0x88, 3, 0, 1, 0, 0, 0, 0x90, 0x01];

/// An EXIF blob as cameras write it: IFD0 with Make and a pointer to an Exif IFD with ISO.
fn exif_blob() -> Vec<u8> {
    let mut b = b"II*\0\x08\0\0\0".to_vec();
    // IFD0 at 8: two entries (Make -> offset 38, ExifIFD -> 47), next 0.
    b.extend_from_slice(&2u16.to_le_bytes());
    b.extend_from_slice(&[0x0F, 0x01, 2, 0, 9, 0, 0, 0, 38, 0, 0, 0]);
    b.extend_from_slice(&[0x69, 0x87, 4, 0, 1, 0, 0, 0, 48, 0, 0, 0]);
    b.extend_from_slice(&0u32.to_le_bytes());
    assert_eq!(b.len(), 38);
    b.extend_from_slice(b"PrismCam\0\0");
    assert_eq!(b.len(), 48);
    b.extend_from_slice(&1u16.to_le_bytes());
    b.extend_from_slice(&ISO_ENTRY);
    b.extend_from_slice(&[0, 0]);
    b.extend_from_slice(&0u32.to_le_bytes());
    b
}

/// Stands for an sRGB profile: a header with the ICC signature and a recognisable body.
fn icc_profile() -> Vec<u8> {
    let mut p = vec![0u8; 180];
    p[..4].copy_from_slice(&180u32.to_be_bytes());
    p[12..16].copy_from_slice(b"mntr");
    p[16..20].copy_from_slice(b"RGB ");
    p[36..40].copy_from_slice(b"acsp");
    for (i, v) in p[128..].iter_mut().enumerate() {
        *v = i as u8;
    }
    p
}

fn pixels() -> Frame {
    Frame::new(Pixels::Rgb(RgbImage::from_fn(20, 12, |x, y| {
        image::Rgb([(x * 12) as u8, (y * 20) as u8, 99])
    })))
}

/// A TIFF written by the `tiff` crate itself, with Make in IFD0, an Exif IFD and ICC.
fn tiff_input() -> Vec<u8> {
    use tiff::encoder::{colortype, TiffEncoder};
    use tiff::tags::Tag;
    let f = pixels();
    let Pixels::Rgb(rgb) = &f.pixels else {
        unreachable!()
    };
    let mut out = Cursor::new(Vec::new());
    let mut enc = TiffEncoder::new(&mut out).unwrap();
    let exif_at = {
        let mut d = enc.extra_directory().unwrap();
        d.write_tag(Tag::Unknown(0x8827), 400u16).unwrap();
        d.finish_with_offsets().unwrap().offset
    };
    let mut img = enc.new_image::<colortype::RGB8>(20, 12).unwrap();
    img.encoder().write_tag(Tag::Make, "PrismCam").unwrap();
    img.encoder()
        .write_tag(Tag::IccProfile, &icc_profile()[..])
        .unwrap();
    img.encoder()
        .write_tag(Tag::ExifDirectory, exif_at)
        .unwrap();
    img.write_data(rgb.as_raw()).unwrap();
    out.into_inner()
}

fn input(format: Format) -> Vec<u8> {
    let meta = Metadata {
        exif: Some(exif_blob()),
        icc: Some(icc_profile()),
    };
    match format {
        Format::Tiff => tiff_input(),
        Format::Webp => {
            use image::ImageEncoder;
            let f = pixels();
            let Pixels::Rgb(rgb) = &f.pixels else {
                unreachable!()
            };
            let mut out = Vec::new();
            let mut enc = image::codecs::webp::WebPEncoder::new_lossless(&mut out);
            enc.set_icc_profile(icc_profile()).unwrap();
            enc.set_exif_metadata(exif_blob()).unwrap();
            enc.write_image(rgb.as_raw(), 20, 12, image::ExtendedColorType::Rgb8)
                .unwrap();
            out
        }
        f => codec::encode(&pixels(), f, &meta, &EncodeOptions::default()).unwrap(),
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// What is missing from `out` (empty when it carries both).
fn missing(out: &Path) -> Vec<&'static str> {
    let bytes = std::fs::read(out).unwrap();
    let meta = codec::decode(&bytes, &Limits::default()).unwrap().meta;
    let mut m = Vec::new();
    let exif = meta.exif.unwrap_or_default();
    if !contains(&exif, MAKE) {
        m.push("EXIF Make");
    }
    if !contains(&exif, &ISO_ENTRY) {
        m.push("EXIF ISO (Exif sub-IFD)");
    }
    if meta.icc.as_deref() != Some(&icc_profile()[..]) {
        m.push("ICC profile");
    }
    if codec::sniff(&bytes).unwrap() == Format::Tiff {
        // Where TIFF readers look for it: IFD0's Make tag.
        let mut d = tiff::decoder::Decoder::new(Cursor::new(&bytes)).unwrap();
        if d.get_tag_ascii_string(tiff::tags::Tag::Make)
            .ok()
            .as_deref()
            != Some("PrismCam")
        {
            m.push("TIFF Make tag");
        }
    }
    m
}

#[test]
fn exif_and_icc_survive_every_format_and_conversion() {
    let dir = tempfile::tempdir().unwrap();
    let formats = [Format::Jpeg, Format::Png, Format::Webp, Format::Tiff];
    let mut failures = Vec::new();
    for from in formats {
        let src = dir.path().join(format!("in/photo.{}", from.extension()));
        std::fs::create_dir_all(src.parent().unwrap()).unwrap();
        std::fs::write(&src, input(from)).unwrap();
        for to in ["same", "jpeg", "png", "webp", "tiff"] {
            let out = dir.path().join(format!("out-{}-{to}", from.extension()));
            let res = common::cli::prism()
                .args(["process", "--op", "color-manipulation", "--format", to])
                .arg("--out")
                .arg(&out)
                .arg(&src)
                .output()
                .unwrap();
            assert_eq!(
                res.status.code(),
                Some(0),
                "{from} -> {to}: {}",
                String::from_utf8_lossy(&res.stderr)
            );
            let written = std::fs::read_dir(&out).unwrap().next().unwrap().unwrap();
            let m = missing(&written.path());
            if !m.is_empty() {
                failures.push(format!("{from} -> {to}: lost {}", m.join(", ")));
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}
