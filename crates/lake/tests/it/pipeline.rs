//! The whole chain on generated data with anomalies equals the truth,
//! table by table, exactly.

use std::path::Path;

use sessionlake_generator::Truth;
use sessionlake_lake::Lake;

use crate::util::{count, counts, generated, ingest, raw, rows, sessions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_dataset_lands_exactly_as_the_truth_says() {
    let dir = tempfile::tempdir().unwrap();
    let (file, truth) = generated(dir.path(), 4_000, 11, 0.04);
    lands_exactly(&Lake::new(dir.path().join("lake")), &file, &truth).await;
}

/// Ingest, raw and sessions of `file` into the empty `lake` give exactly
/// what `truth` says, table by table (a local lake or one on S3).
pub async fn lands_exactly(lake: &Lake, file: &Path, truth: &Truth) {
    let lake = lake.clone();
    ingest(&lake, file).await;

    let report = raw(&lake, false).await;
    assert_eq!(report.lines, truth.lines);
    assert_eq!(report.inserted, truth.raw_rows);
    assert_eq!(report.rejected, truth.rejected_rows);
    assert_eq!(report.duplicates, truth.duplicate_lines);
    assert_eq!(report.rejected_by_reason, truth.rejected_by_reason);
    assert_eq!(report.inserted + report.rejected + report.duplicates, report.lines, "every line ends somewhere");

    assert_eq!(count(&lake, "SELECT COUNT(*) FROM r_session_events").await, truth.raw_rows);
    assert_eq!(count(&lake, "SELECT COUNT(DISTINCT \"UNIQUE_ID_ROW\") FROM r_session_events").await, truth.raw_rows);
    assert_eq!(count(&lake, "SELECT COUNT(*) FROM r_session_events_rejected").await, truth.rejected_rows);
    assert_eq!(
        counts(&lake, "SELECT reason, COUNT(*) FROM r_session_events_rejected GROUP BY reason").await,
        truth.rejected_by_reason
    );
    let by_date =
        counts(&lake, "SELECT CAST(\"EVENT_DATE\" AS VARCHAR), COUNT(*) FROM r_session_events GROUP BY 1").await;
    assert_eq!(by_date, truth.raw_rows_by_date);

    let report = sessions(&lake, None).await;
    assert_eq!(report.raw_rows, truth.raw_rows);
    assert_eq!(report.inserted, truth.sessions);
    assert_eq!(count(&lake, "SELECT COUNT(*) FROM uc_delta_session_events").await, truth.sessions);
    assert_eq!(count(&lake, "SELECT COUNT(DISTINCT session_id) FROM uc_delta_session_events").await, truth.sessions);
    assert_eq!(
        count(&lake, "SELECT COUNT(*) FROM uc_delta_session_events WHERE start_ts IS NOT NULL").await,
        truth.started_sessions
    );
    assert_eq!(
        count(&lake, "SELECT COUNT(*) FROM uc_delta_session_events WHERE session_status = 1").await,
        truth.completed_sessions
    );
    assert_eq!(
        count(&lake, "SELECT COUNT(*) FROM uc_delta_session_events WHERE end_ts IS NOT NULL").await,
        truth.completed_sessions
    );
    let by_country = counts(
        &lake,
        "SELECT country, COUNT(*) FROM uc_delta_session_events WHERE session_status = 1 AND country IS NOT NULL GROUP BY country",
    )
    .await;
    assert_eq!(by_country, truth.completed_by_country);
    let top_players: Vec<(String, u64)> = rows(
        &lake,
        "SELECT player_id, COUNT(*) AS n FROM uc_delta_session_events WHERE session_status = 1 \
         GROUP BY player_id ORDER BY n DESC, player_id ASC LIMIT 10",
    )
    .await
    .into_iter()
    .map(|row| (row[0].clone(), row[1].parse().unwrap()))
    .collect();
    assert_eq!(top_players, truth.completed_by_player_top10);
    let top_country = rows(
        &lake,
        "SELECT country, COUNT(*) AS n FROM uc_delta_session_events WHERE start_ts >= TIMESTAMP '2016-01-01T00:00:00Z' \
         AND start_ts < TIMESTAMP '2017-01-01T00:00:00Z' GROUP BY country ORDER BY n DESC, country ASC LIMIT 1",
    )
    .await;
    assert_eq!(top_country.first().map(|row| row[0].clone()), truth.top_start_country_2016);
    let sessions_by_date =
        counts(&lake, "SELECT CAST(\"EVENT_DATE\" AS VARCHAR), COUNT(*) FROM uc_delta_session_events GROUP BY 1").await;
    assert_eq!(sessions_by_date, truth.sessions_by_event_date);
    let misfiled = count(
        &lake,
        "SELECT COUNT(*) FROM uc_delta_session_events WHERE \"EVENT_DATE\" <> CAST(COALESCE(start_ts, end_ts) AS DATE)",
    )
    .await;
    assert_eq!(misfiled, 0, "a session is filed under its start's date, else its end's");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debug_mode_merges_only_event_dates_five_to_seven() {
    let dir = tempfile::tempdir().unwrap();
    let (file, truth) = generated(dir.path(), 1_500, 5, 0.0);
    let lake = Lake::new(dir.path().join("lake"));
    ingest(&lake, &file).await;
    let report = raw(&lake, true).await;
    let slice: Vec<(&String, &u64)> = truth.raw_rows_by_date.iter().skip(4).take(3).collect();
    assert_eq!(report.dates_merged, 3);
    assert_eq!(report.inserted, slice.iter().map(|(_, n)| **n).sum::<u64>());
    let dates =
        rows(&lake, "SELECT DISTINCT CAST(\"EVENT_DATE\" AS VARCHAR) AS d FROM r_session_events ORDER BY d").await;
    let expected: Vec<Vec<String>> = slice.iter().map(|(date, _)| vec![(*date).clone()]).collect();
    assert_eq!(dates, expected);

    // A full run afterwards completes the rest, and no date twice.
    let report = raw(&lake, false).await;
    assert_eq!(report.inserted, truth.raw_rows - slice.iter().map(|(_, n)| **n).sum::<u64>());
    assert_eq!(count(&lake, "SELECT COUNT(*) FROM r_session_events").await, truth.raw_rows);
}
