//! Test fixtures shared by the lake's tests and the binary's torture suite
//! (cargo feature `testing`; a release build has none of it).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::lake::Lake;

/// A SeaweedFS S3 server of a test (`scripts/s3`, built once per machine),
/// on its own loopback address and state dir; stopped when dropped.
pub struct S3Server {
    home: tempfile::TempDir,
    address: String,
    /// What `scripts/s3 env` exports: endpoint, keys, region, plain HTTP.
    options: BTreeMap<String, String>,
}

impl S3Server {
    /// Starts a server on `address` (a 127.x.y.z no other test uses), with
    /// an empty bucket `lake`. Panics with the script's output if it fails.
    pub fn start(address: &str) -> Self {
        let home = tempfile::tempdir().expect("a temp dir");
        let mut server = Self { home, address: address.to_string(), options: BTreeMap::new() };
        server.expect_success(&["start"]);
        let env = String::from_utf8(server.script(&["env"]).stdout).expect("UTF-8 from scripts/s3 env");
        server.options = env
            .lines()
            .filter_map(|line| line.strip_prefix("export ")?.split_once('='))
            .filter(|(key, _)| *key != "AWS_DEFAULT_REGION")
            .map(|(key, value)| (key.to_string(), value.to_string()))
            .collect();
        server
    }

    /// Stops the server (SIGTERM); [`S3Server::restart`] brings it back
    /// with its data.
    pub fn stop(&self) {
        self.expect_success(&["stop"]);
    }

    /// Starts the server again on the same data.
    pub fn restart(&self) {
        self.expect_success(&["start"]);
    }

    /// The AWS settings that reach this server (`AWS_ENDPOINT_URL`, keys,
    /// region, `AWS_ALLOW_HTTP`), for a child process's environment or a
    /// lake's storage options.
    pub fn options(&self) -> &BTreeMap<String, String> {
        &self.options
    }

    /// The location `s3://lake/<prefix>` of this server.
    pub fn location(&self, prefix: &str) -> String {
        format!("s3://lake/{prefix}")
    }

    /// A lake under `s3://lake/<prefix>` of this server.
    pub fn lake(&self, prefix: &str) -> Lake {
        Lake::parse(&self.location(prefix)).expect("an s3:// location").with_storage_options(self.options.clone())
    }

    fn expect_success(&self, args: &[&str]) {
        let output = self.script(args);
        assert!(
            output.status.success(),
            "scripts/s3 {} failed:\n{}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    fn script(&self, args: &[&str]) -> Output {
        Command::new(script_path())
            .args(args)
            .env("S3_ADDRESS", &self.address)
            .env("S3_HOME_DIR", self.home.path())
            .output()
            .expect("scripts/s3 runs")
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.script(&["stop"]);
    }
}

fn script_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/s3")
}
