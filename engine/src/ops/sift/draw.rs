//! `drawKeypoints(.., DRAW_RICH_KEYPOINTS)` as OpenCV draws it, pixel for pixel.
//!
//! Each keypoint gets a colour from OpenCV's `RNG` (multiply-with-carry, state seeded
//! as a fresh process has it, `0xffffffff`), so the output is deterministic and matches a
//! first call in a new OpenCV process. It is drawn with 4 fractional bits
//! (`draw_shift_bits`): a circle of radius `size/2` (`circle(.., LINE_AA)`, i.e. the
//! polygon `ellipse2Poly` makes from OpenCV's sine table, each edge an anti-aliased line)
//! and a radius at the keypoint angle. The anti-aliased line is OpenCV's `LineAA`: 16.16
//! fixed point, its slope-correction and Gaussian filter tables, and each pixel blended
//! twice with `(c - p)·a/256`.

use image::RgbImage;

use crate::ops::KeyPoint;

const XY_SHIFT: u32 = 16;
const XY_ONE: i64 = 1 << XY_SHIFT;
const DRAW_SHIFT: u32 = 4;

/// OpenCV's `RNG`: `state = (u32)state · 4164903690 + (state >> 32)`.
pub struct Rng(u64);

impl Rng {
    /// The state `cv::theRNG()` starts with.
    pub fn opencv_default() -> Self {
        Rng(0xffff_ffff)
    }

    fn next(&mut self) -> u32 {
        self.0 = (self.0 as u32 as u64)
            .wrapping_mul(4_164_903_690)
            .wrapping_add(self.0 >> 32);
        self.0 as u32
    }

    /// `rng(n)`: uniform in `0..n`.
    pub fn below(&mut self, n: u32) -> u32 {
        self.next() % n
    }
}

/// Draws every keypoint over `img` as OpenCV's rich keypoints, colours from `rng`.
pub fn draw_keypoints(img: &mut RgbImage, keypoints: &[KeyPoint], rng: &mut Rng) {
    for kp in keypoints {
        // Scalar(rng(256), rng(256), rng(256)) in BGR: GCC evaluates the arguments last to
        // first, so red is drawn first and blue last.
        let r = rng.below(256) as u8;
        let g = rng.below(256) as u8;
        let b = rng.below(256) as u8;
        draw_keypoint(img, kp, [r, g, b]);
    }
}

fn draw_keypoint(img: &mut RgbImage, kp: &KeyPoint, color: [u8; 3]) {
    let m = (1 << DRAW_SHIFT) as f32;
    let center = (
        (kp.x * m).round_ties_even() as i64,
        (kp.y * m).round_ties_even() as i64,
    );
    let radius = (kp.size / 2.0 * m).round_ties_even() as i64;
    let up = XY_SHIFT - DRAW_SHIFT;
    circle_aa(img, (center.0 << up, center.1 << up), radius << up, color);
    if kp.angle != -1.0 {
        let a = kp.angle * std::f32::consts::PI / 180.0;
        let orient = (
            (a.cos() * radius as f32).round_ties_even() as i64,
            (a.sin() * radius as f32).round_ties_even() as i64,
        );
        let end = (center.0 + orient.0, center.1 + orient.1);
        line_aa(
            img,
            (center.0 << up, center.1 << up),
            (end.0 << up, end.1 << up),
            color,
        );
    }
}

/// `EllipseEx` for a full circle, thickness 1, `LINE_AA`; coordinates in 16.16.
fn circle_aa(img: &mut RgbImage, center: (i64, i64), radius: i64, color: [u8; 3]) {
    let r = radius.abs();
    let delta = ((r + (XY_ONE >> 1)) >> XY_SHIFT) as i32;
    let delta = match delta {
        d if d < 3 => 90,
        d if d < 10 => 30,
        d if d < 15 => 18,
        _ => 5,
    };
    // ellipse2Poly with angle 0 over 0..360: cos = SinTable[450] = 1, sin = SinTable[0] = 0.
    let mut pts: Vec<(i64, i64)> = Vec::new();
    let mut i = 0;
    while i < 360 + delta {
        let angle = i.min(360) as usize;
        let x = r as f64 * SIN_TABLE[450 - angle] as f64;
        let y = r as f64 * SIN_TABLE[angle] as f64;
        let v = (
            center.0 as f64 + x * 1.0 - y * 0.0,
            center.1 as f64 + x * 0.0 + y * 1.0,
        );
        let fix = |c: f64| {
            let hi = ((c / XY_ONE as f64).round_ties_even() as i64) << XY_SHIFT;
            hi + (c - hi as f64).round_ties_even() as i64
        };
        let p = (fix(v.0), fix(v.1));
        if pts.last() != Some(&p) {
            pts.push(p);
        }
        i += delta;
    }
    if pts.len() <= 1 {
        pts = vec![center, center];
    }
    for seg in pts.windows(2) {
        line_aa(img, seg[0], seg[1], color);
    }
}

/// `clipLine` on a 16.16 canvas of `size`: false when the segment misses it.
fn clip_line(size: (i64, i64), p1: &mut (i64, i64), p2: &mut (i64, i64)) -> bool {
    let (right, bottom) = (size.0 - 1, size.1 - 1);
    if size.0 <= 0 || size.1 <= 0 {
        return false;
    }
    let code = |p: &(i64, i64)| {
        (p.0 < 0) as i32
            + (p.0 > right) as i32 * 2
            + (p.1 < 0) as i32 * 4
            + (p.1 > bottom) as i32 * 8
    };
    let (mut c1, mut c2) = (code(p1), code(p2));
    if (c1 & c2) == 0 && (c1 | c2) != 0 {
        if c1 & 12 != 0 {
            let a = if c1 < 8 { 0 } else { bottom };
            p1.0 += ((a - p1.1) as f64 * (p2.0 - p1.0) as f64 / (p2.1 - p1.1) as f64) as i64;
            p1.1 = a;
            c1 = (p1.0 < 0) as i32 + (p1.0 > right) as i32 * 2;
        }
        if c2 & 12 != 0 {
            let a = if c2 < 8 { 0 } else { bottom };
            p2.0 += ((a - p2.1) as f64 * (p2.0 - p1.0) as f64 / (p2.1 - p1.1) as f64) as i64;
            p2.1 = a;
            c2 = (p2.0 < 0) as i32 + (p2.0 > right) as i32 * 2;
        }
        if (c1 & c2) == 0 && (c1 | c2) != 0 {
            if c1 != 0 {
                let a = if c1 == 1 { 0 } else { right };
                p1.1 += ((a - p1.0) as f64 * (p2.1 - p1.1) as f64 / (p2.0 - p1.0) as f64) as i64;
                p1.0 = a;
                c1 = 0;
            }
            if c2 != 0 {
                let a = if c2 == 1 { 0 } else { right };
                p2.1 += ((a - p2.0) as f64 * (p2.1 - p1.1) as f64 / (p2.0 - p1.0) as f64) as i64;
                p2.0 = a;
                c2 = 0;
            }
        }
    }
    (c1 | c2) == 0
}

/// OpenCV's `LineAA` on a 3-channel image, end points in 16.16 fixed point.
fn line_aa(img: &mut RgbImage, mut p1: (i64, i64), mut p2: (i64, i64), color: [u8; 3]) {
    let (w0, h0) = (img.width() as i64, img.height() as i64);
    if !clip_line((w0 << XY_SHIFT, h0 << XY_SHIFT), &mut p1, &mut p2) {
        return;
    }
    let mut dx = p2.0 - p1.0;
    let mut dy = p2.1 - p1.1;
    let j = if dx < 0 { -1i64 } else { 0 };
    let ax = (dx ^ j) - j;
    let i = if dy < 0 { -1i64 } else { 0 };
    let ay = (dy ^ i) - i;
    let horizontal = ax > ay;
    let (step, ecount, slope, fi, fj);
    if horizontal {
        dy = (dy ^ j) - j;
        swap_if(&mut p1, &mut p2, j);
        step = ((dy as u64) << XY_SHIFT) as i64 / (ax | 1);
        p2.0 += XY_ONE;
        ecount = ((p2.0 >> XY_SHIFT) - (p1.0 >> XY_SHIFT)) as i32;
        let jf = -(p1.0 & (XY_ONE - 1));
        p1.1 += ((step * jf) >> XY_SHIFT) + (XY_ONE >> 1);
        slope = slope_of(step);
        fi = (p1.0 >> (XY_SHIFT - 7)) & 0x78;
        fj = (p2.0 >> (XY_SHIFT - 7)) & 0x78;
    } else {
        dx = (dx ^ i) - i;
        swap_if(&mut p1, &mut p2, i);
        step = ((dx as u64) << XY_SHIFT) as i64 / (ay | 1);
        p2.1 += XY_ONE;
        ecount = ((p2.1 >> XY_SHIFT) - (p1.1 >> XY_SHIFT)) as i32;
        let jf = -(p1.1 & (XY_ONE - 1));
        p1.0 += ((step * jf) >> XY_SHIFT) + (XY_ONE >> 1);
        slope = slope_of(step);
        fi = (p1.1 >> (XY_SHIFT - 7)) & 0x78;
        fj = (p2.1 >> (XY_SHIFT - 7)) & 0x78;
    }
    let ep = end_point_table(slope, fi, fj);
    let (mut scount, mut ecount) = (0i32, ecount);
    let mut put = |x: i64, y: i64, a: i32| {
        let px = img.get_pixel_mut(x as u32, y as u32);
        for (c, &target) in px.0.iter_mut().zip(&color) {
            let mut v = *c as i32;
            v += ((target as i32 - v) * a + 127) >> 8;
            v += ((target as i32 - v) * a + 127) >> 8;
            *c = v as u8;
        }
    };
    // Position along the line's long axis, and the 16.16 coordinate across it.
    let (mut along, mut across) = if horizontal {
        (p1.0 >> XY_SHIFT, p1.1)
    } else {
        (p1.1 >> XY_SHIFT, p1.0)
    };
    let (len_along, len_across) = if horizontal { (w0, h0) } else { (h0, w0) };
    while ecount >= 0 {
        if (along as u64) < len_along as u64 {
            let first = (across >> XY_SHIFT) - 1;
            let ep_corr = ep[(((scount >= 2) as i32 + 1) & (scount | 2)) as usize * 3
                + (((ecount >= 2) as i32 + 1) & (ecount | 2)) as usize];
            let dist = ((across >> (XY_SHIFT - 5)) & 31) as usize;
            let weights = [
                FILTER_TABLE[dist + 32],
                FILTER_TABLE[dist],
                FILTER_TABLE[63 - dist],
            ];
            for (k, &f) in weights.iter().enumerate() {
                let a = ((ep_corr * f) >> 8) & 0xff;
                let q = first + k as i64;
                if (q as u64) < len_across as u64 {
                    if horizontal {
                        put(along, q, a);
                    } else {
                        put(q, along, a);
                    }
                }
            }
        }
        along += 1;
        across += step;
        scount += 1;
        ecount -= 1;
    }
}

fn swap_if(p1: &mut (i64, i64), p2: &mut (i64, i64), mask: i64) {
    p1.0 ^= p2.0 & mask;
    p2.0 ^= p1.0 & mask;
    p1.0 ^= p2.0 & mask;
    p1.1 ^= p2.1 & mask;
    p2.1 ^= p1.1 & mask;
    p1.1 ^= p2.1 & mask;
}

fn slope_of(step: i64) -> i32 {
    let mut s = ((step >> (XY_SHIFT - 5)) & 0x3f) as i32;
    if step < 0 {
        s ^= 0x3f;
    }
    if s & 0x20 != 0 {
        0x100
    } else {
        SLOPE_CORR_TABLE[s as usize] as i32
    }
}

fn end_point_table(slope: i32, i: i64, j: i64) -> [i32; 9] {
    let slope = slope as i64;
    let t0 = slope << 7;
    let t1 = ((0x78 - i) | 4) * slope;
    let t2 = (j | 4) * slope;
    let mut ep = [0i64; 9];
    ep[8] = slope;
    ep[1] = (((((j - i) & 0x78) | 4) * slope) >> 8) & 0x1ff;
    ep[3] = ep[1];
    ep[2] = (t1 >> 8) & 0x1ff;
    ep[4] = (((((j - i) + 0x80) | 4) * slope) >> 8) & 0x1ff;
    ep[5] = ((t1 + t0) >> 8) & 0x1ff;
    ep[6] = (t2 >> 8) & 0x1ff;
    ep[7] = ((t2 + t0) >> 8) & 0x1ff;
    ep.map(|v| v as i32)
}

/// Correction of the line's weight by its slope (drawing.cpp `SlopeCorrTable`).
const SLOPE_CORR_TABLE: [u8; 32] = [
    181, 181, 181, 182, 182, 183, 184, 185, 187, 188, 190, 192, 194, 196, 198, 201, 203, 206, 209,
    211, 214, 218, 221, 224, 227, 231, 235, 238, 242, 246, 250, 254,
];

/// The anti-aliasing filter across the line (drawing.cpp `FilterTable`).
const FILTER_TABLE: [i32; 64] = [
    168, 177, 185, 194, 202, 210, 218, 224, 231, 236, 241, 246, 249, 252, 254, 254, 254, 254, 252,
    249, 246, 241, 236, 231, 224, 218, 210, 202, 194, 185, 177, 168, 158, 149, 140, 131, 122, 114,
    105, 97, 89, 82, 75, 68, 62, 56, 50, 45, 40, 36, 32, 28, 25, 22, 19, 16, 14, 12, 11, 9, 8, 7,
    5, 5,
];

/// sin of whole degrees 0..=450 as OpenCV tabulates it (drawing.cpp `SinTable`, 7 digits).
static SIN_TABLE: [f32; 451] = sin_table();

const fn sin_table() -> [f32; 451] {
    let mut t = [0f32; 451];
    let mut i = 0;
    while i < 451 {
        t[i] = SIN_DIGITS[i % 360] as f32 / 10_000_000.0;
        i += 1;
    }
    t
}

/// OpenCV's table values for 0..360 degrees, times 10^7.
const SIN_DIGITS: [i32; 360] = {
    let q: [i32; 91] = [
        0, 174524, 348995, 523360, 697565, 871557, 1045285, 1218693, 1391731, 1564345, 1736482,
        1908090, 2079117, 2249511, 2419219, 2588190, 2756374, 2923717, 3090170, 3255682, 3420201,
        3583679, 3746066, 3907311, 4067366, 4226183, 4383711, 4539905, 4694716, 4848096, 5000000,
        5150381, 5299193, 5446390, 5591929, 5735764, 5877853, 6018150, 6156615, 6293204, 6427876,
        6560590, 6691306, 6819984, 6946584, 7071068, 7193398, 7313537, 7431448, 7547096, 7660444,
        7771460, 7880108, 7986355, 8090170, 8191520, 8290376, 8386706, 8480481, 8571673, 8660254,
        8746197, 8829476, 8910065, 8987940, 9063078, 9135455, 9205049, 9271839, 9335804, 9396926,
        9455186, 9510565, 9563048, 9612617, 9659258, 9702957, 9743701, 9781476, 9816272, 9848078,
        9876883, 9902681, 9925462, 9945219, 9961947, 9975641, 9986295, 9993908, 9998477, 10000000,
    ];
    let mut t = [0i32; 360];
    let mut i = 0;
    while i < 360 {
        t[i] = match i {
            0..=90 => q[i],
            91..=180 => q[180 - i],
            181..=270 => -q[i - 180],
            _ => -q[360 - i],
        };
        i += 1;
    }
    t
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rng_matches_opencv_sequence() {
        // cv2.setRNGSeed(0); first draws of theRNG()(256) in OpenCV 5.0.
        let mut rng = Rng::opencv_default();
        let v: Vec<u32> = (0..3).map(|_| rng.below(256)).collect();
        assert_eq!(v, [246, 165, 231]);
    }

    #[test]
    fn sine_table_is_opencvs() {
        assert_eq!(SIN_TABLE[0], 0.0);
        assert_eq!(SIN_TABLE[90], 1.0);
        assert_eq!(SIN_TABLE[450], 1.0);
        assert_eq!(SIN_TABLE[30], 0.5);
        assert_eq!(SIN_TABLE[210], -0.5);
        assert_eq!(SIN_TABLE[359], -0.017_452_4);
        assert_eq!(SIN_TABLE[361], 0.017_452_4);
    }

    #[test]
    fn keypoint_draws_a_ring_and_a_radius() {
        let mut img = RgbImage::new(40, 40);
        let kp = KeyPoint {
            x: 20.0,
            y: 20.0,
            size: 20.0,
            angle: 0.0,
            response: 1.0,
            octave: 0,
        };
        draw_keypoints(
            &mut img,
            std::slice::from_ref(&kp),
            &mut Rng::opencv_default(),
        );
        // The radius at angle 0 runs right along row 20; the ring passes (30, 20) and
        // (20, 10); the centre region off the lines stays black.
        // On the line the colour is blended in twice at about 70 %.
        let on = img.get_pixel(25, 20).0;
        for (c, t) in on.iter().zip([246u8, 165, 231]) {
            assert!(*c <= t && *c as f32 >= 0.85 * t as f32, "{on:?}");
        }
        assert_ne!(img.get_pixel(20, 10).0, [0, 0, 0]);
        assert_eq!(img.get_pixel(15, 15).0, [0, 0, 0]);
        // A keypoint off the canvas draws nothing and does not panic.
        let far = KeyPoint { x: -100.0, ..kp };
        let mut blank = RgbImage::new(8, 8);
        draw_keypoints(&mut blank, &[far], &mut Rng::opencv_default());
        assert!(blank.pixels().all(|p| p.0 == [0, 0, 0]));
    }
}
