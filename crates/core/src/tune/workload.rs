//! A workload: statements replayed before and after the fixes to measure the gain.
//!
//! The file holds one statement per line; `$[1..1000]` draws an integer from a range and
//! `$[a|b|c]` one of the words (inserted as written: quote it in the statement if it is a
//! string). Lines that are empty or start with `--` are skipped. The draws come from a fixed
//! seed, so the runs before and after the fixes execute exactly the same statements.

use std::path::Path;
use std::time::Instant;

use super::model::{StatementGain, Timings};
use crate::engine::Engine;
use crate::{Error, Result};

/// One part of a statement template.
#[derive(Debug, Clone, PartialEq)]
enum Part {
    Text(String),
    Range(i64, i64),
    Choice(Vec<String>),
}

/// One statement of the workload, with its parameters unexpanded.
#[derive(Debug, Clone, PartialEq)]
pub struct Statement {
    pub text: String,
    parts: Vec<Part>,
}

/// Reads and parses a workload file; every problem names its line.
pub fn read(path: &Path) -> Result<Vec<Statement>> {
    let text =
        std::fs::read_to_string(path).map_err(|e| Error::io("read the workload", path, e))?;
    let mut statements = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with("--") {
            continue;
        }
        let parts = parse(line).map_err(|e| {
            Error::invalid(
                "workload",
                format!("{} line {}: {e}", path.display(), index + 1),
            )
        })?;
        statements.push(Statement {
            text: line.to_string(),
            parts,
        });
    }
    if statements.is_empty() {
        return Err(Error::invalid(
            "workload",
            format!(
                "{} holds no statement; write one statement per line",
                path.display()
            ),
        ));
    }
    Ok(statements)
}

fn parse(line: &str) -> std::result::Result<Vec<Part>, String> {
    let mut parts = Vec::new();
    let mut rest = line;
    while let Some(start) = rest.find("$[") {
        parts.push(Part::Text(rest[..start].to_string()));
        let after = &rest[start + 2..];
        let end = after
            .find(']')
            .ok_or_else(|| "a parameter '$[' is not closed by ']'".to_string())?;
        let spec = &after[..end];
        parts.push(parameter(spec)?);
        rest = &after[end + 1..];
    }
    parts.push(Part::Text(rest.to_string()));
    Ok(parts)
}

fn parameter(spec: &str) -> std::result::Result<Part, String> {
    if let Some((low, high)) = spec.split_once("..") {
        let number = |s: &str| {
            s.trim()
                .parse::<i64>()
                .map_err(|_| format!("'$[{spec}]' is not a range of integers like $[1..1000]"))
        };
        let (low, high) = (number(low)?, number(high)?);
        if low > high {
            return Err(format!("'$[{spec}]' is an empty range"));
        }
        return Ok(Part::Range(low, high));
    }
    let words: Vec<String> = spec.split('|').map(|w| w.trim().to_string()).collect();
    if words.iter().any(String::is_empty) {
        return Err(format!(
            "'$[{spec}]' is neither a range ($[1..1000]) nor a choice ($[a|b|c])"
        ));
    }
    Ok(Part::Choice(words))
}

/// A small deterministic generator (xorshift64*): the same draws before and after.
struct Draws(u64);

impl Draws {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

impl Statement {
    fn expand(&self, draws: &mut Draws) -> String {
        let mut sql = String::with_capacity(self.text.len());
        for part in &self.parts {
            match part {
                Part::Text(text) => sql.push_str(text),
                Part::Range(low, high) => {
                    let span = (high - low) as u64 + 1;
                    sql.push_str(&(low + (draws.next() % span) as i64).to_string());
                }
                Part::Choice(words) => {
                    sql.push_str(&words[(draws.next() % words.len() as u64) as usize]);
                }
            }
        }
        sql
    }

    /// The statement with every parameter drawn once: a concrete statement to EXPLAIN.
    pub fn sample(&self) -> String {
        self.expand(&mut Draws(0x9E37_79B9_7F4A_7C15))
    }
}

/// Durations of every run of every statement, in milliseconds.
pub type Samples = Vec<Vec<f64>>;

/// Replays each statement `runs` times (one warm-up run first, not counted).
pub fn replay(engine: &mut dyn Engine, statements: &[Statement], runs: u32) -> Result<Samples> {
    let mut draws = Draws(0x9E37_79B9_7F4A_7C15);
    let mut samples = Vec::with_capacity(statements.len());
    for statement in statements {
        engine.run_timed(&statement.sample())?;
        let mut times = Vec::with_capacity(runs as usize);
        for _ in 0..runs {
            let sql = statement.expand(&mut draws);
            let started = Instant::now();
            engine.run_timed(&sql).map_err(|e| {
                Error::invalid(
                    "workload",
                    format!("the statement '{}' failed: {e}", statement.text),
                )
            })?;
            times.push(started.elapsed().as_secs_f64() * 1000.0);
        }
        samples.push(times);
    }
    Ok(samples)
}

/// p50, p95 and mean of some durations.
pub fn timings(values: &[f64]) -> Timings {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let at = |q: f64| {
        if sorted.is_empty() {
            return 0.0;
        }
        let index = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
        sorted[index]
    };
    let mean = if sorted.is_empty() {
        0.0
    } else {
        sorted.iter().sum::<f64>() / sorted.len() as f64
    };
    let round = |v: f64| (v * 1000.0).round() / 1000.0;
    Timings {
        runs: sorted.len(),
        p50_ms: round(at(0.5)),
        p95_ms: round(at(0.95)),
        mean_ms: round(mean),
    }
}

/// What a replay before and after the fixes measured.
pub fn measurement(
    path: &Path,
    statements: &[Statement],
    before: &Samples,
    after: &Samples,
) -> super::model::Measurement {
    let (before_all, after_all, per_statement) = compare(statements, before, after);
    super::model::Measurement {
        workload: path.to_path_buf(),
        reduction: (before_all.mean_ms > 0.0)
            .then(|| ((1.0 - after_all.mean_ms / before_all.mean_ms) * 10000.0).round() / 10000.0),
        before: before_all,
        after: after_all,
        statements: per_statement,
    }
}

/// Per statement and overall, before and after.
pub fn compare(
    statements: &[Statement],
    before: &Samples,
    after: &Samples,
) -> (Timings, Timings, Vec<StatementGain>) {
    let gains = statements
        .iter()
        .zip(before.iter().zip(after))
        .map(|(s, (b, a))| StatementGain {
            statement: s.text.clone(),
            before: timings(b),
            after: timings(a),
        })
        .collect();
    let all = |samples: &Samples| samples.iter().flatten().copied().collect::<Vec<f64>>();
    (timings(&all(before)), timings(&all(after)), gains)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_are_drawn_the_same_way_each_time() {
        let parts = parse("SELECT * FROM t WHERE id = $[5..7] AND s = '$[a|b]'").unwrap();
        let statement = Statement {
            text: String::new(),
            parts,
        };
        let mut one = Draws(1);
        let mut two = Draws(1);
        let first: Vec<String> = (0..20).map(|_| statement.expand(&mut one)).collect();
        let second: Vec<String> = (0..20).map(|_| statement.expand(&mut two)).collect();
        assert_eq!(first, second);
        for sql in &first {
            assert!(
                ["5", "6", "7"]
                    .iter()
                    .any(|n| sql.contains(&format!("id = {n} "))),
                "{sql}"
            );
            assert!(
                sql.ends_with("s = 'a'") || sql.ends_with("s = 'b'"),
                "{sql}"
            );
        }
        assert!(first.iter().any(|s| s.contains("id = 5 ")));
        assert!(first.iter().any(|s| s.contains("id = 7 ")));
    }

    #[test]
    fn bad_parameters_are_named() {
        assert!(parse("SELECT $[1..").unwrap_err().contains("not closed"));
        assert!(parse("SELECT $[9..1]").unwrap_err().contains("empty range"));
        assert!(
            parse("SELECT $[x..1]")
                .unwrap_err()
                .contains("range of integers")
        );
        assert!(parse("SELECT $[a||b]").unwrap_err().contains("neither"));
    }

    #[test]
    fn percentiles_of_known_values() {
        let t = timings(&(1..=100).map(f64::from).collect::<Vec<_>>());
        assert_eq!(
            (t.p50_ms, t.p95_ms, t.mean_ms, t.runs),
            (50.0, 95.0, 50.5, 100)
        );
        assert_eq!(timings(&[]).runs, 0);
    }
}
