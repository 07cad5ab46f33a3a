//! The bar chart of completed sessions per country, as a PNG.
//!
//! Text is drawn with a font compiled into the binary (DejaVu Sans, see
//! `assets/LICENSE`) through plotters' `ab_glyph` renderer, so drawing needs
//! no fontconfig and no system font: it works on a bare Debian and in a slim
//! container image.

use std::path::Path;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use plotters::coord::ranged1d::SegmentValue;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::{FontStyle, register_font};

use crate::error::{InsightsError, Result};

/// The chart's title.
const CHART_TITLE: &str = "Completed sessions per country (top 10)";
/// Width and height in pixels.
const CHART_SIZE: (u32, u32) = (1000, 600);
/// The family every text of the chart uses; plotters' own defaults (tick
/// labels) ask for it too, so the bundled font is registered under it.
const FONT_FAMILY: &str = "sans-serif";
const BUNDLED_FONT: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");
const BAR_COLOUR: RGBColor = RGBColor(31, 119, 180);

/// Draws one bar per `(country, count)` in the given order, the count written
/// above each bar, and writes the chart to `path` as a PNG (whatever the
/// file's extension), creating its folder if needed.
///
/// The file is written to a sibling temporary file first and renamed into
/// place, so `path` never holds a half-drawn chart. An empty `bars` gives an
/// empty chart with its title and "no completed sessions".
pub fn render_chart(path: &Path, bars: &[(String, u64)]) -> Result<()> {
    let drawing_failed = |message: String| InsightsError::Chart { path: path.to_path_buf(), message };
    register_bundled_font().map_err(drawing_failed)?;

    let Some(file_name) = path.file_name() else {
        return Err(drawing_failed("the path does not name a file".to_string()));
    };
    let folder = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(folder).map_err(InsightsError::chart_io("creating", folder))?;

    // plotters picks the image format from the extension: the staging file
    // ends in `.png`, and the rename keeps whatever name the caller chose.
    static STAGING_COUNTER: AtomicU64 = AtomicU64::new(0);
    let staging = folder.join(format!(
        ".{}.{}-{}.tmp.png",
        file_name.to_string_lossy(),
        std::process::id(),
        STAGING_COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    if let Err(error) = draw(&staging, bars) {
        // plotters may have saved a partial image while unwinding its backend.
        let _ = std::fs::remove_file(&staging);
        return Err(drawing_failed(error));
    }
    std::fs::rename(&staging, path).map_err(|source| {
        let _ = std::fs::remove_file(&staging);
        InsightsError::ChartIo { action: "writing", path: path.to_path_buf(), source }
    })
}

/// Registers the bundled font with plotters, once per process.
fn register_bundled_font() -> Result<(), String> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let is_registered = *REGISTERED.get_or_init(|| register_font(FONT_FAMILY, FontStyle::Normal, BUNDLED_FONT).is_ok());
    if is_registered { Ok(()) } else { Err("the bundled DejaVu Sans font is unreadable".to_string()) }
}

/// Draws the chart into `file` (which must end in `.png`).
fn draw(file: &Path, bars: &[(String, u64)]) -> Result<(), String> {
    let failed = |error: &dyn std::fmt::Display| error.to_string();
    let root = BitMapBackend::new(file, CHART_SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(|error| failed(&error))?;

    let tallest = bars.iter().map(|(_, count)| *count).max().unwrap_or(0);
    // Headroom above the tallest bar for its count; at least 1 so that an
    // empty or all-zero chart still has a y range.
    let y_top = tallest.saturating_add(tallest / 8).saturating_add(1);
    // One slot per bar. plotters maps a one-value axis to a single point, so
    // there are always at least two slots (a lone bar takes the left half).
    let slots = u32::try_from(bars.len().max(2)).map_err(|error| failed(&error))?;

    // As a discrete axis, `0..slots - 1` holds `slots` values, and segmenting
    // gives one segment per value: bar `i` spans `Exact(i)..Exact(i + 1)`.
    let mut chart = ChartBuilder::on(&root)
        .caption(CHART_TITLE, (FONT_FAMILY, 28))
        .margin(20)
        .x_label_area_size(50)
        .y_label_area_size(80)
        .build_cartesian_2d((0..slots - 1).into_segmented(), 0..y_top)
        .map_err(|error| failed(&error))?;
    let country_of = |slot: &SegmentValue<u32>| match slot {
        SegmentValue::CenterOf(index) => {
            bars.get(*index as usize).map(|(country, _)| country.clone()).unwrap_or_default()
        }
        SegmentValue::Exact(_) | SegmentValue::Last => String::new(),
    };
    chart
        .configure_mesh()
        .disable_x_mesh()
        .light_line_style(TRANSPARENT)
        .x_labels(bars.len().max(1))
        .x_label_formatter(&country_of)
        .x_desc("country")
        .y_desc("completed sessions")
        .label_style((FONT_FAMILY, 16))
        .axis_desc_style((FONT_FAMILY, 16))
        .draw()
        .map_err(|error| failed(&error))?;

    chart
        .draw_series(bars.iter().zip(0u32..).map(|((_, count), slot)| {
            let mut bar = Rectangle::new(
                [(SegmentValue::Exact(slot), 0), (SegmentValue::Exact(slot + 1), *count)],
                BAR_COLOUR.filled(),
            );
            bar.set_margin(0, 0, 12, 12);
            bar
        }))
        .map_err(|error| failed(&error))?;
    let count_style = (FONT_FAMILY, 16).into_font().color(&BLACK).pos(Pos::new(HPos::Center, VPos::Bottom));
    chart
        .draw_series(bars.iter().zip(0u32..).map(|((_, count), slot)| {
            EmptyElement::at((SegmentValue::CenterOf(slot), *count))
                + Text::new(count.to_string(), (0, -4), count_style.clone())
        }))
        .map_err(|error| failed(&error))?;

    if bars.is_empty() {
        let (width, height) = CHART_SIZE;
        let centred = (FONT_FAMILY, 20).into_font().color(&BLACK).pos(Pos::new(HPos::Center, VPos::Center));
        let middle = (i32::try_from(width / 2).unwrap_or(0), i32::try_from(height / 2).unwrap_or(0));
        root.draw(&Text::new("no completed sessions", middle, centred)).map_err(|error| failed(&error))?;
    }

    root.present().map_err(|error| failed(&error))
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn staging_files(folder: &Path) -> Vec<PathBuf> {
        let entries = std::fs::read_dir(folder).unwrap();
        entries.map(|entry| entry.unwrap().path()).filter(|path| path.to_string_lossy().ends_with(".tmp.png")).collect()
    }

    #[test]
    fn the_bundled_font_registers() {
        assert_eq!(register_bundled_font(), Ok(()));
    }

    #[test]
    fn no_staging_file_is_left_behind() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("chart.png");
        render_chart(&path, &[("IT".to_string(), 3)]).unwrap();
        assert!(path.is_file());
        assert_eq!(staging_files(dir.path()), Vec::<PathBuf>::new());
    }

    #[test]
    fn a_chart_path_without_png_extension_is_still_a_png() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("chart.out");
        render_chart(&path, &[("IT".to_string(), 3)]).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
    }
}
