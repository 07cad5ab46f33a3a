//! A steady load on both GET routes, from a bounded loop on 127.0.0.1:
//! workers on a fixed tick, each request counted by its status (0: no
//! answer within the client's timeout, or no connection).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::Mutex;
use tokio::task::JoinSet;

use crate::support::ServingRows;

/// Concurrent workers; the rate is split between them.
const WORKERS: u32 = 16;

/// What the load asks for: real countries and players of the served data.
#[derive(Debug, Clone)]
pub struct Targets {
    countries: Vec<String>,
    players: Vec<String>,
}

impl Targets {
    /// The 20 countries with the most started rows, and up to 50 players
    /// with completed sessions.
    pub fn from_served(served: &ServingRows) -> Self {
        let mut per_country: BTreeMap<&String, usize> = BTreeMap::new();
        for row in &served.started {
            *per_country.entry(&row.0).or_default() += 1;
        }
        let mut countries: Vec<(&String, usize)> = per_country.into_iter().collect();
        countries.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        let countries: Vec<String> = countries.into_iter().take(20).map(|(country, _)| country.clone()).collect();
        let mut players: Vec<String> = served.completed.iter().map(|row| row.0.clone()).collect();
        players.dedup();
        players.truncate(50);
        assert!(!countries.is_empty() && !players.is_empty(), "served data to ask for");
        Self { countries, players }
    }

    /// The busiest country's last 24 hours.
    pub fn started_path(&self) -> String {
        format!("/models/started_sessions/{}/24", self.countries[0])
    }

    /// Request `turn`: started (a country, 1 to 24 hours) and completed
    /// sessions in turn.
    fn path(&self, turn: usize) -> String {
        if turn.is_multiple_of(2) {
            let country = &self.countries[(turn / 2) % self.countries.len()];
            format!("/models/started_sessions/{country}/{}", (turn / 2) % 24 + 1)
        } else {
            format!("/models/completed-sessions/{}", self.players[(turn / 2) % self.players.len()])
        }
    }
}

/// Answers counted by status, and the first few that were not 200.
#[derive(Debug, Clone, Default)]
pub struct Statuses {
    /// Requests per status (0: no answer).
    pub counts: BTreeMap<u16, u64>,
    /// Up to 10 non-200 answers: (status, path, body or error).
    pub samples: Vec<(u16, String, String)>,
}

/// A running load; [`Load::stop`] ends it and returns the counts.
pub struct Load {
    done: Arc<AtomicBool>,
    statuses: Arc<Mutex<Statuses>>,
    workers: JoinSet<()>,
}

impl Load {
    /// Starts `rate` requests per second against `base`.
    pub fn start(base: &str, targets: Targets, rate: u32) -> Self {
        let done = Arc::new(AtomicBool::new(false));
        let statuses: Arc<Mutex<Statuses>> = Arc::default();
        let client = reqwest::Client::builder().timeout(Duration::from_secs(15)).build().unwrap();
        let tick = Duration::from_secs_f64(f64::from(WORKERS) / f64::from(rate));
        let mut workers = JoinSet::new();
        for worker in 0..WORKERS as usize {
            let (done, statuses, client, targets, base) =
                (done.clone(), statuses.clone(), client.clone(), targets.clone(), base.to_string());
            workers.spawn(async move {
                let mut interval = tokio::time::interval(tick);
                interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                for turn in (worker..).step_by(WORKERS as usize) {
                    interval.tick().await;
                    if done.load(Ordering::SeqCst) {
                        break;
                    }
                    let path = targets.path(turn);
                    let (status, detail) = match client.get(format!("{base}{path}")).send().await {
                        Ok(response) => {
                            let status = response.status().as_u16();
                            (status, response.text().await.unwrap_or_default())
                        }
                        Err(error) => (0, error.to_string()),
                    };
                    let mut statuses = statuses.lock().await;
                    *statuses.counts.entry(status).or_default() += 1;
                    if status != 200 && statuses.samples.len() < 10 {
                        statuses.samples.push((status, path, detail));
                    }
                }
            });
        }
        Self { done, statuses, workers }
    }

    /// Stops the workers (after their request in flight) and returns the counts.
    pub async fn stop(mut self) -> Statuses {
        self.done.store(true, Ordering::SeqCst);
        while let Some(joined) = self.workers.join_next().await {
            joined.unwrap();
        }
        self.statuses.lock().await.clone()
    }
}
