//! PNG and JPEG without graphviz: the SVG of [`super::draw`] rasterised by `resvg`, with the
//! system's fonts, then encoded by `resvg`'s PNG encoder or `jpeg-encoder`.

/// Why the map could not be rasterised.
#[derive(Debug, thiserror::Error)]
pub enum PngError {
    /// No font to draw labels with.
    #[error(
        "no fonts found to draw the labels of a PNG: install one (e.g. the fonts-dejavu-core package), or use --format svg"
    )]
    NoFonts,
    /// The SVG could not be read back.
    #[error("cannot rasterise the map")]
    Rasterise {
        /// The SVG parser's error.
        #[source]
        error: resvg::usvg::Error,
    },
    /// The image would be too large.
    #[error("the map is too large to draw as PNG ({width}x{height} pixels): use --format svg")]
    TooLarge {
        /// Width in pixels.
        width: u32,
        /// Height in pixels.
        height: u32,
    },
    /// JPEG holds at most 65 535 pixels a side.
    #[error(
        "the map is too large to draw as JPEG ({width}x{height} pixels, at most 65535 a side): use --format png or svg"
    )]
    TooLargeForJpeg {
        /// Width in pixels.
        width: u32,
        /// Height in pixels.
        height: u32,
    },
    /// PNG or JPEG encoding failed.
    #[error("cannot encode the image")]
    Encode {
        /// The encoder's error (`png::EncodingError`, a crate the CLI does not name itself).
        #[source]
        error: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// Rasterises an SVG from [`super::draw::svg`] to PNG at twice its size, with the system's fonts.
pub fn png(svg: &str) -> Result<Vec<u8>, PngError> {
    raster(svg)?.encode_png().map_err(|e| PngError::Encode { error: e.into() })
}

/// JPEG quality: the map's text and thin lines stay sharp.
const JPEG_QUALITY: u8 = 92;

/// Rasterises an SVG from [`super::draw::svg`] to JPEG at twice its size (on white: JPEG has no
/// transparency).
pub fn jpg(svg: &str) -> Result<Vec<u8>, PngError> {
    let pixmap = raster(svg)?;
    let (width, height) = (pixmap.width(), pixmap.height());
    let too_large = PngError::TooLargeForJpeg { width, height };
    let (Ok(w), Ok(h)) = (u16::try_from(width), u16::try_from(height)) else { return Err(too_large) };
    // The pixmap is filled white first, so every pixel is opaque and its premultiplied RGBA is
    // plain RGBA.
    let mut out = Vec::new();
    jpeg_encoder::Encoder::new(&mut out, JPEG_QUALITY)
        .encode(pixmap.data(), w, h, jpeg_encoder::ColorType::Rgba)
        .map_err(|e| PngError::Encode { error: e.into() })?;
    Ok(out)
}

/// The SVG drawn on a white pixmap at twice its size.
fn raster(svg: &str) -> Result<resvg::tiny_skia::Pixmap, PngError> {
    use resvg::{tiny_skia, usvg};
    let mut options = usvg::Options::default();
    let fonts = options.fontdb_mut();
    fonts.load_system_fonts();
    let Some(first_family) = fonts.faces().find_map(|f| f.families.first().map(|(name, _)| name.clone())) else {
        return Err(PngError::NoFonts);
    };
    // Without Helvetica or Arial, the generic family falls back to any installed face.
    let wanted = ["DejaVu Sans", "Helvetica", "Arial", "Liberation Sans", "Noto Sans"];
    let family = fonts
        .faces()
        .flat_map(|f| f.families.iter().map(|(name, _)| name.clone()))
        .find(|name| wanted.contains(&name.as_str()))
        .unwrap_or(first_family);
    fonts.set_sans_serif_family(family);
    let tree = usvg::Tree::from_str(svg, &options).map_err(|error| PngError::Rasterise { error })?;
    let size = tree.size().to_int_size();
    let (width, height) = (size.width().saturating_mul(2), size.height().saturating_mul(2));
    let too_large = PngError::TooLarge { width, height };
    if u64::from(width) * u64::from(height) > 200_000_000 {
        return Err(too_large);
    }
    let mut pixmap = tiny_skia::Pixmap::new(width, height).ok_or(too_large)?;
    pixmap.fill(tiny_skia::Color::WHITE);
    resvg::render(&tree, tiny_skia::Transform::from_scale(2., 2.), &mut pixmap.as_mut());
    Ok(pixmap)
}
