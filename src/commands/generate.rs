//! `sessionlake generate`: a session-event file in the real format, with
//! its ground truth.

use anyhow::{Context, Result, bail};

use crate::config::{GenerateArgs, GlobalArgs};
use crate::report;

/// `sessionlake generate`.
pub fn generate(global: &GlobalArgs, args: &GenerateArgs) -> Result<()> {
    if !(0.0..=1.0).contains(&args.anomaly_rate) {
        bail!("--anomaly-rate must be between 0 and 1, got {}", args.anomaly_rate);
    }
    let started = std::time::Instant::now();
    let generator = sessionlake_generator::GeneratorConfig {
        sessions: args.sessions,
        seed: args.seed,
        anomaly_rate: args.anomaly_rate,
    };
    let truth = sessionlake_generator::generate_file(&generator, &args.out)
        .with_context(|| format!("while generating {}", args.out.display()))?;
    if let Some(path) = &args.truth {
        std::fs::write(path, truth.to_json_pretty())
            .with_context(|| format!("while writing the truth to {}", path.display()))?;
    }
    let summary = serde_json::json!({
        "out": args.out.display().to_string(),
        "truth": args.truth.as_ref().map(|path| path.display().to_string()),
        "lines": truth.lines,
        "sessions": truth.sessions,
        "raw_rows": truth.raw_rows,
        "rejected_rows": truth.rejected_rows,
        "seconds": started.elapsed().as_secs_f64(),
    });
    report::print(global, "generate", &summary);
    Ok(())
}
