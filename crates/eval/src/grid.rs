//! PNG image grids (clean / adversarial / amplified perturbation), written with the `png` crate.

use std::path::Path;

use crate::atomic::write_atomic;
use crate::error::EvalError;

/// One image: `channels × height × width` values in [0, 1], channel-major (as the tensors are).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct GridImage {
    /// Number of channels: 1 (grey) or 3 (RGB).
    pub channels: usize,
    /// Height in pixels.
    pub height: usize,
    /// Width in pixels.
    pub width: usize,
    /// Pixel values, channel-major.
    pub pixels: Vec<f32>,
}

impl GridImage {
    /// The perturbation `adv − clean` mapped to [0, 1] around mid-grey, amplified so that the
    /// largest absolute change reaches black or white.
    pub fn amplified_difference(clean: &GridImage, adv: &GridImage) -> GridImage {
        let diff: Vec<f32> = adv
            .pixels
            .iter()
            .zip(&clean.pixels)
            .map(|(a, c)| a - c)
            .collect();
        let peak = diff.iter().fold(0f32, |m, d| m.max(d.abs()));
        let scale = if peak > 0.0 { 0.5 / peak } else { 0.0 };
        GridImage {
            pixels: diff.iter().map(|d| 0.5 + d * scale).collect(),
            ..clean.clone()
        }
    }
}

/// Writes `rows` of equally sized images as one RGB PNG, each image scaled up by `zoom` and
/// separated by a 2-pixel white border. Written atomically.
pub fn write_png_grid(path: &Path, rows: &[Vec<GridImage>], zoom: usize) -> Result<(), EvalError> {
    let err = |reason: String| EvalError::Image {
        path: path.to_path_buf(),
        reason,
    };
    let first = rows
        .iter()
        .flat_map(|r| r.first())
        .next()
        .ok_or_else(|| err("no images to write".into()))?;
    let (h, w) = (first.height * zoom, first.width * zoom);
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let pad = 2;
    let (width, height) = (cols * (w + pad) + pad, rows.len() * (h + pad) + pad);
    let mut rgb = vec![255u8; width * height * 3];
    for (r, row) in rows.iter().enumerate() {
        for (c, img) in row.iter().enumerate() {
            if img.height * zoom != h || img.width * zoom != w || !matches!(img.channels, 1 | 3) {
                return Err(err(
                    "images of different shapes, or not 1 or 3 channels".into()
                ));
            }
            let plane = img.height * img.width;
            for y in 0..h {
                for x in 0..w {
                    let src = (y / zoom) * img.width + x / zoom;
                    let dst = ((r * (h + pad) + pad + y) * width + c * (w + pad) + pad + x) * 3;
                    for ch in 0..3 {
                        let v = img.pixels[if img.channels == 3 {
                            ch * plane + src
                        } else {
                            src
                        }];
                        rgb[dst + ch] = (v.clamp(0.0, 1.0) * 255.0).round() as u8;
                    }
                }
            }
        }
    }
    let mut bytes = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut bytes, width as u32, height as u32);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header().map_err(|e| err(e.to_string()))?;
        writer
            .write_image_data(&rgb)
            .map_err(|e| err(e.to_string()))?;
    }
    write_atomic(path, &bytes)
}
