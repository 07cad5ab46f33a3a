//! Security against the real Cassandra (the API crate's tests cover the
//! HTTP side: keys never logged, constant-time checks, validation before
//! any read, no internals in answers): Cassandra credentials come from the
//! configuration and are never echoed; the reads bind every value, so
//! quotes and CQL keywords in a value are only data.

use std::path::Path;
use std::time::Duration;

use serde_json::json;
use sessionlake_cassandra::read::{SessionReader, StartedWindow};
use sessionlake_cassandra::{CassandraConfig, Consistency};

use crate::report;
use crate::support::*;

#[tokio::test(flavor = "multi_thread")]
async fn credentials_come_from_configuration_and_are_never_echoed() {
    let dir = tempfile::tempdir().unwrap();
    let secret = "not-the-password-5f3a9c";
    let db_init = |password: &str| {
        sessionlake(dir.path(), &["db", "init", "--cassandra-nodes", &nodes(), "--cassandra-wait-seconds", "5"])
            .env("SESSIONLAKE_CASSANDRA_PASSWORD", password)
            .output()
            .unwrap()
    };
    let refused = db_init(secret);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1), "a wrong password from the environment is refused: {stderr}");
    assert!(stderr.to_lowercase().contains("auth") || stderr.to_lowercase().contains("login"), "{stderr}");
    assert!(!stderr.contains(secret) && !String::from_utf8_lossy(&refused.stdout).contains(secret), "{stderr}");
    assert!(db_init("cassandra").status.success(), "the configured password is the one used");

    let help =
        sessionlake(dir.path(), &["serve", "--help"]).env("SESSIONLAKE_CASSANDRA_PASSWORD", secret).output().unwrap();
    assert!(!String::from_utf8_lossy(&help.stdout).contains(secret), "--help hides the password's value");

    // No credential is written into the code outside the configuration's defaults.
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut offenders = Vec::new();
    for dir in ["src", "crates/api/src", "crates/cassandra/src", "crates/serving/src", "crates/lake/src"] {
        for file in rust_files(&root.join(dir)) {
            if file.ends_with("src/config.rs") {
                continue;
            }
            let text = std::fs::read_to_string(&file).unwrap();
            if text.contains(".user(\"") || text.contains("password: \"") || text.contains("\"cassandra\".") {
                offenders.push(file.display().to_string());
            }
        }
    }
    assert!(offenders.is_empty(), "credentials in code: {offenders:?}");
    report::record(
        "security",
        json!({"what": "Cassandra credentials from configuration, never echoed", "equal": true}),
    );
}

fn rust_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|extension| extension == "rs") {
            files.push(path);
        }
    }
    files
}

#[tokio::test(flavor = "multi_thread")]
async fn quotes_and_cql_in_values_are_only_data() {
    let lake = PreparedLake::new(300, 71);
    let nodes = nodes();
    let keyspace = keyspace("injection");
    report(lake.serve(&nodes, &keyspace, &[]));
    let session = connect(&nodes).await;
    let before = dump(&session, &keyspace).await;
    assert!(!before.completed.is_empty());
    let reader = SessionReader::prepare(session.clone(), &cassandra_config(&nodes, &keyspace), Duration::from_secs(5))
        .await
        .unwrap();
    let real_player = before.completed.iter().next().unwrap().0.clone();
    let hostile = [
        format!("{real_player}' OR '1'='1"),
        format!("{real_player}'; DROP TABLE {keyspace}.api_completed_sessions; --"),
        "' OR 1=1 ALLOW FILTERING --".to_string(),
        format!("{real_player}\" OR \"\"=\""),
        "'); TRUNCATE api_start_session_by_day; --".to_string(),
        "IT' AND start_day > 0 ALLOW FILTERING; --".to_string(),
        "\\'; DELETE FROM serve_progress; --".to_string(),
    ];
    let now_ms = 1_478_476_800_000;
    let mut probes = 0;
    for value in &hostile {
        let completed = reader.completed(value, None, 20).await.unwrap();
        assert!(completed.items.is_empty(), "{value:?} is only a value: {:?}", completed.items.len());
        let window = StartedWindow::last_hours(value.clone(), now_ms, 24);
        let started = reader.started(&window, None, 1000).await.unwrap();
        assert!(started.items.is_empty(), "{value:?} is only a value");
        probes += 2;
    }
    let after = dump(&session, &keyspace).await;
    assert_eq!(after, before, "nothing was dropped, truncated or deleted");
    report::record(
        "security",
        json!({"what": "CQL in read values against the real Cassandra", "probes": probes, "equal": after == before}),
    );
    drop_keyspace(&session, &keyspace).await;
}

/// The binary's default settings for `nodes` and `keyspace`.
pub fn cassandra_config(nodes: &str, keyspace: &str) -> CassandraConfig {
    CassandraConfig {
        nodes: nodes.split(',').map(str::to_string).collect(),
        user: "cassandra".into(),
        password: "cassandra".into(),
        keyspace: keyspace.into(),
        replication: CassandraConfig::DEFAULT_REPLICATION.into(),
        connect_timeout: Duration::from_secs(5),
        read_consistency: Consistency::LocalQuorum,
        write_consistency: Consistency::LocalQuorum,
        write_timeout: Duration::from_secs(10),
    }
}
