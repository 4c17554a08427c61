//! The pixel kernels of OpenCV's `cvtColor(BGR2GRAY)` for 8-bit images, and the
//! histogram and lookup-table loops of `equalizeHist`.
//!
//! Grey is `(R * 9798 + G * 19235 + B * 3735 + 2^14) >> 15` (OpenCV's `RY15`, `GY15`,
//! `BY15` at `gray_shift` 15, `CV_DESCALE`: half up), all in integers, so every kernel
//! gives the same bytes and matches OpenCV's SIMD and scalar code alike. The AVX2 kernel
//! does what OpenCV's `RGB2Gray<uchar>` does with `v_dotprod`: 16-bit products summed in
//! pairs into 32 bits (`vpmaddwd`), but takes its pairs straight from the interleaved bytes
//! with one byte shuffle each instead of de-interleaving the planes first.
//!
//! Outputs are written into uninitialised memory ([`MaybeUninit`]): a fresh 12 MP buffer
//! zeroed only to be overwritten costs about as much as the conversion itself.

use std::mem::MaybeUninit;

use rayon::prelude::*;

use super::bands::Bands;

// OpenCV's 15-bit grey weights (color.hpp): RY15, GY15, BY15 at 1 << 15.
const R2Y: u32 = 9798;
const G2Y: u32 = 19235;
const B2Y: u32 = 3735;
const SHIFT: u32 = 15;
const HALF: u32 = 1 << (SHIFT - 1);

/// Pixels per parallel task: enough to amortise scheduling, small enough that a band's
/// grey output is still in L2 when the equalizer's histogram reads it back.
const PIXELS_PER_TASK: usize = 1 << 17;

/// One grey value, the way OpenCV's scalar tail computes it.
#[inline(always)]
fn gray_of(r: u8, g: u8, b: u8) -> u8 {
    ((r as u32 * R2Y + g as u32 * G2Y + b as u32 * B2Y + HALF) >> SHIFT) as u8
}

/// Bands of about [`PIXELS_PER_TASK`] pixels for an image `w` wide and `h` high.
pub(crate) fn bands(w: usize, h: usize) -> Bands {
    Bands::fixed(h, PIXELS_PER_TASK.div_ceil(w.max(1)))
}

/// Writes the grey value of every RGB pixel of `src` into `dst` (all of it), with the
/// kernel set of the process ([`super::dispatch::kernels`]).
pub(crate) fn gray_pixels(src: &[u8], dst: &mut [MaybeUninit<u8>]) {
    gray_pixels_to(src, dst, false)
}

/// [`gray_pixels`], with non-temporal stores if `stream` (and the CPU has AVX2): for an
/// output nobody reads soon and too large to stay in cache, they save the read of every
/// output line before it is written (a fifth of the memory traffic of the conversion).
fn gray_pixels_to(src: &[u8], dst: &mut [MaybeUninit<u8>], stream: bool) {
    assert_eq!(src.len(), dst.len() * 3, "three bytes in per grey byte out");
    #[allow(unused_mut)]
    let mut done = 0;
    #[cfg(target_arch = "x86_64")]
    if super::dispatch::avx2() {
        if stream {
            // Streaming stores need 32-byte aligned addresses: the head goes the portable way.
            let head = dst.as_ptr().align_offset(32).min(dst.len());
            gray_portable(&src[..head * 3], &mut dst[..head]);
            // SAFETY: as below; `dst[head..]` starts 32-byte aligned.
            done = head + unsafe { avx2::gray_pixels::<true>(&src[head * 3..], &mut dst[head..]) };
        } else {
            // SAFETY: the AVX2 level means the CPU has AVX2; the lengths match (asserted).
            done = unsafe { avx2::gray_pixels::<false>(src, dst) };
        }
    }
    gray_portable(&src[done * 3..], &mut dst[done..]);
}

/// The portable kernel: 4 pixels from three little-endian `u32` loads at a time (faster
/// than byte loads at stride 3, which LLVM cannot vectorise well without SSSE3 shuffles),
/// then the tail one pixel at a time.
fn gray_portable(src: &[u8], dst: &mut [MaybeUninit<u8>]) {
    let word = |s: &[u8], i: usize| u32::from_le_bytes(s[i..i + 4].try_into().expect("4 bytes"));
    let mut d = dst.chunks_exact_mut(4);
    let mut s = src.chunks_exact(12);
    for (d, s) in (&mut d).zip(&mut s) {
        let (a, b, c) = (word(s, 0), word(s, 4), word(s, 8));
        let byte = |v: u32, k: u32| (v >> (8 * k)) as u8;
        d[0].write(gray_of(byte(a, 0), byte(a, 1), byte(a, 2)));
        d[1].write(gray_of(byte(a, 3), byte(b, 0), byte(b, 1)));
        d[2].write(gray_of(byte(b, 2), byte(b, 3), byte(c, 0)));
        d[3].write(gray_of(byte(c, 1), byte(c, 2), byte(c, 3)));
    }
    for (o, px) in d
        .into_remainder()
        .iter_mut()
        .zip(s.remainder().chunks_exact(3))
    {
        o.write(gray_of(px[0], px[1], px[2]));
    }
}

/// A fresh buffer of `len` bytes, `fill` writing every byte of each band (rows of
/// `row_len` bytes) in parallel; returns it with what `fill` returned for each band, in
/// band order.
///
/// `fill` must write every element of the slice it is given: the buffer is handed out
/// as initialised afterwards.
pub(crate) fn par_fill<R: Send>(
    len: usize,
    bands: Bands,
    row_len: usize,
    fill: impl Fn(std::ops::Range<usize>, &mut [MaybeUninit<u8>]) -> R + Sync + Send,
) -> (Vec<u8>, Vec<R>) {
    let mut out = Vec::with_capacity(len);
    let spare = &mut out.spare_capacity_mut()[..len];
    let results = bands
        .split_mut(spare, row_len)
        .map(|(rows, band)| fill(rows, band))
        .collect();
    // SAFETY: every band of the first `len` elements was handed to `fill`, whose contract
    // is to write all of it; a panic inside `fill` propagates before this line.
    unsafe { out.set_len(len) };
    (out, results)
}

/// The grey image of RGB `src` (`w` x `h`), in parallel bands, and what `then` returned
/// for each band's grey rows, in band order.
pub(crate) fn rgb_to_gray_then<R: Send>(
    src: &[u8],
    w: usize,
    h: usize,
    then: impl Fn(&[u8]) -> R + Sync + Send,
) -> (Vec<u8>, Vec<R>) {
    assert_eq!(src.len(), w * h * 3, "RGB buffer of {w} x {h}");
    par_fill(w * h, bands(w, h), w, |rows, dst| {
        gray_pixels(&src[rows.start * w * 3..rows.end * w * 3], dst);
        // SAFETY: `gray_pixels` wrote every byte of `dst`.
        then(unsafe { &*(dst as *const [MaybeUninit<u8>] as *const [u8]) })
    })
}

/// Outputs from this size on are written with streaming stores: with its input they no
/// longer fit in the last-level cache, so whoever reads them next reads them from memory
/// either way.
const STREAM_FROM_BYTES: usize = 8 << 20;

/// The grey image of RGB `src` (`w` x `h`), in parallel bands.
pub(crate) fn rgb_to_gray(src: &[u8], w: usize, h: usize) -> Vec<u8> {
    assert_eq!(src.len(), w * h * 3, "RGB buffer of {w} x {h}");
    let stream = w * h >= STREAM_FROM_BYTES;
    par_fill(w * h, bands(w, h), w, |rows, dst| {
        gray_pixels_to(&src[rows.start * w * 3..rows.end * w * 3], dst, stream)
    })
    .0
}

/// The histogram of `data`.
pub(crate) fn histogram(data: &[u8]) -> [u32; 256] {
    // Four tables, so runs of one value (flat areas) do not wait on their own increments.
    let mut h = [[0u32; 256]; 4];
    let mut words = data.chunks_exact(8);
    for c in &mut words {
        let v = u64::from_le_bytes(c.try_into().expect("chunks of 8"));
        for k in 0..4 {
            h[k][(v >> (8 * k)) as u8 as usize] += 1;
            h[k][(v >> (8 * k + 32)) as u8 as usize] += 1;
        }
    }
    for &b in words.remainder() {
        h[0][b as usize] += 1;
    }
    let mut out = h[0];
    for t in &h[1..] {
        out.iter_mut().zip(t).for_each(|(a, b)| *a += b);
    }
    out
}

/// The histogram of `data`, in parallel.
pub(crate) fn par_histogram(data: &[u8]) -> [u32; 256] {
    data.par_chunks(PIXELS_PER_TASK)
        .map(histogram)
        .reduce(|| [0; 256], add_histograms)
}

/// The sum of two histograms.
pub(crate) fn add_histograms(mut a: [u32; 256], b: [u32; 256]) -> [u32; 256] {
    a.iter_mut().zip(b).for_each(|(x, y)| *x += y);
    a
}

/// `dst[i] = lut[src[i]]` for every `i` (all of `dst`).
pub(crate) fn apply_lut(src: &[u8], lut: &[u8; 256], dst: &mut [MaybeUninit<u8>]) {
    assert_eq!(src.len(), dst.len());
    #[allow(unused_mut)]
    let mut done = 0;
    #[cfg(target_arch = "x86_64")]
    if super::dispatch::avx2() {
        // SAFETY: AVX2 at this level; `src` and `dst` hold `src.len()` bytes each.
        done = unsafe { avx2::lut(src.as_ptr(), dst.as_mut_ptr() as *mut u8, src.len(), lut) };
    }
    lut_portable(&src[done..], lut, &mut dst[done..]);
}

/// `v = lut[v]` for every byte of `data`.
pub(crate) fn apply_lut_in_place(data: &mut [u8], lut: &[u8; 256]) {
    #[allow(unused_mut)]
    let mut done = 0;
    #[cfg(target_arch = "x86_64")]
    if super::dispatch::avx2() {
        let p = data.as_mut_ptr();
        // SAFETY: AVX2 at this level; each block is loaded before it is stored over.
        done = unsafe { avx2::lut(p, p, data.len(), lut) };
    }
    let mut words = data[done..].chunks_exact_mut(8);
    for w in &mut words {
        let v = lut8(
            u64::from_le_bytes((&*w).try_into().expect("chunks of 8")),
            lut,
        );
        w.copy_from_slice(&v.to_le_bytes());
    }
    for v in words.into_remainder() {
        *v = lut[*v as usize];
    }
}

/// The eight bytes of `v` looked up in `lut`.
#[inline(always)]
fn lut8(v: u64, lut: &[u8; 256]) -> u64 {
    (0..8).fold(0, |o, k| {
        o | (lut[(v >> (8 * k)) as u8 as usize] as u64) << (8 * k)
    })
}

/// The portable look-up: eight bytes per `u64` load and store.
fn lut_portable(src: &[u8], lut: &[u8; 256], dst: &mut [MaybeUninit<u8>]) {
    let mut d = dst.chunks_exact_mut(8);
    let mut s = src.chunks_exact(8);
    for (d, s) in (&mut d).zip(&mut s) {
        let v = lut8(u64::from_le_bytes(s.try_into().expect("chunks of 8")), lut);
        for (o, b) in d.iter_mut().zip(v.to_le_bytes()) {
            o.write(b);
        }
    }
    for (o, &v) in d.into_remainder().iter_mut().zip(s.remainder()) {
        o.write(lut[v as usize]);
    }
}

/// The AVX2 kernel.
#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;
    use std::mem::MaybeUninit;

    use super::{B2Y, G2Y, HALF, R2Y, SHIFT};

    /// The shuffles and weights of one block.
    struct Consts {
        rg: __m256i,
        bz: __m256i,
        w_rg: __m256i,
        w_b: __m256i,
        half: __m256i,
    }

    /// Eight grey values as `i32`: pixels 0..4 of the 12 bytes at `p` in the low lane and
    /// the 4 at `p + 48` in the high one (each 16-byte load reads 4 bytes past its pixels).
    #[inline(always)]
    unsafe fn group(c: &Consts, p: *const u8) -> __m256i {
        let v = _mm256_loadu2_m128i(p.add(48) as *const __m128i, p as *const __m128i);
        let y = _mm256_add_epi32(
            _mm256_madd_epi16(_mm256_shuffle_epi8(v, c.rg), c.w_rg),
            _mm256_madd_epi16(_mm256_shuffle_epi8(v, c.bz), c.w_b),
        );
        _mm256_srli_epi32::<{ SHIFT as i32 }>(_mm256_add_epi32(y, c.half))
    }

    /// Converts whole blocks of 32 pixels from the start; returns how many pixels it did.
    ///
    /// # Safety
    /// The CPU must have AVX2, and `src` must hold three bytes per byte of `dst`.
    /// With `STREAM`, `dst` must be 32-byte aligned; its stores bypass the cache and are
    /// fenced before the function returns.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn gray_pixels<const STREAM: bool>(
        src: &[u8],
        dst: &mut [MaybeUninit<u8>],
    ) -> usize {
        debug_assert_eq!(src.len(), dst.len() * 3);
        // Per 128-bit lane, 4 pixels of the 16 bytes loaded (the first 12 used): words
        // (R, G) for one `vpmaddwd` with (R2Y, G2Y), and (B, 0) for one with (B2Y, 0).
        #[rustfmt::skip]
        let c = Consts {
            rg: _mm256_setr_epi8(
                0, -1, 1, -1, 3, -1, 4, -1, 6, -1, 7, -1, 9, -1, 10, -1,
                0, -1, 1, -1, 3, -1, 4, -1, 6, -1, 7, -1, 9, -1, 10, -1,
            ),
            bz: _mm256_setr_epi8(
                2, -1, -1, -1, 5, -1, -1, -1, 8, -1, -1, -1, 11, -1, -1, -1,
                2, -1, -1, -1, 5, -1, -1, -1, 8, -1, -1, -1, 11, -1, -1, -1,
            ),
            w_rg: _mm256_set1_epi32(((G2Y << 16) | R2Y) as i32),
            w_b: _mm256_set1_epi32(B2Y as i32),
            half: _mm256_set1_epi32(HALF as i32),
        };
        let (s, d) = (src.as_ptr(), dst.as_mut_ptr() as *mut u8);
        let n = dst.len();
        let mut x = 0;
        // Group k of a block holds pixels 4k.. and 16 + 4k.., so the two packs leave the
        // 32 bytes in pixel order. The last load ends 4 bytes past the block.
        while x + 32 <= n && 3 * x + 100 <= src.len() {
            let p = s.add(3 * x);
            let lo = _mm256_packus_epi32(group(&c, p), group(&c, p.add(12)));
            let hi = _mm256_packus_epi32(group(&c, p.add(24)), group(&c, p.add(36)));
            let v = _mm256_packus_epi16(lo, hi);
            if STREAM {
                _mm256_stream_si256(d.add(x) as *mut __m256i, v);
            } else {
                _mm256_storeu_si256(d.add(x) as *mut __m256i, v);
            }
            x += 32;
        }
        if STREAM {
            // Streaming stores are weakly ordered: make them visible before the band is
            // handed back to the thread that joins it.
            _mm_sfence();
        }
        x
    }

    /// `dst[i] = lut[src[i]]` over whole 32-byte blocks from the start (`src` and `dst`
    /// may be the same bytes); returns how many it did.
    ///
    /// The table is 16 rows of 16 bytes, one `vpshufb` each: row `k` is looked up with
    /// `x - 16k` saturated up by `0x70`, which keeps the low nibble where `x` is in the row
    /// and sets bit 7 (so the shuffle gives 0) everywhere else; the rows are or-ed.
    ///
    /// # Safety
    /// The CPU must have AVX2; `src` must be readable and `dst` writable for `n` bytes,
    /// and if they overlap they must be the same pointer.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn lut(src: *const u8, dst: *mut u8, n: usize, lut: &[u8; 256]) -> usize {
        let rows: [__m256i; 16] = std::array::from_fn(|k| {
            _mm256_broadcastsi128_si256(_mm_loadu_si128(lut.as_ptr().add(16 * k) as *const __m128i))
        });
        let (up, step) = (_mm256_set1_epi8(0x70), _mm256_set1_epi8(16));
        let mut i = 0;
        while i + 32 <= n {
            let mut x = _mm256_loadu_si256(src.add(i) as *const __m256i);
            let mut v = _mm256_shuffle_epi8(rows[0], _mm256_adds_epu8(x, up));
            for row in &rows[1..] {
                x = _mm256_sub_epi8(x, step);
                v = _mm256_or_si256(v, _mm256_shuffle_epi8(*row, _mm256_adds_epu8(x, up)));
            }
            _mm256_storeu_si256(dst.add(i) as *mut __m256i, v);
            i += 32;
        }
        i
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pseudo-random bytes (xorshift), the same on every run.
    fn noise(n: usize, mut seed: u64) -> Vec<u8> {
        (0..n)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                (seed >> 24) as u8
            })
            .collect()
    }

    fn gray_reference(src: &[u8]) -> Vec<u8> {
        src.chunks_exact(3)
            .map(|p| {
                ((p[0] as u32 * R2Y + p[1] as u32 * G2Y + p[2] as u32 * B2Y + HALF) >> 15) as u8
            })
            .collect()
    }

    fn run(src: &[u8], f: impl Fn(&[u8], &mut [MaybeUninit<u8>])) -> Vec<u8> {
        let mut out = vec![MaybeUninit::new(0xAB); src.len() / 3];
        f(src, &mut out);
        // SAFETY: every element was initialised above (the kernels overwrite them).
        out.into_iter()
            .map(|v| unsafe { v.assume_init() })
            .collect()
    }

    #[test]
    fn every_kernel_gives_the_scalar_answer_at_every_length() {
        let src = noise(3 * 300, 1);
        for n in 0..300 {
            let want = gray_reference(&src[..3 * n]);
            assert_eq!(run(&src[..3 * n], gray_pixels), want, "dispatched, {n} px");
            assert_eq!(run(&src[..3 * n], gray_portable), want, "portable, {n} px");
            #[cfg(target_arch = "x86_64")]
            if crate::ops::dispatch::Kernels::best_supported()
                == crate::ops::dispatch::Kernels::Avx2
            {
                let got = run(&src[..3 * n], |s, d| {
                    // SAFETY: AVX2 checked above; lengths match.
                    let done = unsafe { avx2::gray_pixels::<false>(s, d) };
                    assert!(done + 34 > n && done % 32 == 0, "{done} of {n}");
                    gray_portable(&s[3 * done..], &mut d[done..]);
                });
                assert_eq!(got, want, "avx2, {n} px");
            }
        }
    }

    #[test]
    fn streaming_stores_give_the_same_bytes_at_every_length_and_alignment() {
        let src = noise(3 * 300, 3);
        for start in 0..32 {
            for n in (0..300 - start).step_by(7) {
                let s = &src[3 * start..3 * (start + n)];
                // Write into an output that starts at every offset from a 32-byte line.
                let mut out = vec![MaybeUninit::new(0xAB); n + 64];
                let off = (start + out.as_ptr().align_offset(32)) % 64;
                gray_pixels_to(s, &mut out[off..off + n], true);
                // SAFETY: initialised at creation; the kernel overwrote `off..off + n`.
                let got: Vec<u8> = out[off..off + n]
                    .iter()
                    .map(|v| unsafe { v.assume_init() })
                    .collect();
                assert_eq!(got, gray_reference(s), "{n} px at offset {off}");
            }
        }
    }

    #[test]
    fn extremes_round_as_opencv_does() {
        // Every (R, G, B) with components in {0, 1, 127, 128, 254, 255}, 216 pixels.
        let vals = [0u8, 1, 127, 128, 254, 255];
        let mut src = Vec::new();
        for r in vals {
            for g in vals {
                for b in vals {
                    src.extend([r, g, b]);
                }
            }
        }
        let got = run(&src, gray_pixels);
        assert_eq!(got, gray_reference(&src));
        assert_eq!(got[0], 0);
        assert_eq!(*got.last().unwrap(), 255);
    }

    #[test]
    fn parallel_grey_matches_per_pixel_grey() {
        // The last one is past STREAM_FROM_BYTES, with odd band starts.
        for (w, h) in [(0, 3), (3, 0), (1, 1), (33, 7), (1000, 300), (3001, 2801)] {
            let src = noise(w * h * 3, 7);
            assert_eq!(rgb_to_gray(&src, w, h), gray_reference(&src), "{w}x{h}");
        }
    }

    #[test]
    fn histograms_count_every_byte() {
        for n in [0, 1, 7, 8, 9, 1000, 300_001] {
            let data = noise(n, 3);
            let mut want = [0u32; 256];
            data.iter().for_each(|&v| want[v as usize] += 1);
            assert_eq!(histogram(&data), want, "{n}");
            assert_eq!(par_histogram(&data), want, "{n}");
        }
    }

    #[test]
    fn lookups_map_every_byte() {
        let data = noise(1001, 5);
        let mut lut = [0u8; 256];
        lut.iter_mut()
            .enumerate()
            .for_each(|(i, v)| *v = (i as u8).rotate_left(3));
        let want: Vec<u8> = data.iter().map(|&v| lut[v as usize]).collect();
        let mut out = vec![MaybeUninit::new(0); data.len()];
        apply_lut(&data, &lut, &mut out);
        // SAFETY: initialised above.
        let got: Vec<u8> = out
            .into_iter()
            .map(|v| unsafe { v.assume_init() })
            .collect();
        assert_eq!(got, want);
        let mut inplace = data.clone();
        apply_lut_in_place(&mut inplace, &lut);
        assert_eq!(inplace, want);
        // Every length around the 32-byte blocks, every byte value, the portable loop too.
        let all: Vec<u8> = (0..=255u8).chain((0..=255u8).rev()).collect();
        for n in 0..all.len() {
            let want: Vec<u8> = all[..n].iter().map(|&v| lut[v as usize]).collect();
            let mut out = vec![MaybeUninit::new(0); n];
            lut_portable(&all[..n], &lut, &mut out);
            // SAFETY: initialised above.
            let got: Vec<u8> = out
                .into_iter()
                .map(|v| unsafe { v.assume_init() })
                .collect();
            assert_eq!(got, want, "portable, {n}");
            let mut inplace = all[..n].to_vec();
            apply_lut_in_place(&mut inplace, &lut);
            assert_eq!(inplace, want, "in place, {n}");
        }
    }
}
