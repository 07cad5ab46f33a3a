//! Progress bars for the long stages. Hidden when stderr is not a terminal
//! (CI, tests), so logs stay clean.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

fn draw_target(visible: bool) -> ProgressDrawTarget {
    if visible { ProgressDrawTarget::stderr() } else { ProgressDrawTarget::hidden() }
}

/// A byte-counting bar (downloads, decompression); drawn only when `visible`.
pub fn bytes_bar(total: Option<u64>, message: &'static str, visible: bool) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(total, draw_target(visible));
    let template = if total.is_some() {
        "{msg:>10} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}"
    } else {
        "{msg:>10} {spinner} {bytes} {bytes_per_sec}"
    };
    bar.set_style(ProgressStyle::with_template(template).expect("valid template").progress_chars("=> "));
    bar.set_message(message);
    bar
}

/// A bar counting steps (micro-batches); drawn only when `visible`.
pub fn steps_bar(total: u64, message: &'static str, visible: bool) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(total), draw_target(visible));
    bar.set_style(
        ProgressStyle::with_template("{msg:>10} [{bar:30}] {pos}/{len} {wide_msg}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.set_message(message);
    bar
}
