//! Decoded images as the ops see them.

use image::{GrayImage, RgbImage};

/// The colour part of an image: grey or RGB, 8 bits per channel.
///
/// Channels are stored in RGB order; OpenCV's BGR order only matters for the grey weights,
/// which [`crate::ops::color::rgb_to_gray`] applies to the right channels.
#[derive(Clone, Debug, PartialEq)]
pub enum Pixels {
    /// One channel.
    Gray(GrayImage),
    /// Three channels, RGB order.
    Rgb(RgbImage),
}

impl Pixels {
    /// Width in pixels.
    pub fn width(&self) -> u32 {
        match self {
            Pixels::Gray(g) => g.width(),
            Pixels::Rgb(c) => c.width(),
        }
    }

    /// Height in pixels.
    pub fn height(&self) -> u32 {
        match self {
            Pixels::Gray(g) => g.height(),
            Pixels::Rgb(c) => c.height(),
        }
    }

    /// Channels per pixel (1 or 3).
    pub fn channels(&self) -> usize {
        match self {
            Pixels::Gray(_) => 1,
            Pixels::Rgb(_) => 3,
        }
    }

    /// Bytes held by the pixel buffer.
    pub fn byte_len(&self) -> usize {
        match self {
            Pixels::Gray(g) => g.as_raw().len(),
            Pixels::Rgb(c) => c.as_raw().len(),
        }
    }

    /// The grey image OpenCV's `cvtColor(BGR2GRAY)` would give (a copy if already grey).
    pub fn to_gray(&self) -> GrayImage {
        match self {
            Pixels::Gray(g) => g.clone(),
            Pixels::Rgb(c) => crate::ops::color::rgb_to_gray(c),
        }
    }

    /// Consumes into grey, converting only when needed.
    pub fn into_gray(self) -> GrayImage {
        match self {
            Pixels::Gray(g) => g,
            Pixels::Rgb(c) => crate::ops::color::rgb_to_gray(&c),
        }
    }

    /// Consumes into RGB, replicating grey into three channels as `GRAY2BGR` does.
    pub fn into_rgb(self) -> RgbImage {
        match self {
            Pixels::Rgb(c) => c,
            Pixels::Gray(g) => crate::ops::color::gray_to_rgb(&g),
        }
    }
}

/// An image with everything the ops do not touch but the output must keep.
#[derive(Clone, Debug)]
pub struct Frame {
    /// The colour part the ops work on.
    pub pixels: Pixels,
    /// The alpha channel of the source, carried through to colour outputs unchanged.
    pub alpha: Option<GrayImage>,
}

impl Frame {
    /// A frame without alpha.
    pub fn new(pixels: Pixels) -> Self {
        Self {
            pixels,
            alpha: None,
        }
    }

    /// Bytes held by the decoded pixels, alpha included (what admission control counts).
    pub fn byte_len(&self) -> usize {
        self.pixels.byte_len() + self.alpha.as_ref().map_or(0, |a| a.as_raw().len())
    }
}
