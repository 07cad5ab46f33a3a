//! Fixtures for the serving tests: a lake prepared through the real binary,
//! a keyspace of its own per test on the real Cassandra, and the serving
//! rows the gold table predicts, computed here independently of `serve`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::DateTime;
use deltalake::arrow::array::{Array, AsArray};
use deltalake::arrow::compute::cast;
use deltalake::arrow::datatypes::{DataType, TimestampMicrosecondType};
use futures::TryStreamExt;
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use scylla::deserialize::row::DeserializeRow;
use scylla::serialize::row::SerializeRow;
use scylla::value::CqlTimestamp;
use serde_json::Value;
use sessionlake_lake::Lake;

/// The demo clock: the 2016 data is recent, 2015 stragglers are not.
pub const NOW: &str = "2016-11-07T00:00:00Z";

/// Fails loudly when the binary under test was built without its test
/// hooks (crash points, stop-after budgets): a crash test that cannot crash
/// proves nothing.
pub fn require_crash_points() {
    if !cfg!(feature = "crash-points") {
        panic!(
            "the binary under test has no crash points: run the tests with --features crash-points (make test does)"
        );
    }
}

/// The CQL contact point of the Cassandra the README test command started.
pub fn nodes() -> String {
    std::env::var("SESSIONLAKE_CASSANDRA_NODES").unwrap_or_else(|_| "127.0.0.1:9042".into())
}

/// The binary, with a clean environment for the settings tests control.
pub fn sessionlake(lake: impl AsRef<std::ffi::OsStr>, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_sessionlake"));
    // Followers at the default background priority could starve behind the
    // other tests' processes on a busy CI machine and miss their deadlines;
    // `cli` tests the priority itself.
    command
        .arg("--lake")
        .arg(lake)
        .arg("--json")
        .args(args)
        .env("SESSIONLAKE_NOW", NOW)
        .env("SESSIONLAKE_BACKGROUND_NICE", "0");
    for name in ["SESSIONLAKE_DEBUG", "SESSIONLAKE_FOLLOW", "SESSIONLAKE_CASSANDRA_KEYSPACE"] {
        command.env_remove(name);
    }
    command
}

/// Runs to completion and parses the JSON report, failing on a non-zero exit.
pub fn report(mut command: impl std::borrow::BorrowMut<Command>) -> Value {
    let output: Output = command.borrow_mut().output().expect("the binary runs");
    assert!(output.status.success(), "stderr: {}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).expect("one JSON report")
}

/// A lake holding generated data refined up to the gold table.
pub struct PreparedLake {
    /// Keeps the directory alive.
    pub dir: tempfile::TempDir,
    /// The lake root.
    pub lake: PathBuf,
    /// Truths of the files landed, in order.
    pub truths: Vec<Value>,
}

impl PreparedLake {
    /// Generates a file of `sessions` sessions with anomalies, and runs
    /// ingest → raw → sessions on it.
    pub fn new(sessions: u64, seed: u64) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let lake = dir.path().join("lake");
        let mut prepared = Self { dir, lake, truths: Vec::new() };
        prepared.add_file(sessions, seed);
        prepared
    }

    /// Lands one more generated file and refines it up to gold.
    pub fn add_file(&mut self, sessions: u64, seed: u64) {
        let (file, truth) = generate(self.dir.path(), sessions, seed);
        let file_arg = file.display().to_string();
        report(sessionlake(&self.lake, &["ingest", "--source", &file_arg]));
        report(sessionlake(&self.lake, &["raw"]));
        report(sessionlake(&self.lake, &["sessions"]));
        self.truths.push(truth);
    }

    /// Sum of a numeric truth field over the files landed.
    pub fn truth_sum(&self, field: &str) -> u64 {
        self.truths.iter().map(|truth| truth[field].as_u64().unwrap()).sum()
    }

    /// `serve` into `keyspace` at `nodes`, with extra arguments.
    pub fn serve(&self, nodes: &str, keyspace: &str, extra: &[&str]) -> Command {
        let mut args = vec!["serve", "--cassandra-nodes", nodes, "--keyspace", keyspace];
        args.extend_from_slice(extra);
        sessionlake(&self.lake, &args)
    }
}

/// A started row as (country, start_day, ts, session_id, player_id, start_ts, end_ts), times in ms.
pub type StartedRow = (String, i64, i64, String, String, Option<i64>, Option<i64>);
/// A completed row as (player_id, ts, session_id, country, start_ts, end_ts), times in ms.
pub type CompletedRow = (String, i64, String, Option<String>, Option<i64>, Option<i64>);

/// Serving rows, sorted.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ServingRows {
    /// `api_start_session_by_day`.
    pub started: BTreeSet<StartedRow>,
    /// `api_completed_sessions`.
    pub completed: BTreeSet<CompletedRow>,
}

/// What the serving tables must hold for the gold table of `lake`, with
/// the retention window of [`NOW`].
pub async fn expected_rows(lake: &Path) -> ServingRows {
    let batches = sessionlake_lake::query::sql(
        &Lake::new(lake),
        "SELECT session_id, player_id, country, start_ts, end_ts FROM uc_delta_session_events",
    )
    .await
    .unwrap();
    let cutoff = DateTime::parse_from_rfc3339("2015-11-07T00:00:00Z").unwrap().timestamp_micros();
    let ms = |micros: i64| micros.div_euclid(1000);
    let mut rows = ServingRows::default();
    for batch in &batches {
        // DataFusion may hand strings back as views: read them as plain UTF-8.
        let text = |index: usize| cast(batch.column(index), &DataType::Utf8).unwrap();
        let (session, player, country) = (text(0), text(1), text(2));
        let (session, player, country) =
            (session.as_string::<i32>(), player.as_string::<i32>(), country.as_string::<i32>());
        let start = batch.column(3).as_primitive::<TimestampMicrosecondType>();
        let end = batch.column(4).as_primitive::<TimestampMicrosecondType>();
        for row in 0..batch.num_rows() {
            let country = country.is_valid(row).then(|| country.value(row).to_string());
            let start = start.is_valid(row).then(|| start.value(row));
            let end = end.is_valid(row).then(|| end.value(row));
            if let (Some(start), Some(country)) = (start, &country)
                && start >= cutoff
            {
                let day = start.div_euclid(86_400_000_000) * 86_400_000;
                rows.started.insert((
                    country.clone(),
                    day,
                    ms(start),
                    session.value(row).to_string(),
                    player.value(row).to_string(),
                    Some(ms(start)),
                    end.map(ms),
                ));
            }
            if let Some(end) = end
                && end >= cutoff
            {
                rows.completed.insert((
                    player.value(row).to_string(),
                    ms(end),
                    session.value(row).to_string(),
                    country,
                    start.map(ms),
                    Some(ms(end)),
                ));
            }
        }
    }
    rows
}

/// A CQL session on `nodes` (comma-separated), logged in as the default
/// superuser.
pub async fn connect(nodes: &str) -> Arc<Session> {
    Arc::new(SessionBuilder::new().known_nodes(nodes.split(',')).user("cassandra", "cassandra").build().await.unwrap())
}

/// A keyspace name of this process for `test` (dropped by [`drop_keyspace`]).
pub fn keyspace(test: &str) -> String {
    format!("t_{test}_{}", std::process::id())
}

/// Drops a test keyspace.
pub async fn drop_keyspace(session: &Session, keyspace: &str) {
    session.query_unpaged(format!("DROP KEYSPACE IF EXISTS {keyspace}"), ()).await.unwrap();
}

/// A row of `api_start_session_by_day` as the driver reads it.
#[derive(scylla::DeserializeRow)]
struct StartedCql {
    country: String,
    start_day: CqlTimestamp,
    ts: CqlTimestamp,
    session_id: String,
    player_id: String,
    start_ts: Option<CqlTimestamp>,
    end_ts: Option<CqlTimestamp>,
}

/// A row of `api_completed_sessions` as the driver reads it.
#[derive(scylla::DeserializeRow)]
struct CompletedCql {
    player_id: String,
    ts: CqlTimestamp,
    session_id: String,
    country: Option<String>,
    start_ts: Option<CqlTimestamp>,
    end_ts: Option<CqlTimestamp>,
}

/// Every row a CQL query returns (paged).
pub async fn all_rows<R>(session: &Session, cql: String, values: impl SerializeRow) -> Vec<R>
where
    R: for<'frame, 'metadata> DeserializeRow<'frame, 'metadata>,
{
    session.query_iter(cql, values).await.unwrap().rows_stream().unwrap().try_collect().await.unwrap()
}

/// Everything in the two serving tables of `keyspace`.
pub async fn dump(session: &Session, keyspace: &str) -> ServingRows {
    let started: Vec<StartedCql> =
        all_rows(session, format!("SELECT * FROM {keyspace}.api_start_session_by_day"), ()).await;
    let completed: Vec<CompletedCql> =
        all_rows(session, format!("SELECT * FROM {keyspace}.api_completed_sessions"), ()).await;
    let ms = |ts: Option<CqlTimestamp>| ts.map(|ts| ts.0);
    ServingRows {
        started: started
            .into_iter()
            .map(|r| (r.country, r.start_day.0, r.ts.0, r.session_id, r.player_id, ms(r.start_ts), ms(r.end_ts)))
            .collect(),
        completed: completed
            .into_iter()
            .map(|r| (r.player_id, r.ts.0, r.session_id, r.country, ms(r.start_ts), ms(r.end_ts)))
            .collect(),
    }
}

/// Rows in the two serving tables of `keyspace`; `None` while they cannot
/// be read (the keyspace is not created yet, or a read fails).
pub async fn served_counts(session: &Session, keyspace: &str) -> Option<(u64, u64)> {
    let mut counts = [0u64; 2];
    for (slot, table) in counts.iter_mut().zip(["api_start_session_by_day", "api_completed_sessions"]) {
        let result = session.query_unpaged(format!("SELECT COUNT(*) FROM {keyspace}.{table}"), ()).await.ok()?;
        let (count,): (i64,) = result.into_rows_result().ok()?.single_row().ok()?;
        *slot = count as u64;
    }
    Some((counts[0], counts[1]))
}

/// A child process (a follower) killed when dropped, however the test ends.
pub struct KillOnDrop(pub std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Polls `probe` until it returns true, failing after `limit`.
pub async fn wait_until<F, Fut>(limit: Duration, what: &str, mut probe: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let started = Instant::now();
    while !probe().await {
        assert!(started.elapsed() < limit, "timed out after {limit:?} waiting until {what}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Rows of the raw table.
pub async fn raw_row_count(lake: &Path) -> u64 {
    let batches =
        sessionlake_lake::query::sql(&Lake::new(lake), "SELECT COUNT(*) AS n FROM r_session_events").await.unwrap();
    let column = cast(batches[0].column(0), &DataType::Int64).unwrap();
    column.as_primitive::<deltalake::arrow::datatypes::Int64Type>().value(0) as u64
}

/// A running `sessionlake api` on a free port; stopped (SIGTERM) when dropped.
pub struct ApiProcess {
    child: Option<std::process::Child>,
    /// `http://host:port`.
    pub base: String,
    log: tempfile::NamedTempFile,
    client: reqwest::Client,
}

impl ApiProcess {
    /// Starts the API on `lake`, reading `keyspace` at `nodes`, with `keys`
    /// (comma-separated) or none.
    pub fn start(lake: &Path, nodes: &str, keyspace: &str, keys: Option<&str>) -> Self {
        let mut command =
            sessionlake(lake, &["api", "--addr", "127.0.0.1:0", "--cassandra-nodes", nodes, "--keyspace", keyspace]);
        command.env_remove("SESSIONLAKE_API_KEYS").env_remove("SESSIONLAKE_API_KEYS_FILE");
        if let Some(keys) = keys {
            command.env("SESSIONLAKE_API_KEYS", keys);
        }
        Self::spawn(command, "API listening on ", Duration::from_secs(60))
    }

    /// Spawns `command` (an `api` or `up` on `--addr 127.0.0.1:0`) and waits
    /// up to `patience` for `marker` and the URL after it in its log.
    pub fn spawn(mut command: Command, marker: &str, patience: Duration) -> Self {
        let log = tempfile::NamedTempFile::new().unwrap();
        let child = command
            .env("SESSIONLAKE_LOG", "info")
            .stdout(std::process::Stdio::null())
            .stderr(log.reopen().unwrap())
            .spawn()
            .expect("the API starts");
        let started = Instant::now();
        let base = loop {
            let text = std::fs::read_to_string(log.path()).unwrap_or_default();
            if let Some(rest) = text.split(marker).nth(1) {
                break rest.split_whitespace().next().unwrap().to_string();
            }
            assert!(started.elapsed() < patience, "no {marker:?} in the log: {text}");
            std::thread::sleep(Duration::from_millis(50));
        };
        Self { child: Some(child), base, log, client: reqwest::Client::new() }
    }

    /// The log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap()
    }

    /// GET `path` (with an API key), as (status, JSON body or Null).
    pub async fn get(&self, path: &str, key: Option<&str>) -> (u16, Value) {
        let mut request = self.client.get(format!("{}{path}", self.base));
        if let Some(key) = key {
            request = request.header("x-api-key", key);
        }
        Self::answer(request.send().await.unwrap()).await
    }

    /// POST a JSON body to `path`.
    pub async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let request = self
            .client
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .body(body.to_string());
        Self::answer(request.send().await.unwrap()).await
    }

    async fn answer(response: reqwest::Response) -> (u16, Value) {
        let status = response.status().as_u16();
        let bytes = response.bytes().await.unwrap();
        (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }

    /// Waits until /ready says 200.
    pub async fn wait_ready(&self) {
        wait_until(Duration::from_secs(120), "the API is ready", || async { self.get("/ready", None).await.0 == 200 })
            .await;
    }

    /// Kills the API with SIGKILL (no shutdown of any kind) and returns its
    /// log.
    pub fn kill(mut self) -> String {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.log()
    }

    /// Stops the API with SIGTERM (graceful) and returns its log.
    pub fn stop(mut self) -> String {
        self.terminate();
        self.log()
    }

    fn terminate(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
            let started = Instant::now();
            while child.try_wait().unwrap().is_none() {
                if started.elapsed() > Duration::from_secs(30) {
                    let _ = child.kill();
                    panic!("the API did not stop within 30 s of SIGTERM");
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

impl Drop for ApiProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Generates `events-<seed>.jsonl.bz2` in `dir`: `sessions` sessions with 2%
/// anomalies. Returns the file's path and its truth.
pub fn generate(dir: &Path, sessions: u64, seed: u64) -> (PathBuf, Value) {
    let file = dir.join(format!("events-{seed}.jsonl.bz2"));
    let truth = dir.join(format!("truth-{seed}.json"));
    let (file_arg, truth_arg) = (file.display().to_string(), truth.display().to_string());
    let (sessions, seed) = (sessions.to_string(), seed.to_string());
    report(sessionlake(
        dir.join("unused-lake"),
        &[
            "generate",
            "--out",
            &file_arg,
            "--sessions",
            &sessions,
            "--seed",
            &seed,
            "--anomaly-rate",
            "0.02",
            "--truth",
            &truth_arg,
        ],
    ));
    let truth = serde_json::from_str(&std::fs::read_to_string(&truth).unwrap()).unwrap();
    (file, truth)
}
