//! The one configuration type: command-line flags, each also readable from
//! a `SESSIONLAKE_*` environment variable, with defaults for a local run.

use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, Utc};
use clap::{Args, Parser, Subcommand};
use sessionlake_cassandra::Consistency;
use sessionlake_lake::Lake;
use sessionlake_lake::raw::ChunkLimits;

/// The URL of the real data file (DATA.md).
pub const DEFAULT_SOURCE: &str = "https://cdn.unityads.unity3d.com/assignments/assignment_data.jsonl.bz2";

/// sessionlake: a lakehouse for player-session events.
///
/// Data flows landing → raw → sessions (Delta Lake tables under --lake) → serve (Cassandra).
#[derive(Debug, Parser)]
#[command(name = "sessionlake", version, about, long_about = None)]
pub struct Config {
    /// Settings shared by every command.
    #[command(flatten)]
    pub global: GlobalArgs,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Settings shared by every command.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Root of the lake (zones and tables live under it): a folder, or
    /// `s3://bucket/prefix` (endpoint and credentials from the standard
    /// `AWS_*` variables, e.g. AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID,
    /// AWS_SECRET_ACCESS_KEY, AWS_REGION, AWS_ALLOW_HTTP).
    #[arg(long, global = true, env = "SESSIONLAKE_LAKE", default_value = "./data_lake", value_parser = lake_location)]
    pub lake: Lake,
    /// Debug mode: the raw stage merges only event dates 5 to 7 of each file.
    #[arg(long, global = true, env = "SESSIONLAKE_DEBUG", default_value_t = false)]
    pub debug: bool,
    /// Most lines of a landed file the raw stage reads and merges at once
    /// (one MERGE commit per chunk; memory follows the chunk, not the file).
    #[arg(long, global = true, env = "SESSIONLAKE_RAW_CHUNK_LINES", default_value_t = ChunkLimits::default().max_lines, value_parser = clap::value_parser!(u64).range(1..))]
    pub raw_chunk_lines: u64,
    /// Most decompressed MiB of a landed file in one raw chunk (at most 512,
    /// which keeps every Arrow column under its 2 GiB offset limit).
    #[arg(long, global = true, env = "SESSIONLAKE_RAW_CHUNK_MB", default_value_t = ChunkLimits::default().max_bytes >> 20, value_parser = clap::value_parser!(u64).range(1..=512))]
    pub raw_chunk_mb: u64,
    /// CPU priority (nice, 0 to 19) of background work: the `--follow`
    /// stages and the API's folds of posted events into the raw table, so
    /// that on a shared machine requests are answered first. On Linux that
    /// work also runs under the `SCHED_BATCH` policy (its wake-ups never
    /// preempt a request). 0 keeps the priority and policy the process
    /// started with; a higher start value is kept.
    #[arg(long, global = true, env = "SESSIONLAKE_BACKGROUND_NICE", default_value_t = 10, value_parser = clap::value_parser!(i32).range(0..=19))]
    pub background_nice: i32,
    /// The service clock, an RFC 3339 instant (real UTC time when unset).
    #[arg(long, global = true, env = "SESSIONLAKE_NOW")]
    pub now: Option<DateTime<Utc>>,
    /// Print each command's report as one JSON object on stdout.
    #[arg(long, global = true, env = "SESSIONLAKE_JSON", default_value_t = false)]
    pub json: bool,
    /// Hide progress bars (they are hidden anyway when stderr is not a terminal).
    #[arg(long, global = true, env = "SESSIONLAKE_QUIET", default_value_t = false)]
    pub quiet: bool,
    /// Log filter (tracing env-filter syntax), e.g. `info` or `sessionlake_lake=debug`.
    /// The default hides the Delta kernel's error log of probing a table that
    /// does not exist yet (on every table creation) and MERGE's warnings about
    /// its own internal metrics.
    #[arg(
        long,
        global = true,
        env = "SESSIONLAKE_LOG",
        default_value = "warn,tower_http::trace=info,sessionlake_api=info,buoyant_kernel::snapshot::builder=off,deltalake_core::operations::merge=error,deltalake_core::writer::stats=error,scylla=error"
    )]
    pub log: String,
}

/// The subcommands, in data-flow order.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write a deterministic bzip2 JSON Lines file of session events, and its ground truth.
    Generate(GenerateArgs),
    /// Land a file or URL into landingzone/ (atomic, idempotent, with a manifest).
    Ingest(IngestArgs),
    /// Parse landed files into r_session_events and r_session_events_rejected
    /// (a file that does not decompress is quarantined: see `quarantine`).
    Raw(RawArgs),
    /// Landed files that do not decompress: list them with the reason, retry or drop one.
    Quarantine(QuarantineArgs),
    /// Fold new raw versions into uc_delta_session_events (one row per session).
    Sessions(SessionsArgs),
    /// Create or re-create the Cassandra keyspace and serving tables.
    Db(DbArgs),
    /// Stream new gold versions into the Cassandra serving tables.
    Serve(ServeArgs),
    /// Serve the REST API (reads from Cassandra, POST /events into the raw table).
    Api(ApiArgs),
    /// The whole pipeline once: ingest, raw, sessions, serve; then a summary.
    Run(RunArgs),
    /// `run`, then keep sessions and serve following and serve the API, in one process.
    Up(Box<UpArgs>),
    /// The five questions about the data (DataFusion SQL over the gold table), with a bar chart.
    Insights(InsightsArgs),
    /// Run ad-hoc SQL over the lake tables (r_session_events, r_session_events_rejected, uc_delta_session_events).
    Sql(SqlArgs),
    /// Table upkeep: compact small files, vacuum old unreferenced files, checkpoint and clean the log,
    /// keeping what a lagging `sessions` or `serve` still needs.
    Maintain(MaintainArgs),
}

impl Command {
    /// Whether the whole command is background work: a stage that follows
    /// its input (`raw`, `sessions` or `serve` with `--follow`).
    pub fn is_background(&self) -> bool {
        match self {
            Command::Raw(args) => args.follow,
            Command::Sessions(args) => args.follow,
            Command::Serve(args) => args.follow,
            _ => false,
        }
    }
}

/// `generate` options.
#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// Output file (bzip2-compressed JSON Lines).
    #[arg(long, env = "SESSIONLAKE_GENERATE_OUT", default_value = "assignment_data.jsonl.bz2")]
    pub out: PathBuf,
    /// Number of sessions (full size is 500,000, like the real file).
    #[arg(long, env = "SESSIONLAKE_GENERATE_SESSIONS", default_value_t = 500_000)]
    pub sessions: u64,
    /// Random seed: the same seed writes the same bytes.
    #[arg(long, env = "SESSIONLAKE_GENERATE_SEED", default_value_t = 42)]
    pub seed: u64,
    /// Share of anomalous lines (0 to 1); every kind of bad input of DATA.md appears when > 0.
    #[arg(long, env = "SESSIONLAKE_GENERATE_ANOMALY_RATE", default_value_t = 0.0)]
    pub anomaly_rate: f64,
    /// Where to write the ground truth as JSON (optional).
    #[arg(long, env = "SESSIONLAKE_GENERATE_TRUTH")]
    pub truth: Option<PathBuf>,
}

/// `ingest` options.
#[derive(Debug, Args)]
pub struct IngestArgs {
    /// A URL (http/https) or a local file path.
    #[arg(long, env = "SESSIONLAKE_SOURCE", default_value = DEFAULT_SOURCE)]
    pub source: String,
    /// Instead of one source: keep landing the files that appear in this
    /// folder, until Ctrl-C or SIGTERM (see --settle-seconds).
    #[command(flatten)]
    pub watch: WatchArgs,
    /// How a URL is downloaded.
    #[command(flatten)]
    pub download: DownloadArgs,
}

/// Watching a folder for files to land (`ingest --watch`, `up --watch`).
#[derive(Debug, Clone, Args)]
pub struct WatchArgs {
    /// A folder whose new files are landed as they arrive: complete files
    /// only (names like `.x`, `x.tmp` or `x.part` are still being written;
    /// write under such a name, then rename).
    #[arg(long = "watch", env = "SESSIONLAKE_WATCH_DIR")]
    pub dir: Option<PathBuf>,
    /// Seconds a watched file's size and modification time must stay the
    /// same before it is landed (for writers that append under the final name).
    #[arg(long = "settle-seconds", env = "SESSIONLAKE_WATCH_SETTLE_SECONDS", default_value = "2", value_parser = seconds)]
    pub settle: Duration,
    /// Seconds between two looks at the watched folder (at least 0.05).
    #[arg(long = "watch-poll-seconds", env = "SESSIONLAKE_WATCH_POLL_SECONDS", default_value = "1", value_parser = seconds)]
    pub poll: Duration,
}

/// `raw` options.
#[derive(Debug, Args)]
pub struct RawArgs {
    /// Keep refining files as they land instead of stopping when done.
    #[arg(long, env = "SESSIONLAKE_FOLLOW", default_value_t = false)]
    pub follow: bool,
    /// Seconds between looks at the landing zone with --follow (at least 0.05).
    #[arg(long, env = "SESSIONLAKE_POLL_SECONDS", default_value = "0.25", value_parser = seconds)]
    pub poll_seconds: Duration,
}

/// How a URL source is downloaded (`ingest`, `run`, `up`).
#[derive(Debug, Clone, Args)]
pub struct DownloadArgs {
    /// Seconds a download may go without receiving a byte (before the
    /// response or during the body) before it fails.
    #[arg(
        long = "download-idle-timeout-seconds",
        env = "SESSIONLAKE_DOWNLOAD_IDLE_TIMEOUT_SECONDS",
        default_value = "60",
        value_parser = seconds
    )]
    pub idle_timeout: Duration,
}

/// `quarantine` options.
#[derive(Debug, Args)]
pub struct QuarantineArgs {
    /// What to do with the quarantine.
    #[command(subcommand)]
    pub action: QuarantineAction,
}

/// `quarantine` subcommands.
#[derive(Debug, Subcommand)]
pub enum QuarantineAction {
    /// The quarantined files, each with its SHA-256 and the reason it does not decompress.
    List,
    /// Release a quarantined file: the next `raw` reads it again (and quarantines it again if it still fails).
    Retry(QuarantinedFileArg),
    /// Give a quarantined file up for good: it is marked done without data, never read nor listed again
    /// (its row in r_session_events_rejected stays, as the record of what was lost).
    Drop(QuarantinedFileArg),
}

/// Which quarantined file.
#[derive(Debug, Args)]
pub struct QuarantinedFileArg {
    /// The landed file: its name (as `quarantine list` shows it), its path, or its SHA-256.
    #[arg(env = "SESSIONLAKE_QUARANTINE_FILE")]
    pub file: String,
}

/// `sessions` options.
#[derive(Debug, Args)]
pub struct SessionsArgs {
    /// Keep polling for new raw versions instead of stopping when caught up.
    #[arg(long, env = "SESSIONLAKE_FOLLOW", default_value_t = false)]
    pub follow: bool,
    /// Seconds between polls with --follow (at least 0.05).
    #[arg(long, env = "SESSIONLAKE_POLL_SECONDS", default_value = "0.25", value_parser = seconds)]
    pub poll_seconds: Duration,
    /// How raw versions are grouped into gold MERGEs.
    #[command(flatten)]
    pub batching: SessionsBatching,
    /// Stop after this many micro-batches (for crash tests).
    #[cfg(feature = "crash-points")]
    #[arg(long, hide = true, env = "SESSIONLAKE_MAX_BATCHES")]
    pub max_batches: Option<u64>,
}

/// How the sessions stage groups raw versions into gold MERGEs.
#[derive(Debug, Clone, Args)]
pub struct SessionsBatching {
    /// Most raw versions folded into one gold MERGE.
    #[arg(long, env = "SESSIONLAKE_MAX_VERSIONS_PER_BATCH", default_value_t = 16)]
    pub max_versions_per_batch: u64,
    /// About how many raw rows one gold MERGE takes (bounds memory; the
    /// versions per micro-batch adapt to it).
    #[arg(long, env = "SESSIONLAKE_MAX_ROWS_PER_BATCH", default_value_t = 400_000)]
    pub max_rows_per_batch: u64,
}

/// How to reach Cassandra (the serving store).
#[derive(Debug, Args)]
pub struct CassandraArgs {
    /// Contact points, comma-separated `host:port`.
    #[arg(
        long = "cassandra-nodes",
        env = "SESSIONLAKE_CASSANDRA_NODES",
        default_value = "127.0.0.1:9042",
        value_delimiter = ','
    )]
    pub nodes: Vec<String>,
    /// Cassandra user (PasswordAuthenticator).
    #[arg(long = "cassandra-user", env = "SESSIONLAKE_CASSANDRA_USER", default_value = "cassandra")]
    pub user: String,
    /// Cassandra password (prefer the environment variable: flags show in `ps`).
    #[arg(
        long = "cassandra-password",
        env = "SESSIONLAKE_CASSANDRA_PASSWORD",
        default_value = "cassandra",
        hide_env_values = true,
        hide_default_value = true
    )]
    pub password: String,
    /// Keyspace of the serving tables.
    #[arg(long, env = "SESSIONLAKE_CASSANDRA_KEYSPACE", default_value = sessionlake_model::tables::cassandra::KEYSPACE)]
    pub keyspace: String,
    /// Replication of the keyspace when it is created (a CQL map).
    #[arg(long, env = "SESSIONLAKE_CASSANDRA_REPLICATION", default_value = sessionlake_cassandra::CassandraConfig::DEFAULT_REPLICATION)]
    pub replication: String,
    /// Seconds a command waits for an unreachable Cassandra before giving up
    /// (`--follow` runs wait for ever).
    #[arg(long, env = "SESSIONLAKE_CASSANDRA_WAIT_SECONDS", default_value_t = 300)]
    pub cassandra_wait_seconds: u64,
    /// Consistency of the API's reads (LOCAL_QUORUM: with replication 3,
    /// one node may be down; ONE, QUORUM, ALL, ... also work).
    #[arg(long, env = "SESSIONLAKE_READ_CONSISTENCY", default_value = "LOCAL_QUORUM", value_parser = read_consistency)]
    pub read_consistency: Consistency,
    /// Consistency of `serve`'s writes (LOCAL_QUORUM; a node that missed a
    /// write gets it from the others' hints when it is back).
    #[arg(long, env = "SESSIONLAKE_WRITE_CONSISTENCY", default_value = "LOCAL_QUORUM", value_parser = write_consistency)]
    pub write_consistency: Consistency,
    /// Seconds one Cassandra write may take, retries on other nodes
    /// included, before `serve` backs off and tries again (at least 0.05).
    #[arg(long, env = "SESSIONLAKE_CASSANDRA_WRITE_TIMEOUT_SECONDS", default_value = "10", value_parser = seconds)]
    pub write_timeout_seconds: Duration,
}

fn read_consistency(text: &str) -> Result<Consistency, String> {
    sessionlake_cassandra::config::parse_consistency(text, true)
}

fn write_consistency(text: &str) -> Result<Consistency, String> {
    sessionlake_cassandra::config::parse_consistency(text, false)
}

/// `db` options.
#[derive(Debug, Args)]
pub struct DbArgs {
    /// What to do with the schema.
    #[command(subcommand)]
    pub action: DbAction,
}

/// `db` subcommands.
#[derive(Debug, Subcommand)]
pub enum DbAction {
    /// Create the keyspace and tables if missing (idempotent).
    Init(CassandraArgs),
    /// Drop the serving tables (rows and serve progress) and create them again.
    Reset(CassandraArgs),
}

/// `serve` options.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Where Cassandra is.
    #[command(flatten)]
    pub cassandra: CassandraArgs,
    /// Keep polling for new gold versions instead of stopping when caught up.
    #[arg(long, env = "SESSIONLAKE_FOLLOW", default_value_t = false)]
    pub follow: bool,
    /// Seconds between polls with --follow (at least 0.05).
    #[arg(long, env = "SESSIONLAKE_POLL_SECONDS", default_value = "0.25", value_parser = seconds)]
    pub poll_seconds: Duration,
    /// How rows are written.
    #[command(flatten)]
    pub writes: ServeWrites,
    /// Stop after this many CQL requests, without recording progress (crash tests).
    #[cfg(feature = "crash-points")]
    #[arg(long, hide = true, env = "SESSIONLAKE_SERVE_STOP_AFTER_REQUESTS")]
    pub stop_after_requests: Option<u64>,
}

/// How the serve stage writes to Cassandra.
#[derive(Debug, Clone, Args)]
pub struct ServeWrites {
    /// CQL requests in flight at once.
    #[arg(long, env = "SESSIONLAKE_SERVE_CONCURRENCY", default_value_t = 64)]
    pub concurrency: usize,
    /// Most rows per single-partition batch.
    #[arg(long, env = "SESSIONLAKE_SERVE_BATCH_ROWS", default_value_t = 16)]
    pub batch_rows: usize,
    /// Most gold versions read per range.
    #[arg(long, env = "SESSIONLAKE_SERVE_MAX_VERSIONS", default_value_t = 4)]
    pub max_versions_per_range: i64,
}

/// `api` options.
#[derive(Debug, Args)]
pub struct ApiArgs {
    /// Where Cassandra is.
    #[command(flatten)]
    pub cassandra: CassandraArgs,
    /// How the API serves.
    #[command(flatten)]
    pub options: ApiOptions,
}

/// How the API serves (shared by `api` and `up`).
#[derive(Debug, Args)]
pub struct ApiOptions {
    /// Address to listen on (`host:port`; port 0 picks a free one).
    #[arg(long, env = "SESSIONLAKE_API_ADDR", default_value = "127.0.0.1:8000")]
    pub addr: std::net::SocketAddr,
    /// API keys, comma-separated; when any is set, every route but /health,
    /// /ready, /docs and /openapi.json needs one in `X-API-Key`.
    #[arg(long, env = "SESSIONLAKE_API_KEYS", hide_env_values = true)]
    pub api_keys: Option<String>,
    /// A file of API keys (one per line, or comma-separated), added to --api-keys.
    #[arg(long, env = "SESSIONLAKE_API_KEYS_FILE")]
    pub api_keys_file: Option<PathBuf>,
    /// Secret that signs page tokens; give every API process the same one
    /// (random per process when unset: tokens then die with the process).
    #[arg(long, env = "SESSIONLAKE_API_TOKEN_SECRET", hide_env_values = true)]
    pub token_secret: Option<String>,
    /// Seconds a request may take before it is answered 503 (at least 0.1).
    #[arg(long, env = "SESSIONLAKE_API_REQUEST_TIMEOUT_SECONDS", default_value = "10", value_parser = seconds)]
    pub request_timeout_seconds: Duration,
    /// Seconds a Cassandra read may take (at least 0.05).
    #[arg(long, env = "SESSIONLAKE_API_READ_TIMEOUT_SECONDS", default_value = "2", value_parser = seconds)]
    pub read_timeout_seconds: Duration,
    /// Largest request body, in bytes (413 above).
    #[arg(long, env = "SESSIONLAKE_API_MAX_BODY_BYTES", default_value_t = 65_536)]
    pub max_body_bytes: usize,
    /// Keep first pages of started sessions this many seconds and refresh
    /// them in the background (answers may be that old; 0, the default,
    /// reads Cassandra on every request).
    #[arg(long, env = "SESSIONLAKE_API_STARTED_CACHE_SECONDS", default_value = "0", value_parser = seconds)]
    pub started_cache_seconds: Duration,
    /// After this many live commits of posted events, compact the event
    /// dates they touched (in the background; 0 never compacts).
    #[arg(long, env = "SESSIONLAKE_API_COMPACT_AFTER_COMMITS", default_value_t = 64)]
    pub compact_after_commits: u64,
    /// When a `POST /events` is answered 202: `wal`, once its events are
    /// synced to this process's write-ahead log (a few ms; folded into the
    /// raw table every --wal-fold-seconds), or `commit`, once the raw
    /// table's commit that holds them is durable (~150 ms per group).
    #[arg(long, env = "SESSIONLAKE_API_ACK", value_enum, default_value = "wal")]
    pub ack: AckMode,
    /// The write-ahead log's folder: on a local disk, one per API process
    /// (a second process on it is refused). Default: `_wal/api` in a local
    /// lake, `./sessionlake-wal` with an object-store lake. A replica that
    /// is gone for good: start an API on its folder once, which folds it.
    #[arg(long, env = "SESSIONLAKE_WAL_DIR")]
    pub wal_dir: Option<PathBuf>,
    /// Seconds between two folds of the write-ahead log into the raw table
    /// (posted events show in the raw table within about this long).
    #[arg(long, env = "SESSIONLAKE_WAL_FOLD_SECONDS", default_value = "1", value_parser = seconds)]
    pub wal_fold_seconds: Duration,
    /// Seconds requests in flight get to finish after SIGTERM or Ctrl-C.
    #[arg(long, env = "SESSIONLAKE_API_SHUTDOWN_GRACE_SECONDS", default_value = "30", value_parser = seconds)]
    pub shutdown_grace_seconds: Duration,
}

/// `run` options.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// What to land: a URL (http/https) or a local file (default: the real
    /// data file's URL).
    #[arg(long, env = "SESSIONLAKE_SOURCE", conflicts_with = "generate")]
    pub source: Option<String>,
    /// Land a generated full-size file instead (offline); it is written to
    /// --generate-out once and reused while it exists.
    #[arg(long, env = "SESSIONLAKE_GENERATE", default_value_t = false)]
    pub generate: bool,
    /// Where --generate writes its file (its ground truth goes next to it, as `<name>.truth.json`).
    #[arg(long, env = "SESSIONLAKE_GENERATE_OUT", default_value = "assignment_data.jsonl.bz2")]
    pub generate_out: PathBuf,
    /// Sessions in the --generate file (full size: 500,000).
    #[arg(long, env = "SESSIONLAKE_GENERATE_SESSIONS", default_value_t = 500_000)]
    pub generate_sessions: u64,
    /// How a URL source is downloaded.
    #[command(flatten)]
    pub download: DownloadArgs,
    /// Where Cassandra is.
    #[command(flatten)]
    pub cassandra: CassandraArgs,
    /// How raw versions are grouped into gold MERGEs.
    #[command(flatten)]
    pub batching: SessionsBatching,
    /// How rows are written to Cassandra.
    #[command(flatten)]
    pub writes: ServeWrites,
}

/// `up` options.
#[derive(Debug, Args)]
pub struct UpArgs {
    /// The pipeline run that comes first.
    #[command(flatten)]
    pub run: RunArgs,
    /// How the API serves.
    #[command(flatten)]
    pub api: ApiOptions,
    /// Seconds between the looks of `raw`, `sessions` and `serve` for new
    /// landed files and versions (at least 0.05).
    #[arg(long, env = "SESSIONLAKE_POLL_SECONDS", default_value = "0.25", value_parser = seconds)]
    pub poll_seconds: Duration,
    /// Also land the files that appear in a folder (as `ingest --watch`).
    #[command(flatten)]
    pub watch: WatchArgs,
    /// Minutes between table upkeep passes (`maintain`, with the settings
    /// below) while `up` runs; 0 never maintains.
    #[arg(long, env = "SESSIONLAKE_MAINTAIN_EVERY_MINUTES", default_value_t = 60)]
    pub maintain_every_minutes: u64,
    /// How tables are maintained.
    #[command(flatten)]
    pub maintain: MaintainOptions,
}

/// `maintain` options.
#[derive(Debug, Args)]
pub struct MaintainArgs {
    /// How tables are maintained.
    #[command(flatten)]
    pub options: MaintainOptions,
    /// Report what would be compacted and removed; change nothing.
    #[arg(long, env = "SESSIONLAKE_MAINTAIN_DRY_RUN", default_value_t = false)]
    pub dry_run: bool,
    /// Where Cassandra is (serve's progress in the gold table).
    #[command(flatten)]
    pub cassandra: CassandraArgs,
}

/// How tables are maintained (`maintain`, and `up` on a schedule).
#[derive(Debug, Clone, Args)]
pub struct MaintainOptions {
    /// Files removed from a table longer ago than this many hours are deleted
    /// (versions newer than it stay readable by `sql --version`); what a
    /// lagging reader still needs is kept whatever its age.
    #[arg(long, env = "SESSIONLAKE_MAINTAIN_RETENTION_HOURS", default_value = "168", value_parser = hours)]
    pub retention_hours: Duration,
    /// Log entries older than this many hours are removed (before a
    /// checkpoint, never at or after a reader's position).
    #[arg(long, env = "SESSIONLAKE_MAINTAIN_LOG_RETENTION_HOURS", default_value = "720", value_parser = hours)]
    pub log_retention_hours: Duration,
    /// Size in MiB of the files compaction writes.
    #[arg(long, env = "SESSIONLAKE_MAINTAIN_TARGET_FILE_MB", default_value_t = 64)]
    pub target_file_mb: u64,
    /// A partition is compacted when it holds at least this many files
    /// smaller than the target (at least 2).
    #[arg(long, env = "SESSIONLAKE_MAINTAIN_MIN_FILES_TO_COMPACT", default_value_t = 4)]
    pub min_files_to_compact: usize,
    /// Write no checkpoint (the log then keeps every entry after the last one).
    #[arg(long, env = "SESSIONLAKE_MAINTAIN_NO_CHECKPOINT", default_value_t = false)]
    pub no_checkpoint: bool,
    /// Also remove what lagging readers (`sessions`, `serve`) still need:
    /// they then find the gap and must rebuild from a snapshot.
    #[arg(long, env = "SESSIONLAKE_MAINTAIN_IGNORE_LAGGING_READERS", default_value_t = false)]
    pub ignore_lagging_readers: bool,
    /// Seconds to wait for Cassandra when reading serve's progress; when it
    /// cannot be read, the gold table's history is kept within the retention
    /// only (the report says so).
    #[arg(long, env = "SESSIONLAKE_MAINTAIN_SERVE_PROGRESS_WAIT_SECONDS", default_value = "10", value_parser = seconds)]
    pub serve_progress_wait_seconds: Duration,
}

/// `insights` options.
#[derive(Debug, Args)]
pub struct InsightsArgs {
    /// Where the bar chart (PNG) of completed sessions per country is written.
    #[arg(long, env = "SESSIONLAKE_INSIGHTS_CHART", default_value = "completed_sessions_by_country.png")]
    pub chart: PathBuf,
}

/// `sql` options.
#[derive(Debug, Args)]
pub struct SqlArgs {
    /// The statement (DataFusion SQL; quote upper-case columns: "EVENT_DATE").
    #[arg(env = "SESSIONLAKE_SQL_STATEMENT")]
    pub statement: String,
    /// Output: an aligned table, CSV, or a JSON array (`--json` implies json).
    /// CSV and JSON are streamed as rows come; the table collects the whole
    /// result first to align its columns (mind big results).
    #[arg(long, env = "SESSIONLAKE_SQL_FORMAT", value_enum, default_value_t = SqlFormat::Table)]
    pub format: SqlFormat,
    /// Time travel: read this table at `--version`.
    #[arg(long, env = "SESSIONLAKE_SQL_TABLE", requires = "version")]
    pub table: Option<String>,
    /// Time travel: the Delta version of `--table` to read.
    #[arg(long, env = "SESSIONLAKE_SQL_VERSION", requires = "table")]
    pub version: Option<u64>,
}

/// When the API acknowledges posted events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AckMode {
    /// Once synced to the API's write-ahead log.
    Wal,
    /// Once the raw table's commit holding them is durable.
    Commit,
}

/// How `sql` prints its result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SqlFormat {
    /// An aligned text table.
    Table,
    /// CSV with a header line.
    Csv,
    /// One JSON array of objects.
    Json,
}

fn lake_location(text: &str) -> Result<Lake, String> {
    Lake::parse(text).map_err(|error| error.to_string())
}

/// Parses a number of hours (fractions allowed), checked as [`seconds`] are.
fn hours(text: &str) -> Result<Duration, String> {
    let value: f64 = text.trim().parse().map_err(|_| format!("{text:?} is not a number of hours"))?;
    if !value.is_finite() || value < 0.0 {
        return Err(format!("hours must be a finite number, 0 or more (got {text})"));
    }
    Duration::try_from_secs_f64(value.abs() * 3600.0)
        .map_err(|_| format!("{text} hours is more than a duration can hold"))
}

/// Parses a number of seconds (fractions allowed): finite, not negative,
/// and within what a [`Duration`] holds. `Duration::from_secs_f64` panics
/// on anything else, so every seconds flag goes through here.
fn seconds(text: &str) -> Result<Duration, String> {
    let value: f64 = text.trim().parse().map_err(|_| format!("{text:?} is not a number of seconds"))?;
    if !value.is_finite() || value < 0.0 {
        return Err(format!("seconds must be a finite number, 0 or more (got {text})"));
    }
    // `abs` turns -0 into 0.
    Duration::try_from_secs_f64(value.abs()).map_err(|_| format!("{text} seconds is more than a duration can hold"))
}
