//! The input files of the torture tests: generated events (with every
//! kind of bad line) cut down to a few event dates, so that a whole
//! pipeline run takes seconds, split in two files whose sessions straddle
//! them.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use crate::support::sessionlake;

/// Sessions generated before the files are cut down to a few dates.
const GENERATED_SESSIONS: &str = "8000";
/// Event dates kept: few, so a run is quick (a few hundred lines per file).
const KEPT_DATES: [&str; 3] = ["2016-11-01", "2016-11-02", "2016-11-03"];

/// The two input files, with events of a few dates (and the undated bad
/// lines), alternating lines: a session's start and end often land in
/// different files.
pub fn dataset(dir: &Path, seed: u64) -> [PathBuf; 2] {
    let generated = dir.join("generated.jsonl.bz2");
    let output = sessionlake(
        dir,
        &[
            "generate",
            "--out",
            &generated.display().to_string(),
            "--sessions",
            GENERATED_SESSIONS,
            "--seed",
            &seed.to_string(),
            "--anomaly-rate",
            "0.03",
        ],
    )
    .output()
    .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let reader = std::io::BufReader::new(bzip2::read::MultiBzDecoder::new(std::fs::File::open(&generated).unwrap()));
    let files = [dir.join("events-a.jsonl.bz2"), dir.join("events-b.jsonl.bz2")];
    let mut writers = files
        .clone()
        .map(|path| bzip2::write::BzEncoder::new(std::fs::File::create(path).unwrap(), bzip2::Compression::fast()));
    let mut kept = 0usize;
    for line in reader.split(b'\n') {
        let line = line.unwrap();
        let text = String::from_utf8_lossy(&line);
        let dated = text.contains("\"ts\":\"2016-") || text.contains("\"ts\":\"2015-");
        if dated && !KEPT_DATES.iter().any(|date| text.contains(&format!("\"ts\":\"{date}"))) {
            continue;
        }
        let writer = &mut writers[kept % 2];
        writer.write_all(&line).unwrap();
        writer.write_all(b"\n").unwrap();
        kept += 1;
    }
    for writer in writers {
        writer.finish().unwrap();
    }
    files
}
