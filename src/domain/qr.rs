//! The pairing QR as a picture a person can scan from a browser.

use qrcode::render::svg;
use qrcode::{Color, EcLevel, QrCode};

/// Pixels per QR module in the PNG, and the quiet zone (in modules) scanners need around it.
const PNG_SCALE: usize = 8;
const QUIET_ZONE: usize = 4;

#[derive(Debug, PartialEq, Eq)]
pub struct QrError(String);

impl std::fmt::Display for QrError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "cannot render QR: {}", self.0)
    }
}

fn encode(data: &str) -> Result<QrCode, QrError> {
    // Level M is what WhatsApp itself uses for its pairing codes.
    QrCode::with_error_correction_level(data.as_bytes(), EcLevel::M).map_err(|e| QrError(e.to_string()))
}

pub fn svg(data: &str) -> Result<String, QrError> {
    Ok(encode(data)?.render::<svg::Color<'_>>().min_dimensions(256, 256).quiet_zone(true).build())
}

pub fn png(data: &str) -> Result<Vec<u8>, QrError> {
    let code = encode(data)?;
    let modules = code.width();
    let colors = code.to_colors();
    let side = (modules + 2 * QUIET_ZONE) * PNG_SCALE;
    let mut pixels = vec![0xFFu8; side * side];
    for (i, color) in colors.iter().enumerate() {
        if *color == Color::Dark {
            let (mx, my) = (i % modules + QUIET_ZONE, i / modules + QUIET_ZONE);
            for y in my * PNG_SCALE..(my + 1) * PNG_SCALE {
                pixels[y * side + mx * PNG_SCALE..][..PNG_SCALE].fill(0);
            }
        }
    }
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, side as u32, side as u32);
    encoder.set_color(png::ColorType::Grayscale);
    encoder.set_depth(png::BitDepth::Eight);
    let write = |e: png::EncodingError| QrError(e.to_string());
    let mut writer = encoder.write_header().map_err(write)?;
    writer.write_image_data(&pixels).map_err(write)?;
    writer.finish().map_err(write)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const REF: &str = "2@A1b2C3dEf,pQr5+sTu=,wXyZ0123=,abcdEFGH=";

    #[test]
    fn svg_is_a_square_picture() {
        let svg = svg(REF).unwrap();
        assert!(svg.starts_with("<?xml") && svg.contains("<svg") && svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains(r##"fill="#000""##), "dark modules are drawn");
    }

    #[test]
    fn png_decodes_to_the_modules_of_the_code() {
        let bytes = png(REF).unwrap();
        let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
        let mut reader = decoder.read_info().unwrap();
        let mut pixels = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut pixels).unwrap();
        let code = encode(REF).unwrap();
        let side = (code.width() + 2 * QUIET_ZONE) * PNG_SCALE;
        assert_eq!((info.width as usize, info.height as usize), (side, side));
        // Sample the centre of every module: dark modules are black, the rest white.
        for (i, color) in code.to_colors().iter().enumerate() {
            let (mx, my) = (i % code.width() + QUIET_ZONE, i / code.width() + QUIET_ZONE);
            let pixel = pixels[(my * PNG_SCALE + PNG_SCALE / 2) * side + mx * PNG_SCALE + PNG_SCALE / 2];
            assert_eq!(pixel == 0, *color == Color::Dark, "module {i}");
        }
        assert!(pixels[..side * QUIET_ZONE * PNG_SCALE].iter().all(|&p| p == 0xFF), "quiet zone is white");
    }
}
