//! `sessionlake quarantine list|retry|drop`: the landed files that do not
//! decompress, which `raw` sets aside (with the decoder's complaint) instead
//! of failing on every run, and the two ways out: read it again, or give it
//! up for good.

use std::io::Write;

use anyhow::{Context, Result, bail};
use serde::Serialize;
use sessionlake_lake::raw::{Quarantine, QuarantineChange, QuarantinedFile};

use crate::config::{GlobalArgs, QuarantineAction, QuarantineArgs};
use crate::report;

/// What `quarantine list` prints.
#[derive(Debug, Serialize)]
struct ListReport<'a> {
    /// How many files are quarantined.
    files_quarantined: u64,
    /// Each, in landing order, with its reason.
    quarantined: &'a [QuarantinedFile],
}

/// What `quarantine retry` and `quarantine drop` print.
#[derive(Debug, Serialize)]
struct ChangeReport {
    /// `retry` or `drop`.
    action: &'static str,
    /// The landed file.
    file: String,
    /// Its SHA-256.
    sha256: String,
    /// Why it was quarantined.
    reason: String,
    /// What happens to it now.
    next: &'static str,
}

/// `sessionlake quarantine list|retry|drop`.
pub async fn quarantine(global: &GlobalArgs, args: &QuarantineArgs) -> Result<()> {
    let quarantine = Quarantine { lake: global.lake.clone() };
    let (action, wanted, change, next) = match &args.action {
        QuarantineAction::List => {
            let files = quarantine.list().await.context("while listing the quarantined files")?;
            print_list(global, &files);
            return Ok(());
        }
        QuarantineAction::Retry(target) => {
            let change = quarantine
                .retry(&target.file)
                .await
                .with_context(|| format!("while releasing {} for another try", target.file))?;
            ("retry", &target.file, change, "released: the next `sessionlake raw` reads it again")
        }
        QuarantineAction::Drop(target) => {
            let change =
                quarantine.drop_file(&target.file).await.with_context(|| format!("while dropping {}", target.file))?;
            let next = "dropped: never read again (its corrupt_file row in r_session_events_rejected stays)";
            ("drop", &target.file, change, next)
        }
    };
    let file = match change {
        QuarantineChange::Changed(file) => file,
        QuarantineChange::NotQuarantined { file } => {
            bail!("landed file {file} is not quarantined (`sessionlake quarantine list` shows the quarantined files)")
        }
        QuarantineChange::NotLanded => bail!(
            "no landed file is named or hashed {wanted:?} (`sessionlake quarantine list` shows the quarantined files)"
        ),
    };
    let outcome = ChangeReport { action, file: file.file, sha256: file.sha256, reason: file.reason, next };
    report::print(global, &format!("quarantine {action}"), &outcome);
    Ok(())
}

fn print_list(global: &GlobalArgs, files: &[QuarantinedFile]) {
    if global.json {
        report::print(global, "quarantine", &ListReport { files_quarantined: files.len() as u64, quarantined: files });
        return;
    }
    if files.is_empty() {
        println!("no quarantined files");
        return;
    }
    let rows: Vec<Vec<String>> =
        files.iter().map(|file| vec![file.file.clone(), file.sha256.clone(), file.reason.clone()]).collect();
    report::table(&["quarantined file", "sha256", "reason"], &rows);
    println!("\n{HOW_TO_RELEASE}");
}

/// The two ways out, as the user types them.
const HOW_TO_RELEASE: &str = "`sessionlake quarantine retry FILE` reads a file again on the next `raw`; \
                              `sessionlake quarantine drop FILE` gives it up for good";

/// One warning line on stderr per quarantined file (`raw` and `run` call
/// it on every run, not only the one that quarantined the file).
pub(crate) fn warn_quarantined(files: &[QuarantinedFile]) {
    for file in files {
        // One write per line, so other threads' output cannot land inside.
        let line = format!(
            "warning: landed file {} is quarantined (not read): {}; retry or drop it with \
             `sessionlake quarantine retry|drop {}`\n",
            file.file, file.reason, file.file
        );
        let _ = std::io::stderr().write_all(line.as_bytes());
    }
}
