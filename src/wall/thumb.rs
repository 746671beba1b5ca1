//! Thumbnails of a VM's screen for the wall: the hypervisor's picture
//! (QEMU: a binary PPM) shrunk to at most [`WIDTH`] pixels wide with a box
//! filter (every source pixel counts once, so text stays visible as grey
//! rather than vanishing between samples) and encoded as PNG with fast
//! compression; and, when someone watches the live picture, the same
//! screenshot at full size ([`pictures`]). Pure: bytes in, bytes out.

use crate::desk::screenshot::{ShotError, encode_rgb_png, parse_ppm, to_png};

/// Width of a wall thumbnail (a 40-tile wall at 1366 px shows ~5 columns).
pub const WIDTH: u32 = 320;

/// A shrunken picture: RGB bytes, `width × height × 3`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rgb {
    pub width: u32,
    pub height: u32,
    pub pixels: Vec<u8>,
}

/// Shrinks `pixels` (`width × height` RGB) so it is at most `max_width`
/// wide, keeping the aspect ratio (never enlarging). Each output pixel is
/// the mean of the source pixels its box covers.
pub fn shrink(width: u32, height: u32, pixels: &[u8], max_width: u32) -> Rgb {
    let (w, h) = (width as usize, height as usize);
    if width <= max_width || max_width == 0 {
        return Rgb {
            width,
            height,
            pixels: pixels[..w * h * 3].to_vec(),
        };
    }
    let ow = max_width as usize;
    let oh = ((h * ow) / w).max(1);
    let mut sums = vec![0u32; ow * oh * 3];
    let mut counts = vec![0u32; ow * oh];
    for y in 0..h {
        let oy = y * oh / h;
        let row = &pixels[y * w * 3..(y + 1) * w * 3];
        for (x, px) in row.chunks_exact(3).enumerate() {
            let o = oy * ow + x * ow / w;
            counts[o] += 1;
            sums[o * 3] += u32::from(px[0]);
            sums[o * 3 + 1] += u32::from(px[1]);
            sums[o * 3 + 2] += u32::from(px[2]);
        }
    }
    let out = sums
        .iter()
        .enumerate()
        .map(|(i, &s)| {
            let n = counts[i / 3].max(1);
            u8::try_from((s + n / 2) / n).unwrap_or(u8::MAX)
        })
        .collect();
    Rgb {
        width: u32::try_from(ow).unwrap_or(max_width),
        height: u32::try_from(oh).unwrap_or(1),
        pixels: out,
    }
}

/// PNG bytes of a picture (fast compression: made once a second per VM).
pub fn encode_png(img: &Rgb) -> Result<Vec<u8>, ShotError> {
    encode_rgb_png(img.width, img.height, &img.pixels)
}

/// What one screenshot gives: the wall's thumbnail, and the full-size
/// picture when someone watches it live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pictures {
    pub thumbnail: Vec<u8>,
    pub full: Option<Vec<u8>>,
}

/// The wall's thumbnail of a hypervisor picture (PPM, or PNG as newer
/// QEMU and libvirt hand over): PNG, at most `max_width` wide.
pub fn thumbnail(raw: &[u8], max_width: u32) -> Result<Vec<u8>, ShotError> {
    if raw.starts_with(b"\x89PNG\r\n\x1a\n") {
        let img = decode_png(raw)?;
        return encode_png(&shrink(img.width, img.height, &img.pixels, max_width));
    }
    let (width, height, pixels) = parse_ppm(raw)?;
    encode_png(&shrink(width, height, pixels, max_width))
}

/// The thumbnail of a hypervisor picture and, if `full`, the picture at
/// the screen's own size as PNG (a PNG from the hypervisor passes through).
pub fn pictures(raw: &[u8], max_width: u32, full: bool) -> Result<Pictures, ShotError> {
    Ok(Pictures {
        thumbnail: thumbnail(raw, max_width)?,
        full: if full { Some(to_png("", raw)?) } else { None },
    })
}

/// A PNG as 8-bit RGB (palette, grey and 16-bit expanded; alpha dropped).
fn decode_png(raw: &[u8]) -> Result<Rgb, ShotError> {
    let bad = |_| ShotError::Format("unreadable PNG");
    let mut decoder = png::Decoder::new(std::io::Cursor::new(raw));
    decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
    let mut reader = decoder.read_info().map_err(bad)?;
    let (w, h) = (reader.info().width, reader.info().height);
    if w == 0 || h == 0 || w > 8192 || h > 8192 {
        return Err(ShotError::Format("unreasonable dimensions"));
    }
    let size = reader
        .output_buffer_size()
        .ok_or(ShotError::Format("unreasonable dimensions"))?;
    let mut buf = vec![0; size];
    let info = reader.next_frame(&mut buf).map_err(bad)?;
    let channels = match info.color_type {
        png::ColorType::Grayscale => 1,
        png::ColorType::GrayscaleAlpha => 2,
        png::ColorType::Rgb => 3,
        png::ColorType::Rgba => 4,
        png::ColorType::Indexed => return Err(ShotError::Format("unexpanded palette PNG")),
    };
    let px = &buf[..info.buffer_size()];
    let mut pixels = Vec::with_capacity(w as usize * h as usize * 3);
    for row in px.chunks_exact(info.line_size) {
        for p in row.chunks_exact(channels).take(w as usize) {
            match channels {
                1 | 2 => pixels.extend_from_slice(&[p[0], p[0], p[0]]),
                _ => pixels.extend_from_slice(&p[..3]),
            }
        }
    }
    Ok(Rgb {
        width: w,
        height: h,
        pixels,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ppm(w: u32, h: u32, px: impl Fn(u32, u32) -> [u8; 3]) -> Vec<u8> {
        let mut v = format!("P6\n{w} {h}\n255\n").into_bytes();
        for y in 0..h {
            for x in 0..w {
                v.extend_from_slice(&px(x, y));
            }
        }
        v
    }

    fn decode(png_bytes: &[u8]) -> (u32, u32, Vec<u8>) {
        let decoder = png::Decoder::new(std::io::Cursor::new(png_bytes));
        let mut reader = decoder.read_info().expect("png");
        let mut buf = vec![0; reader.output_buffer_size().expect("size")];
        let info = reader.next_frame(&mut buf).expect("frame");
        buf.truncate(info.buffer_size());
        (info.width, info.height, buf)
    }

    #[test]
    fn a_vga_screen_becomes_a_320_wide_png_with_its_aspect() {
        let raw = ppm(
            720,
            400,
            |x, _| if x < 360 { [255, 0, 0] } else { [0, 0, 255] },
        );
        let (w, h, px) = decode(&thumbnail(&raw, WIDTH).expect("thumb"));
        assert_eq!((w, h), (320, 177));
        assert_eq!(&px[..3], &[255, 0, 0], "left half red");
        let last = px.len() - 3;
        assert_eq!(&px[last..], &[0, 0, 255], "right half blue");
    }

    #[test]
    fn small_screens_are_not_enlarged_and_bad_pictures_refused() {
        let (w, h, _) = decode(&thumbnail(&ppm(100, 50, |_, _| [1, 2, 3]), WIDTH).expect("ok"));
        assert_eq!((w, h), (100, 50));
        assert!(thumbnail(b"P6\n10 10\n255\n\0", WIDTH).is_err());
        assert!(thumbnail(b"GIF89a", WIDTH).is_err());
    }

    #[test]
    fn a_png_screen_is_shrunk_too() {
        let raw = ppm(
            720,
            400,
            |x, _| if x < 360 { [255, 0, 0] } else { [0, 0, 255] },
        );
        let (w, h, px) = parse_ppm(&raw).expect("ppm");
        let big = encode_png(&Rgb {
            width: w,
            height: h,
            pixels: px.to_vec(),
        })
        .expect("png");
        let (w, h, px) = decode(&thumbnail(&big, WIDTH).expect("thumb"));
        assert_eq!((w, h), (320, 177));
        assert_eq!(&px[..3], &[255, 0, 0]);
    }

    #[test]
    fn the_full_picture_keeps_the_screen_size_only_when_asked_for() {
        let raw = ppm(1024, 768, |x, y| {
            if (x + y) % 2 == 0 {
                [200, 10, 10]
            } else {
                [0; 3]
            }
        });
        let p = pictures(&raw, WIDTH, true).expect("pictures");
        assert_eq!(p.thumbnail, thumbnail(&raw, WIDTH).expect("thumb"));
        let (w, h, px) = decode(p.full.as_deref().expect("full"));
        assert_eq!((w, h), (1024, 768));
        assert_eq!(&px[..6], &[200, 10, 10, 0, 0, 0], "every pixel kept");
        assert_eq!(pictures(&raw, WIDTH, false).expect("thumb only").full, None);
        // A PNG from the hypervisor is the full picture as it is.
        let png = p.full.expect("full");
        assert_eq!(pictures(&png, WIDTH, true).expect("png").full, Some(png));
        assert!(pictures(b"GIF89a", WIDTH, true).is_err());
    }

    #[test]
    fn thin_text_survives_as_grey() {
        // One white column in four on black: a 4:1 shrink keeps a quarter grey.
        let img = shrink(
            8,
            1,
            &ppm(8, 1, |x, _| if x % 4 == 0 { [255; 3] } else { [0; 3] })[11..],
            2,
        );
        assert_eq!(img.pixels, vec![64, 64, 64, 64, 64, 64]);
    }

    proptest! {
        /// The output size follows the width limit and the aspect ratio;
        /// every output sample is a mean of its channel's inputs (never
        /// outside their range), and a one-colour screen stays that colour.
        #[test]
        fn shrinking_keeps_size_rules_and_colours(
            w in 1u32..200, h in 1u32..120, max in 1u32..100,
            px in proptest::collection::vec(any::<u8>(), 3..=600),
            colour in any::<[u8; 3]>(),
        ) {
            let n = (w * h * 3) as usize;
            let px: Vec<u8> = px.iter().copied().cycle().take(n).collect();
            let img = shrink(w, h, &px, max);
            prop_assert!(img.width <= max || img.width == w);
            prop_assert!(img.width <= w && img.height <= h && img.height >= 1);
            prop_assert_eq!(img.pixels.len(), (img.width * img.height * 3) as usize);
            if w > max {
                prop_assert_eq!(img.width, max);
                prop_assert_eq!(img.height, (h * max / w).max(1));
            }
            for c in 0..3 {
                let channel = px.iter().skip(c).step_by(3);
                let (lo, hi) = (channel.clone().min().copied(), channel.max().copied());
                for &v in img.pixels.iter().skip(c).step_by(3) {
                    prop_assert!(Some(v) >= lo && Some(v) <= hi);
                }
            }
            let flat: Vec<u8> = colour.iter().copied().cycle().take(n).collect();
            let img = shrink(w, h, &flat, max);
            prop_assert!(img.pixels.chunks_exact(3).all(|p| p == colour));
        }
    }
}
