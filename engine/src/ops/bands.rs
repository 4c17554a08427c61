//! Splitting an image's rows into bands: the one rule every op that works band by band
//! (in parallel on rayon, or one band at a time to bound memory) uses.
//!
//! A [`Bands`] is a height and a band size: band `i` holds rows `i * rows..(i + 1) * rows`,
//! the last one cut at the height. How many rows a band gets is the op's choice (cache,
//! halo and memory trade-offs differ), made with the builders here; how a buffer is then
//! cut into bands, and which rows each piece holds, is the same everywhere.

use std::ops::Range;

use rayon::prelude::*;

/// Bands of whole rows over an image of `h` rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Bands {
    h: usize,
    rows: usize,
}

/// Bands per rayon thread for [`Bands::per_thread`]: enough for the pool to balance
/// uneven bands, few enough that per-band set-up stays small.
const BANDS_PER_THREAD: usize = 4;

impl Bands {
    /// Bands of `rows` rows each (at least one), the last one shorter if `h` says so.
    pub(crate) fn fixed(h: usize, rows: usize) -> Bands {
        Bands {
            h,
            rows: rows.clamp(1, h.max(1)),
        }
    }

    /// A few bands per thread of the current rayon pool.
    pub(crate) fn per_thread(h: usize) -> Bands {
        let threads = rayon::current_num_threads().max(1);
        Bands::fixed(h, h.div_ceil(threads * BANDS_PER_THREAD))
    }

    /// The fewest bands of at most `max_rows` rows, made as even as whole rows allow.
    pub(crate) fn even(h: usize, max_rows: usize) -> Bands {
        let n = h.div_ceil(max_rows.max(1)).max(1);
        Bands::fixed(h, h.div_ceil(n))
    }

    /// The same split with bands of at least `rows` rows (or the whole image).
    pub(crate) fn at_least(self, rows: usize) -> Bands {
        Bands::fixed(self.h, self.rows.max(rows))
    }

    /// The same split with bands of at most `rows` rows (at least one).
    pub(crate) fn at_most(self, rows: usize) -> Bands {
        Bands::fixed(self.h, self.rows.min(rows))
    }

    /// How many bands there are (none for an image without rows).
    pub(crate) fn count(&self) -> usize {
        self.h.div_ceil(self.rows)
    }

    /// The rows of band `i`.
    pub(crate) fn range(&self, i: usize) -> Range<usize> {
        let y0 = (i * self.rows).min(self.h);
        y0..(y0 + self.rows).min(self.h)
    }

    /// The rows of every band, top to bottom.
    pub(crate) fn ranges(&self) -> impl ExactSizeIterator<Item = Range<usize>> + '_ {
        (0..self.count()).map(|i| self.range(i))
    }

    /// The first row of every band after the first: where two bands meet.
    pub(crate) fn borders(&self) -> impl Iterator<Item = usize> + '_ {
        self.ranges().skip(1).map(|r| r.start)
    }

    /// `buf` (rows of `row_len` elements) cut into the bands, in parallel, for zipping
    /// with other buffers cut the same way.
    pub(crate) fn chunks<'a, T: Sync>(
        &self,
        buf: &'a [T],
        row_len: usize,
    ) -> rayon::slice::Chunks<'a, T> {
        buf.par_chunks((self.rows * row_len).max(1))
    }

    /// The mutable form of [`Bands::chunks`].
    pub(crate) fn chunks_mut<'a, T: Send>(
        &self,
        buf: &'a mut [T],
        row_len: usize,
    ) -> rayon::slice::ChunksMut<'a, T> {
        buf.par_chunks_mut((self.rows * row_len).max(1))
    }

    /// `buf` (rows of `row_len` elements) cut into the bands, in parallel, each with the
    /// image rows it holds.
    pub(crate) fn split_mut<'a, T: Send>(
        &self,
        buf: &'a mut [T],
        row_len: usize,
    ) -> impl IndexedParallelIterator<Item = (Range<usize>, &'a mut [T])> {
        let bands = *self;
        self.chunks_mut(buf, row_len)
            .enumerate()
            .map(move |(i, band)| (bands.range(i), band))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bands_cover_every_row_once_in_order() {
        for h in 0..40 {
            for rows in 0..12 {
                let b = Bands::fixed(h, rows);
                let mut next = 0;
                for r in b.ranges() {
                    assert_eq!(r.start, next, "h {h} rows {rows}");
                    assert!(!r.is_empty() && r.len() <= b.range(0).len());
                    next = r.end;
                }
                assert_eq!(next, h);
                assert_eq!(b.borders().count(), b.count().saturating_sub(1));
            }
        }
    }

    #[test]
    fn even_bands_are_the_fewest_and_differ_by_little() {
        for h in 1..60 {
            for max in 1..20 {
                let b = Bands::even(h, max);
                assert!(b.range(0).len() <= max);
                assert_eq!(b.count(), h.div_ceil(max), "h {h} max {max}");
                let lens: Vec<usize> = b.ranges().map(|r| r.len()).collect();
                let (lo, hi) = (lens.iter().min().unwrap(), lens.iter().max().unwrap());
                assert!(hi - lo < b.count(), "h {h} max {max}: {lens:?}");
            }
        }
    }

    #[test]
    fn limits_apply_in_the_order_given_and_stop_at_the_height() {
        let rows = |b: Bands| b.range(0).len();
        assert_eq!(rows(Bands::fixed(100, 10).at_most(4).at_least(16)), 16);
        assert_eq!(rows(Bands::fixed(100, 10).at_least(16).at_most(4)), 4);
        assert_eq!(rows(Bands::fixed(5, 1).at_least(16)), 5);
        assert_eq!(Bands::fixed(0, 16).count(), 0);
    }

    #[test]
    fn split_hands_each_band_its_rows() {
        let (w, h) = (3, 11);
        let mut buf: Vec<usize> = (0..w * h).map(|i| i / w).collect();
        let b = Bands::fixed(h, 4);
        let seen: Vec<Range<usize>> = b
            .split_mut(&mut buf, w)
            .map(|(rows, band)| {
                assert_eq!(band.len(), rows.len() * w);
                assert!(band.iter().all(|&y| rows.contains(&y)));
                rows
            })
            .collect();
        assert_eq!(seen, b.ranges().collect::<Vec<_>>());
        // Width zero: nothing to cut, and no zero-sized chunks asked of rayon.
        let mut empty: Vec<u8> = Vec::new();
        assert_eq!(b.split_mut(&mut empty, 0).count(), 0);
    }
}
