//! The answers over a generated lake equal the generator's truth, exactly.

use sessionlake_insights::{InsightsError, compute};
use sessionlake_lake::Lake;
use sessionlake_lake::schema::SESSIONS;

use crate::util::{Stages, generated_lake};

fn has_a_tie(ranked: &[(String, u64)]) -> bool {
    ranked.windows(2).any(|pair| pair[0].1 == pair[1].1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_equal_the_generator_truth() {
    let dir = tempfile::tempdir().unwrap();
    let (lake, truth) = generated_lake(dir.path(), 3_000, 21, 0.02, Stages::UpToSessions).await;

    let mut by_country: Vec<(String, u64)> = truth.completed_by_country.clone().into_iter().collect();
    by_country.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    // The dataset must exercise the tie-breaks, or the orderings go untested.
    assert!(has_a_tie(&by_country[..by_country.len().min(11)]), "no tie among the top countries: {by_country:?}");
    assert!(has_a_tie(&truth.completed_by_player_top10), "no tie among the top players");
    by_country.truncate(10);
    assert!(truth.top_start_country_2016.is_some());

    let insights = compute(&lake).await.expect("compute");
    assert_eq!(insights.sessions, truth.sessions);
    assert_eq!(insights.completed_by_country_top10, by_country);
    assert_eq!(insights.completed_by_player_top10, truth.completed_by_player_top10);
    assert_eq!(insights.top_start_country_2016, truth.top_start_country_2016);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_lake_directory_says_to_run_the_pipeline() {
    let dir = tempfile::tempdir().unwrap();
    let error = compute(&Lake::new(dir.path())).await.expect_err("no table");
    assert!(matches!(error, InsightsError::NoSessionsTable), "{error:?}");
    assert_eq!(error.to_string(), "no sessions table yet: run `sessionlake run` (or ingest, raw, sessions) first");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lake_with_raw_but_no_gold_table_says_to_run_the_pipeline() {
    let dir = tempfile::tempdir().unwrap();
    let (lake, _) = generated_lake(dir.path(), 100, 3, 0.0, Stages::UpToRaw).await;
    let error = compute(&lake).await.expect_err("no gold table");
    assert!(matches!(error, InsightsError::NoSessionsTable), "{error:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_gold_table_gives_empty_answers() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::new(dir.path());
    lake.open_or_create(&SESSIONS).await.expect("create the gold table");
    let insights = compute(&lake).await.expect("compute");
    assert_eq!(insights.sessions, 0);
    assert_eq!(insights.completed_by_country_top10, Vec::<(String, u64)>::new());
    assert_eq!(insights.completed_by_player_top10, Vec::<(String, u64)>::new());
    assert_eq!(insights.top_start_country_2016, None);
}
