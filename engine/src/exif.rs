//! EXIF in and out of TIFF files.
//!
//! JPEG, PNG and WebP carry EXIF as one blob that is itself a small TIFF structure
//! (header, IFD0, Exif and GPS sub-IFDs), which the codecs move verbatim. A TIFF file
//! instead keeps those fields in its own IFD0 (Make, Model, ...) and points to Exif and
//! GPS sub-IFDs. Carrying EXIF from or into TIFF therefore means copying IFD entries
//! between the two layouts. The `tiff` crate reads tags one at a time and cannot lift a
//! sub-IFD out of a file, so this module parses the few IFDs involved itself; every
//! offset, count and size comes from the input and is bounded before use.

use std::io::Cursor;

/// Descriptive IFD0 fields worth carrying; layout fields (size, strips, colour) are not.
const IFD0_TAGS: [u16; 7] = [
    270,   // ImageDescription
    271,   // Make
    272,   // Model
    305,   // Software
    306,   // DateTime
    315,   // Artist
    33432, // Copyright
];
/// Pointer to the Exif sub-IFD.
pub(crate) const EXIF_IFD: u16 = 34665;
/// Pointer to the GPS sub-IFD.
pub(crate) const GPS_IFD: u16 = 34853;
/// The embedded ICC profile.
const ICC_PROFILE: u16 = 34675;
/// Pointer to the interoperability IFD (inside Exif): dropped, it only describes itself.
const INTEROP_IFD: u16 = 40965;

const MAX_ENTRIES: usize = 512;
const MAX_VALUE: usize = 1 << 20;
const MAX_TOTAL: usize = 8 << 20;

/// One IFD entry with its value in little-endian byte order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Entry {
    pub tag: u16,
    /// The TIFF field type (1 BYTE ... 12 DOUBLE).
    pub ty: u16,
    pub value: Vec<u8>,
}

/// The metadata IFDs of a TIFF file or an EXIF blob.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Ifds {
    pub ifd0: Vec<Entry>,
    pub exif: Vec<Entry>,
    pub gps: Vec<Entry>,
}

impl Ifds {
    pub fn is_empty(&self) -> bool {
        self.ifd0.is_empty() && self.exif.is_empty() && self.gps.is_empty()
    }
}

/// (size of one item, size of one byte-swapped unit) for a field type.
fn type_sizes(ty: u16) -> Option<(usize, usize)> {
    Some(match ty {
        1 | 2 | 6 | 7 => (1, 1),
        3 | 8 => (2, 2),
        4 | 9 | 11 | 13 => (4, 4),
        5 | 10 => (8, 4),
        12 => (8, 8),
        _ => return None,
    })
}

/// A sub-IFD pointer: its tag and the offset it points to.
type Pointer = (u16, usize);

struct Reader<'a> {
    b: &'a [u8],
    le: bool,
    total: usize,
}

impl<'a> Reader<'a> {
    /// A reader over a TIFF header, and where its IFD0 starts.
    fn open(b: &'a [u8]) -> Option<(Self, usize)> {
        let le = match b.get(..4)? {
            [b'I', b'I', 42, 0] => true,
            [b'M', b'M', 0, 42] => false,
            _ => return None,
        };
        let r = Reader { b, le, total: 0 };
        let at = r.u32(4)? as usize;
        Some((r, at))
    }

    fn u16(&self, at: usize) -> Option<u16> {
        let s: [u8; 2] = self.b.get(at..at.checked_add(2)?)?.try_into().ok()?;
        Some(if self.le {
            u16::from_le_bytes(s)
        } else {
            u16::from_be_bytes(s)
        })
    }

    fn u32(&self, at: usize) -> Option<u32> {
        let s: [u8; 4] = self.b.get(at..at.checked_add(4)?)?.try_into().ok()?;
        Some(if self.le {
            u32::from_le_bytes(s)
        } else {
            u32::from_be_bytes(s)
        })
    }

    /// The entries of the IFD at `at` and the value of each pointer tag found in it.
    fn ifd(&mut self, at: usize) -> Option<(Vec<Entry>, Vec<Pointer>)> {
        let n = usize::from(self.u16(at)?);
        if n > MAX_ENTRIES {
            return None;
        }
        let (mut entries, mut pointers) = (Vec::new(), Vec::new());
        for i in 0..n {
            let e = at + 2 + 12 * i;
            let (tag, ty, count) = (self.u16(e)?, self.u16(e + 2)?, self.u32(e + 4)?);
            let Some((size, unit)) = type_sizes(ty) else {
                continue;
            };
            let len = (count as usize).checked_mul(size)?;
            if len > MAX_VALUE {
                continue;
            }
            let start = if len <= 4 {
                e + 8
            } else {
                self.u32(e + 8)? as usize
            };
            let Some(raw) = self.b.get(start..start.checked_add(len)?) else {
                continue;
            };
            if matches!(tag, EXIF_IFD | GPS_IFD | INTEROP_IFD) || ty == 13 {
                if count == 1 && size == 4 {
                    pointers.push((tag, self.u32(start)? as usize));
                }
                continue;
            }
            self.total += len;
            if self.total > MAX_TOTAL {
                return None;
            }
            let mut value = raw.to_vec();
            if !self.le && unit > 1 {
                value.chunks_exact_mut(unit).for_each(<[u8]>::reverse);
            }
            entries.push(Entry { tag, ty, value });
        }
        Some((entries, pointers))
    }
}

/// Reads the metadata IFDs of a TIFF file or an EXIF blob (both start with a TIFF
/// header). From IFD0 only the descriptive fields are kept. `None` when it is not TIFF
/// or is malformed.
pub(crate) fn parse(b: &[u8]) -> Option<Ifds> {
    let (mut r, ifd0_at) = Reader::open(b)?;
    let (ifd0, pointers) = r.ifd(ifd0_at)?;
    let mut out = Ifds {
        ifd0: ifd0
            .into_iter()
            .filter(|e| IFD0_TAGS.contains(&e.tag))
            .collect(),
        ..Ifds::default()
    };
    for (tag, at) in pointers {
        // A pointer back to IFD0 (or a loop) would only repeat entries; read each once.
        if at == ifd0_at {
            continue;
        }
        match tag {
            EXIF_IFD if out.exif.is_empty() => out.exif = r.ifd(at)?.0,
            GPS_IFD if out.gps.is_empty() => out.gps = r.ifd(at)?.0,
            _ => {}
        }
    }
    Some(out)
}

/// Writes `ifds` as an EXIF blob: a little-endian TIFF header, IFD0 with pointers to the
/// Exif and GPS IFDs, then those.
pub(crate) fn to_blob(ifds: &Ifds) -> Vec<u8> {
    let with_ptrs = |entries: &[Entry], ptrs: &[(u16, u32)]| {
        let mut v: Vec<Entry> = entries.to_vec();
        v.extend(ptrs.iter().map(|&(tag, off)| Entry {
            tag,
            ty: 4,
            value: off.to_le_bytes().to_vec(),
        }));
        v.sort_by_key(|e| e.tag);
        v
    };
    let size = |entries: &[Entry]| -> usize {
        2 + 12 * entries.len()
            + 4
            + entries
                .iter()
                .map(|e| {
                    if e.value.len() > 4 {
                        (e.value.len() + 1) & !1
                    } else {
                        0
                    }
                })
                .sum::<usize>()
    };
    let n_ptrs = usize::from(!ifds.exif.is_empty()) + usize::from(!ifds.gps.is_empty());
    // IFD0's size counts its pointer entries, whose values fit inline.
    let ifd0_size = size(&ifds.ifd0) + 12 * n_ptrs;
    let exif_at = 8 + ifd0_size;
    let gps_at = exif_at
        + if ifds.exif.is_empty() {
            0
        } else {
            size(&ifds.exif)
        };
    let mut ptrs = Vec::new();
    if !ifds.exif.is_empty() {
        ptrs.push((EXIF_IFD, exif_at as u32));
    }
    if !ifds.gps.is_empty() {
        ptrs.push((GPS_IFD, gps_at as u32));
    }
    let mut out = b"II*\0\x08\0\0\0".to_vec();
    write_ifd(&mut out, &with_ptrs(&ifds.ifd0, &ptrs));
    if !ifds.exif.is_empty() {
        write_ifd(&mut out, &with_ptrs(&ifds.exif, &[]));
    }
    if !ifds.gps.is_empty() {
        write_ifd(&mut out, &with_ptrs(&ifds.gps, &[]));
    }
    out
}

/// Appends one IFD (entries, no next IFD) and its out-of-line values at `out.len()`.
fn write_ifd(out: &mut Vec<u8>, entries: &[Entry]) {
    let start = out.len();
    let mut data_at = start + 2 + 12 * entries.len() + 4;
    let mut data = Vec::new();
    out.extend_from_slice(&(entries.len() as u16).to_le_bytes());
    for e in entries {
        let (size, _) = type_sizes(e.ty).unwrap_or((1, 1));
        out.extend_from_slice(&e.tag.to_le_bytes());
        out.extend_from_slice(&e.ty.to_le_bytes());
        out.extend_from_slice(&((e.value.len() / size) as u32).to_le_bytes());
        if e.value.len() <= 4 {
            let mut inline = [0u8; 4];
            inline[..e.value.len()].copy_from_slice(&e.value);
            out.extend_from_slice(&inline);
        } else {
            out.extend_from_slice(&(data_at as u32).to_le_bytes());
            data.extend_from_slice(&e.value);
            if e.value.len() % 2 == 1 {
                data.push(0);
            }
            data_at += (e.value.len() + 1) & !1;
        }
    }
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&data);
}

/// The ICC profile in a TIFF file's IFD0 (tag 34675), if it has one. Read here because
/// `image`'s TIFF decoder, once built through `ImageReader`, does not report it.
pub(crate) fn icc_from_tiff_file(b: &[u8]) -> Option<Vec<u8>> {
    let (mut r, ifd0_at) = Reader::open(b)?;
    let (entries, _) = r.ifd(ifd0_at)?;
    entries
        .into_iter()
        .find(|e| e.tag == ICC_PROFILE && matches!(e.ty, 1 | 7))
        .map(|e| e.value)
}

/// The EXIF blob for a TIFF file's own metadata, if it has any.
pub(crate) fn blob_from_tiff_file(b: &[u8]) -> Option<Vec<u8>> {
    parse(b).filter(|i| !i.is_empty()).map(|i| to_blob(&i))
}

/// Encodes 8-bit pixels as a TIFF whose IFD0 carries the ICC profile and the EXIF
/// fields of `exif` (descriptive IFD0 fields, Exif and GPS sub-IFDs).
pub(crate) fn encode_tiff(
    data: &[u8],
    width: u32,
    height: u32,
    channels: u8,
    icc: Option<&[u8]>,
    exif: Option<&[u8]>,
) -> tiff::TiffResult<Vec<u8>> {
    use tiff::encoder::{colortype, TiffEncoder};
    use tiff::tags::Tag;

    let ifds = exif.and_then(parse).unwrap_or_default();
    let mut out = Cursor::new(Vec::new());
    let mut enc = TiffEncoder::new(&mut out)?;
    // Sub-IFDs first, so IFD0 can point to them.
    let mut sub = |entries: &[Entry]| -> tiff::TiffResult<Option<u32>> {
        if entries.is_empty() {
            return Ok(None);
        }
        let mut d = enc.extra_directory()?;
        write_entries(&mut d, entries)?;
        Ok(Some(d.finish_with_offsets()?.offset))
    };
    let exif_at = sub(&ifds.exif)?;
    let gps_at = sub(&ifds.gps)?;
    macro_rules! image {
        ($ct:ty) => {{
            let mut img = enc.new_image::<$ct>(width, height)?;
            let d = img.encoder();
            if let Some(icc) = icc {
                d.write_tag(Tag::IccProfile, icc)?;
            }
            write_entries(d, &ifds.ifd0)?;
            if let Some(at) = exif_at {
                d.write_tag(Tag::ExifDirectory, at)?;
            }
            if let Some(at) = gps_at {
                d.write_tag(Tag::GpsDirectory, at)?;
            }
            img.write_data(data)?;
        }};
    }
    match channels {
        1 => image!(colortype::Gray8),
        3 => image!(colortype::RGB8),
        _ => image!(colortype::RGBA8),
    }
    Ok(out.into_inner())
}

fn write_entries<W: std::io::Write + std::io::Seek, K: tiff::encoder::TiffKind>(
    d: &mut tiff::encoder::DirectoryEncoder<'_, W, K>,
    entries: &[Entry],
) -> tiff::TiffResult<()> {
    use tiff::tags::{Tag, Type};
    for e in entries {
        let Some(ty) = Type::from_u16(e.ty) else {
            continue;
        };
        // The encoder writes native byte order; values here are little-endian.
        let mut value = e.value.clone();
        if cfg!(target_endian = "big") {
            let (_, unit) = type_sizes(e.ty).unwrap_or((1, 1));
            value.chunks_exact_mut(unit).for_each(<[u8]>::reverse);
        }
        let entry = d.write_entry_bytes(ty, &value)?;
        d.extend_from(&tiff::Directory::from_iter([(
            Tag::from_u16_exhaustive(e.tag),
            entry,
        )]));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ascii(tag: u16, s: &str) -> Entry {
        let mut value = s.as_bytes().to_vec();
        value.push(0);
        Entry { tag, ty: 2, value }
    }

    fn sample() -> Ifds {
        Ifds {
            ifd0: vec![ascii(271, "PrismCam"), ascii(272, "Model 7")],
            exif: vec![
                // ExposureTime 1/125 (RATIONAL), ISO 400 (SHORT).
                Entry {
                    tag: 33434,
                    ty: 5,
                    value: [1u32.to_le_bytes(), 125u32.to_le_bytes()].concat(),
                },
                Entry {
                    tag: 34855,
                    ty: 3,
                    value: 400u16.to_le_bytes().to_vec(),
                },
            ],
            gps: vec![Entry {
                tag: 1,
                ty: 2,
                value: b"N\0".to_vec(),
            }],
        }
    }

    #[test]
    fn a_blob_round_trips() {
        let ifds = sample();
        assert_eq!(parse(&to_blob(&ifds)), Some(ifds));
    }

    #[test]
    fn big_endian_blobs_are_read() {
        // MM header, IFD0 at 8 with one SHORT entry (ISO-like tag 271 is ASCII; use Make).
        let mut b = b"MM\0*\0\0\0\x08".to_vec();
        b.extend_from_slice(&1u16.to_be_bytes());
        b.extend_from_slice(&271u16.to_be_bytes());
        b.extend_from_slice(&2u16.to_be_bytes());
        b.extend_from_slice(&3u32.to_be_bytes());
        b.extend_from_slice(b"AB\0\0");
        b.extend_from_slice(&0u32.to_be_bytes());
        assert_eq!(parse(&b).unwrap().ifd0, vec![ascii(271, "AB")]);
    }

    #[test]
    fn garbage_and_hostile_offsets_never_panic() {
        let good = to_blob(&sample());
        for cut in 0..good.len() {
            let _ = parse(&good[..cut]);
        }
        let mut b = good.clone();
        for i in 0..b.len() {
            b[i] ^= 0xFF;
            let _ = parse(&b);
            b[i] ^= 0xFF;
        }
        assert!(parse(b"not a tiff").is_none());
    }

    #[test]
    fn tiff_files_carry_the_fields_both_ways() {
        let blob = to_blob(&sample());
        let tif = encode_tiff(
            &[10, 20, 30, 40, 50, 60],
            2,
            1,
            3,
            Some(b"icc profile bytes"),
            Some(&blob),
        )
        .unwrap();
        // An independent reader sees the fields where TIFF keeps them.
        let mut dec = tiff::decoder::Decoder::new(Cursor::new(&tif)).unwrap();
        assert_eq!(
            dec.get_tag_ascii_string(tiff::tags::Tag::Make).unwrap(),
            "PrismCam"
        );
        assert_eq!(
            dec.get_tag_u8_vec(tiff::tags::Tag::IccProfile).unwrap(),
            b"icc profile bytes"
        );
        assert_eq!(
            icc_from_tiff_file(&tif).as_deref(),
            Some(&b"icc profile bytes"[..])
        );
        // And they come back out as the same EXIF.
        assert_eq!(parse(&blob_from_tiff_file(&tif).unwrap()), Some(sample()));
    }
}
