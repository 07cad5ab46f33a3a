//! Progress of the long stages, reported, never drawn: a stage asks for a
//! [`Progress`] (bytes or steps) and moves it along; whoever runs the stage
//! decides how to show it by installing a [`ProgressDisplay`] once per
//! process (the binary draws bars with indicatif, as delta-rs and DataFusion
//! leave drawing to their callers). With no display installed, or for a
//! stage told not to show progress, every call is a no-op.

use std::sync::{Arc, OnceLock};

/// What a [`Progress`] counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressUnit {
    /// Bytes (downloads, decompression), of a known total or not.
    Bytes,
    /// Steps (micro-batches, rows written).
    Steps,
}

/// One task's progress as a display receives it.
pub trait ProgressView: Send + Sync {
    /// Sets how many units are done.
    fn set_position(&self, position: u64);
    /// Counts `delta` more units done.
    fn inc(&self, delta: u64);
    /// Counts `delta` more units to do.
    fn inc_length(&self, delta: u64);
    /// Says what the task is doing now.
    fn set_message(&self, message: String);
    /// The task is over: stop showing it.
    fn finish(&self);
}

/// Shows the tasks of a process: the binary installs one with
/// [`set_display`].
pub trait ProgressDisplay: Send + Sync {
    /// Starts showing a task of `unit`s with `total` units to do (if known),
    /// named `label`.
    fn start(&self, unit: ProgressUnit, total: Option<u64>, label: &'static str) -> Arc<dyn ProgressView>;
}

static DISPLAY: OnceLock<Box<dyn ProgressDisplay>> = OnceLock::new();

/// Installs the process's display; `false` when one was installed already
/// (the first one stays).
pub fn set_display(display: Box<dyn ProgressDisplay>) -> bool {
    DISPLAY.set(display).is_ok()
}

/// A task's progress; cheap to clone (clones report to the same task).
#[derive(Clone, Default)]
pub struct Progress {
    view: Option<Arc<dyn ProgressView>>,
}

impl std::fmt::Debug for Progress {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("Progress").field("shown", &self.view.is_some()).finish()
    }
}

impl Progress {
    /// A task that is not shown.
    pub fn hidden() -> Self {
        Self::default()
    }

    fn start(unit: ProgressUnit, total: Option<u64>, label: &'static str, visible: bool) -> Self {
        let view = visible.then(|| DISPLAY.get()).flatten().map(|display| display.start(unit, total, label));
        Self { view }
    }

    /// Sets how many units are done.
    pub fn set_position(&self, position: u64) {
        if let Some(view) = &self.view {
            view.set_position(position);
        }
    }

    /// Counts `delta` more units done.
    pub fn inc(&self, delta: u64) {
        if let Some(view) = &self.view {
            view.inc(delta);
        }
    }

    /// Counts `delta` more units to do.
    pub fn inc_length(&self, delta: u64) {
        if let Some(view) = &self.view {
            view.inc_length(delta);
        }
    }

    /// Says what the task is doing now.
    pub fn set_message(&self, message: impl Into<String>) {
        if let Some(view) = &self.view {
            view.set_message(message.into());
        }
    }

    /// The task is over: stop showing it.
    pub fn finish_and_clear(&self) {
        if let Some(view) = &self.view {
            view.finish();
        }
    }
}

/// A byte-counting task (downloads, decompression), shown only when `visible`.
pub fn bytes_bar(total: Option<u64>, label: &'static str, visible: bool) -> Progress {
    Progress::start(ProgressUnit::Bytes, total, label, visible)
}

/// A step-counting task (micro-batches, rows), shown only when `visible`.
pub fn steps_bar(total: u64, label: &'static str, visible: bool) -> Progress {
    Progress::start(ProgressUnit::Steps, Some(total), label, visible)
}
