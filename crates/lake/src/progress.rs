//! Progress bars for the long stages. Hidden when stderr is not a terminal
//! (CI, tests), so logs stay clean. Every visible bar of the process is
//! drawn in one group, so a whole `run` is one display: its stages bar on
//! top, the running stage's own bars under it.

use std::sync::LazyLock;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

static GROUP: LazyLock<MultiProgress> = LazyLock::new(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));

/// A bar in the process's group when `visible`, else hidden.
fn new_bar(total: Option<u64>, visible: bool) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(total, ProgressDrawTarget::hidden());
    if visible { GROUP.add(bar) } else { bar }
}

/// The bar of a pipeline run: one step per stage, the running stage as its
/// message; drawn only when `visible`.
pub fn stages_bar(total: u64, visible: bool) -> ProgressBar {
    let bar = new_bar(Some(total), visible);
    bar.set_style(
        ProgressStyle::with_template("{prefix:>10} [{bar:30}] {pos}/{len} {wide_msg} {elapsed}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.set_prefix("pipeline");
    bar.enable_steady_tick(std::time::Duration::from_millis(250));
    bar
}

/// A byte-counting bar (downloads, decompression); drawn only when `visible`.
pub fn bytes_bar(total: Option<u64>, message: &'static str, visible: bool) -> ProgressBar {
    let bar = new_bar(total, visible);
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
    let bar = new_bar(Some(total), visible);
    bar.set_style(
        ProgressStyle::with_template("{msg:>10} [{bar:30}] {pos}/{len} {wide_msg}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.set_message(message);
    bar
}
