//! How long checking an API key takes, by how much of the guess is right
//! and by which configured key matches: a benchmark that prints numbers,
//! not a test (timing on a shared machine is no pass/fail criterion; the
//! deterministic test that every key is compared is in `src/auth.rs`).
//!
//! ```sh
//! cargo run --release -p sessionlake-api --example key_check_timing
//! ```
//!
//! Each line gives the median nanoseconds per call of each arm and their
//! spread (largest / smallest median). The arms of the real check should
//! have a spread near 1; a naive `==` is measured alongside to show what an
//! early exit looks like (a spread of 10 or more).

use std::hint::black_box;
use std::time::{Duration, Instant};

use sessionlake_api::ApiKeys;

/// Median nanoseconds per call of each arm: `rounds` rounds, each timing a
/// batch of `batch` calls of every arm in turn (the order rotating), so that
/// a busy machine slows all arms alike.
fn median_nanos(arms: &[&dyn Fn() -> bool], batch: usize, rounds: usize) -> Vec<f64> {
    let mut samples = vec![Vec::with_capacity(rounds); arms.len()];
    for round in 0..rounds {
        for turn in 0..arms.len() {
            let arm = (round + turn) % arms.len();
            let started = Instant::now();
            for _ in 0..batch {
                black_box(arms[arm]());
            }
            samples[arm].push(started.elapsed().as_nanos() as f64 / batch as f64);
        }
    }
    samples
        .into_iter()
        .map(|mut times| {
            times.sort_by(f64::total_cmp);
            times[times.len() / 2]
        })
        .collect()
}

/// Calls per batch so that a batch of `call` takes about 2 ms.
fn batch_for(call: &dyn Fn() -> bool) -> usize {
    let started = Instant::now();
    let mut calls = 0;
    while started.elapsed() < Duration::from_millis(20) {
        black_box(call());
        calls += 1;
    }
    (calls / 10).max(1)
}

/// Largest median over smallest.
fn spread(medians: &[f64]) -> f64 {
    let max = medians.iter().copied().fold(f64::MIN, f64::max);
    let min = medians.iter().copied().fold(f64::MAX, f64::min);
    max / min
}

fn measure(what: &str, arms: &[&dyn Fn() -> bool]) {
    let medians = median_nanos(arms, batch_for(arms[0]), 101);
    println!("{what:<48} ns per call {medians:>8.0?}  spread {:.3}", spread(&medians));
}

/// A key of `length` lowercase letters.
fn long_key(length: usize, seed: u8) -> String {
    (0..length).map(|index| (b'a' + ((index * 7 + usize::from(seed)) % 26) as u8) as char).collect()
}

/// `key` with the character at `index` changed.
fn changed_at(key: &str, index: usize) -> String {
    let mut bytes = key.as_bytes().to_vec();
    bytes[index] = if bytes[index] == b'Z' { b'Y' } else { b'Z' };
    String::from_utf8(bytes).expect("ASCII")
}

fn main() {
    // A long key magnifies any early exit: a guess right up to its last
    // character would take 16,383 byte comparisons longer.
    let key = long_key(16 * 1024, 3);
    let keys = ApiKeys::new([key.as_str()]);
    let wrong_first = changed_at(&key, 0);
    let wrong_last = changed_at(&key, key.len() - 1);
    assert!(keys.accepts(key.as_bytes()) && !keys.accepts(wrong_first.as_bytes()));
    measure(
        "16 KiB key: wrong first vs wrong last character",
        &[&|| keys.accepts(wrong_first.as_bytes()), &|| keys.accepts(wrong_last.as_bytes())],
    );
    let naive = |presented: &[u8]| presented == key.as_bytes();
    measure(
        "the same with a naive == (an early exit)",
        &[&|| naive(black_box(wrong_first.as_bytes())), &|| naive(black_box(wrong_last.as_bytes()))],
    );

    let many: Vec<String> = (0..256).map(|n| format!("key-{n:03}-{}", long_key(24, n as u8))).collect();
    let keys = ApiKeys::new(&many);
    let (first, last) = (many[0].as_str(), many[255].as_str());
    let wrong = changed_at(last, 5);
    measure(
        "256 keys: the first, the last, a wrong key",
        &[&|| keys.accepts(first.as_bytes()), &|| keys.accepts(last.as_bytes()), &|| keys.accepts(wrong.as_bytes())],
    );
    let one = ApiKeys::new([last]);
    measure(
        "1 key vs 256 keys, a wrong key (should differ)",
        &[&|| one.accepts(wrong.as_bytes()), &|| keys.accepts(wrong.as_bytes())],
    );
}
