//! The chart is a PNG of 1000x600 pixels with something drawn on it, even
//! with no bars; file-system failures come back as errors naming the path.

use sessionlake_insights::{InsightsError, render_chart};

use crate::util::decode_png;

fn ten_countries() -> Vec<(String, u64)> {
    ["IT", "FR", "DE", "ES", "US", "GB", "BR", "JP", "CN", "IN"]
        .iter()
        .zip([9_120, 8_004, 8_004, 5_310, 4_000, 3_999, 1_200, 800, 12, 0])
        .map(|(country, count)| (country.to_string(), count))
        .collect()
}

#[test]
fn chart_is_a_png_with_bars_drawn() {
    let dir = tempfile::tempdir().unwrap();
    let with_bars = dir.path().join("bars.png");
    let empty = dir.path().join("empty.png");
    render_chart(&with_bars, &ten_countries()).expect("render");
    render_chart(&empty, &[]).expect("render empty");

    let with_bars = decode_png(&with_bars);
    assert_eq!((with_bars.width, with_bars.height), (1000, 600));
    assert!(with_bars.colours.len() > 2, "{} colours", with_bars.colours.len());
    let empty = decode_png(&empty);
    // Ten bars cover far more of the picture than axes and text alone.
    assert!(
        with_bars.inked_pixels > empty.inked_pixels + 100_000,
        "bars {} vs empty {}",
        with_bars.inked_pixels,
        empty.inked_pixels
    );
}

#[test]
fn empty_bars_give_a_valid_png_with_the_title() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("empty.png");
    render_chart(&path, &[]).expect("render");
    let png = decode_png(&path);
    assert_eq!((png.width, png.height), (1000, 600));
    assert!(png.colours.len() > 1, "only {:?}", png.colours);
    assert!(png.inked_pixels > 1_000, "the title and axes are drawn");
}

#[test]
fn missing_folders_are_created_and_an_old_chart_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("reports/2016/chart.png");
    render_chart(&path, &[]).expect("render into new folders");
    render_chart(&path, &ten_countries()).expect("render over the old chart");
    assert!(decode_png(&path).inked_pixels > 100_000);
}

#[test]
fn a_folder_that_is_a_file_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("blocker");
    std::fs::write(&blocker, b"not a folder").unwrap();
    let error = render_chart(&blocker.join("chart.png"), &ten_countries()).expect_err("cannot create the folder");
    assert!(matches!(error, InsightsError::ChartIo { .. }), "{error:?}");
    assert!(error.to_string().contains(&blocker.display().to_string()), "{error}");
}

#[test]
fn a_chart_path_that_is_a_folder_is_an_error_and_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("chart.png");
    std::fs::create_dir(&folder).unwrap();
    let error = render_chart(&folder, &ten_countries()).expect_err("cannot replace a folder");
    assert!(error.to_string().contains(&folder.display().to_string()), "{error}");
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|entry| entry.unwrap().file_name()).collect();
    assert_eq!(left, vec![std::ffi::OsString::from("chart.png")]);
}

#[test]
fn extreme_counts_still_draw() {
    let dir = tempfile::tempdir().unwrap();
    for tallest in [0, 1, 7, 1_000_000_000_000, u64::MAX] {
        let path = dir.path().join(format!("chart-{tallest}.png"));
        render_chart(&path, &[("IT".to_string(), tallest), ("FR".to_string(), 0)]).expect("render");
        assert_eq!(decode_png(&path).width, 1000);
    }
}
