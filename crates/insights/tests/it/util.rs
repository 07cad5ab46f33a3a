//! Shared helpers: a lake built from a generated file, PNG decoding.

use std::collections::HashSet;
use std::path::Path;

use sessionlake_generator::{GeneratorConfig, Truth, generate_file};
use sessionlake_lake::Lake;
use sessionlake_lake::landing::{Ingest, Source};
use sessionlake_lake::raw::RawStage;
use sessionlake_lake::sessions::SessionsStage;

/// Which stages [`generated_lake`] runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stages {
    /// Ingest and raw: the gold table does not exist yet.
    UpToRaw,
    /// Ingest, raw and sessions.
    UpToSessions,
}

/// A lake under `dir` holding a generated file taken through `stages`, and
/// the file's truth.
pub async fn generated_lake(dir: &Path, sessions: u64, seed: u64, anomaly_rate: f64, stages: Stages) -> (Lake, Truth) {
    let file = dir.join(format!("events-{seed}.jsonl.bz2"));
    let truth = generate_file(&GeneratorConfig { sessions, seed, anomaly_rate }, &file).expect("generate");
    let lake = Lake::new(dir.join("lake"));
    Ingest { lake: lake.clone(), source: Source::File(file), show_progress: false }.run().await.expect("ingest");
    RawStage { lake: lake.clone(), debug: false, chunk_limits: Default::default(), show_progress: false }
        .run()
        .await
        .expect("raw");
    if stages == Stages::UpToSessions {
        SessionsStage {
            lake: lake.clone(),
            max_versions_per_batch: 8,
            max_rows_per_batch: 400_000,
            max_batches: sessionlake_model::crash::StopAfter::NEVER,
            show_progress: false,
        }
        .run()
        .await
        .expect("sessions");
    }
    (lake, truth)
}

/// A decoded PNG: its size and its RGB(A) pixels.
pub struct Png {
    pub width: u32,
    pub height: u32,
    pub colours: HashSet<Vec<u8>>,
    /// Pixels that are not pure white.
    pub inked_pixels: usize,
}

/// Reads `path`, checks the PNG signature and decodes the first frame.
pub fn decode_png(path: &Path) -> Png {
    let bytes = std::fs::read(path).unwrap_or_else(|error| panic!("reading {}: {error}", path.display()));
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "{} lacks the PNG signature", path.display());
    let mut reader = png::Decoder::new(bytes.as_slice()).read_info().expect("a valid PNG header");
    let mut pixels = vec![0; reader.output_buffer_size()];
    let frame = reader.next_frame(&mut pixels).expect("a valid PNG frame");
    let channels = frame.color_type.samples();
    assert!(channels >= 3 && frame.bit_depth == png::BitDepth::Eight, "{:?} {:?}", frame.color_type, frame.bit_depth);
    let pixels = &pixels[..frame.buffer_size()];
    let colours: HashSet<Vec<u8>> = pixels.chunks_exact(channels).map(|pixel| pixel[..3].to_vec()).collect();
    let inked_pixels = pixels.chunks_exact(channels).filter(|pixel| pixel[..3] != [255, 255, 255]).count();
    Png { width: frame.width, height: frame.height, colours, inked_pixels }
}
