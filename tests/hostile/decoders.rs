//! The fuzz targets' bodies (`e2e/fuzz/src/lib.rs`, included here) over the
//! checked-in seeds and a few thousand deterministic mutations of them: the
//! quick form of `e2e/fuzz/run.sh`, part of `cargo test`. A failing input is
//! written under `target/tmp/` so that it can become a seed.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

#[path = "../../e2e/fuzz/src/lib.rs"]
mod targets;

/// Mutated inputs per target (each 1–4 mutations of a seed or of a cross of two).
const MUTATIONS: usize = 20_000;
/// Stop early past this, whatever is left (a slow machine still finishes).
const BUDGET: Duration = Duration::from_secs(10);

/// Pieces the mutator splices in: JSON syntax, names the decoders know, and
/// values that break naive decoders.
const TOKENS: &[&str] = &[
    "{",
    "}",
    "[",
    "]",
    ":",
    ",",
    "\"",
    "null",
    "true",
    "false",
    "0",
    "-0",
    "1e999",
    "-1e999",
    "1.5",
    "9223372036854775807",
    "-9223372036854775809",
    "18446744073709551616",
    "\"\\u0000\"",
    "\"\\ud800\"",
    "\"\\u202e\"",
    "\"\u{7}\"",
    "\"\u{85}\"",
    "\n",
    "\"job_id\"",
    "\"idempotency_key\"",
    "\"invocation_id\"",
    "\"arguments\"",
    "\"fields\"",
    "\"priority\"",
    "\"text\"",
    "\"eta\"",
    "\"parts\"",
    "\"items\"",
    "\"amount_cents\"",
    "\"quantity\"",
    "\"lat\"",
    "\"state\"",
    "\"limit\"",
    "\"P1\"",
    "\"pass\"",
    "\"approve\"",
    "\"2026-11-21T01:30:00Z\"",
    "\"2027-02-30\"",
    "\"+275760-09-13T00:00:00Z\"",
    "\"0b5e0c7e-3f7e-5d7a-9a52-3b0c0a9f1e21\"",
    "application/json",
    "text/plain",
    "http ",
    "mcp ",
    "agent ",
    "technician ",
    "admin ",
    "system ",
];

fn seeds(target: &str) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("e2e/fuzz/seeds")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let seeds: Vec<Vec<u8>> = files.iter().map(|f| std::fs::read(f).unwrap()).collect();
    assert!(
        seeds.len() >= 10,
        "{target}: too few seeds in {}",
        dir.display()
    );
    seeds
}

/// A large hostile value: long, with control characters and odd Unicode.
fn long_value(rng: &mut StdRng) -> Vec<u8> {
    let unit = [
        "x",
        "\\u0000",
        "\\u0007",
        "é",
        "\\ud83d\\ude00",
        "\\\"",
        "`",
    ][rng.gen_range(0..7)];
    let n = rng.gen_range(70..2000);
    let mut v = b"\"".to_vec();
    v.extend(unit.repeat(n).into_bytes());
    v.push(b'"');
    v
}

fn mutate(rng: &mut StdRng, input: &mut Vec<u8>, other: &[u8]) {
    for _ in 0..rng.gen_range(1..=4) {
        let len = input.len();
        let at = if len == 0 { 0 } else { rng.gen_range(0..=len) };
        match rng.gen_range(0..9) {
            0 if len > 0 => {
                let i = rng.gen_range(0..len);
                input[i] ^= 1 << rng.gen_range(0..8);
            }
            1 => input.insert(at, rng.gen()),
            2 if len > 0 => {
                let end = (at + rng.gen_range(1..16)).min(len);
                input.drain(at.min(end)..end);
            }
            3 if len > 0 => {
                let start = rng.gen_range(0..len);
                let end = (start + rng.gen_range(1..32)).min(len);
                let piece = input[start..end].to_vec();
                input.splice(at..at, piece);
            }
            4 | 5 => {
                let token = TOKENS[rng.gen_range(0..TOKENS.len())].as_bytes();
                input.splice(at..at, token.iter().copied());
            }
            6 => {
                // Replace a quoted string with a hostile one.
                let quotes: Vec<usize> = input
                    .iter()
                    .enumerate()
                    .filter(|(_, b)| **b == b'"')
                    .map(|(i, _)| i)
                    .collect();
                if quotes.len() >= 2 {
                    let k = rng.gen_range(0..quotes.len() - 1);
                    let value = long_value(rng);
                    input.splice(quotes[k]..=quotes[k + 1], value);
                }
            }
            7 if !other.is_empty() => {
                // Cross with another seed: its tail after a random point.
                let from = rng.gen_range(0..other.len());
                input.truncate(at);
                input.extend_from_slice(&other[from..]);
            }
            _ => {
                // Deep nesting.
                let depth = rng.gen_range(1..300);
                let open = if rng.gen() { b'[' } else { b'{' };
                input.splice(at..at, std::iter::repeat_n(open, depth));
            }
        }
    }
}

fn run(target: &str, body: fn(&[u8])) {
    let seeds = seeds(target);
    let check = |input: &[u8], what: &str| {
        if let Err(panic) = catch_unwind(AssertUnwindSafe(|| body(input))) {
            let file = Path::new(env!("CARGO_TARGET_TMPDIR"))
                .join(format!("hostile-{target}-failure.bin"));
            let _ = std::fs::write(&file, input);
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            panic!(
                "{target}: {what} broke an invariant: {message}\ninput (saved to {}): {:?}",
                file.display(),
                String::from_utf8_lossy(&input[..input.len().min(2000)])
            );
        }
    };
    for (i, seed) in seeds.iter().enumerate() {
        check(seed, &format!("seed {i}"));
    }
    let mut rng = StdRng::seed_from_u64(0x0d15_7a7c);
    let started = Instant::now();
    let mut done = 0;
    while done < MUTATIONS && started.elapsed() < BUDGET {
        let mut input = seeds[rng.gen_range(0..seeds.len())].clone();
        let other = &seeds[rng.gen_range(0..seeds.len())];
        mutate(&mut rng, &mut input, other);
        check(&input, &format!("mutation {done}"));
        done += 1;
    }
    println!(
        "{target}: {} seeds and {done} mutations, no invariant broken ({} ms)",
        seeds.len(),
        started.elapsed().as_millis()
    );
    assert!(
        done >= 500,
        "{target}: only {done} mutations ran within {BUDGET:?}"
    );
}

#[test]
fn command_decoder_survives_seeds_and_mutations() {
    run("command_decoder", targets::command_decoder);
}

#[test]
fn tool_decoder_survives_seeds_and_mutations() {
    run("tool_decoder", targets::tool_decoder);
}
