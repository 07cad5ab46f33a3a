//! Drawing the stages' progress: the libraries report it
//! (`sessionlake_lake::progress`), the binary draws it with indicatif.
//! Every visible bar of the process is drawn in one group, so a whole `run`
//! is one display: its stages bar on top, the running stage's own bars
//! under it. Bars are hidden when stderr is not a terminal (CI, tests), so
//! logs stay clean.

use std::sync::{Arc, LazyLock};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use sessionlake_lake::progress::{ProgressDisplay, ProgressUnit, ProgressView};

static GROUP: LazyLock<MultiProgress> = LazyLock::new(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));

/// Installs the bars as the display of the libraries' progress.
pub fn install() {
    sessionlake_lake::progress::set_display(Box::new(Bars));
}

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

/// A byte-counting bar (downloads, decompression).
fn bytes_bar(total: Option<u64>, label: &'static str) -> ProgressBar {
    let bar = new_bar(total, true);
    let template = if total.is_some() {
        "{msg:>10} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}"
    } else {
        "{msg:>10} {spinner} {bytes} {bytes_per_sec}"
    };
    bar.set_style(ProgressStyle::with_template(template).expect("valid template").progress_chars("=> "));
    bar.set_message(label);
    bar
}

/// A bar counting steps (micro-batches, rows).
fn steps_bar(total: u64, label: &'static str) -> ProgressBar {
    let bar = new_bar(Some(total), true);
    bar.set_style(
        ProgressStyle::with_template("{msg:>10} [{bar:30}] {pos}/{len} {wide_msg}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.set_message(label);
    bar
}

/// The libraries' progress, drawn as bars.
struct Bars;

impl ProgressDisplay for Bars {
    fn start(&self, unit: ProgressUnit, total: Option<u64>, label: &'static str) -> Arc<dyn ProgressView> {
        let bar = match unit {
            ProgressUnit::Bytes => bytes_bar(total, label),
            ProgressUnit::Steps => steps_bar(total.unwrap_or(0), label),
        };
        Arc::new(Bar(bar))
    }
}

struct Bar(ProgressBar);

impl ProgressView for Bar {
    fn set_position(&self, position: u64) {
        self.0.set_position(position);
    }

    fn inc(&self, delta: u64) {
        self.0.inc(delta);
    }

    fn inc_length(&self, delta: u64) {
        self.0.inc_length(delta);
    }

    fn set_message(&self, message: String) {
        self.0.set_message(message);
    }

    fn finish(&self) {
        self.0.finish_and_clear();
    }
}
