//! Progress for people: a bar on a terminal, plain lines otherwise (logs, CI, pipes).
//!
//! Both show the same numbers: done / total, live so far, elapsed, and an ETA measured from the
//! rate so far.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

pub struct Progress {
    bar: Option<ProgressBar>,
    unit: &'static str,
    started: Instant,
    last_line: Option<Instant>,
    total: u64,
    done: u64,
    live: u64,
}

/// How often plain-line progress prints.
const LINE_EVERY: Duration = Duration::from_secs(5);

impl Progress {
    /// `unit` names what is counted ("proxies", "chunks").
    pub fn new(total: u64, unit: &'static str) -> Progress {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(total);
            bar.set_style(
                ProgressStyle::with_template(
                    "{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} {msg} (ETA {eta})",
                )
                .expect("valid template"),
            );
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        Progress {
            bar,
            unit,
            started: Instant::now(),
            last_line: None,
            total,
            done: 0,
            live: 0,
        }
    }

    pub fn set_total(&mut self, total: u64) {
        self.total = total;
        if let Some(bar) = &self.bar {
            bar.set_length(total);
        }
    }

    /// Records the current counts; `note` adds context (e.g. proxies checked of a job).
    pub fn update(&mut self, done: u64, live: u64, note: &str) {
        let changed = done != self.done || live != self.live;
        self.done = done;
        self.live = live;
        match &self.bar {
            Some(bar) => {
                bar.set_position(done);
                bar.set_message(format!("{} · {live} live{note}", self.unit));
            }
            None => {
                let due = self.last_line.is_none_or(|t| t.elapsed() >= LINE_EVERY);
                if due && (changed || self.last_line.is_none_or(|t| t.elapsed() >= LINE_EVERY * 6))
                {
                    self.print_line(note);
                }
            }
        }
    }

    fn print_line(&mut self, note: &str) {
        let elapsed = self.started.elapsed();
        let eta = eta(elapsed, self.done, self.total)
            .map(|d| format!("{}s", d.as_secs()))
            .unwrap_or_else(|| "?".into());
        eprintln!(
            "progress: {}/{} {} · {} live{note} · elapsed {}s · ETA {eta}",
            self.done,
            self.total,
            self.unit,
            self.live,
            elapsed.as_secs()
        );
        self.last_line = Some(Instant::now());
    }

    pub fn finish(&mut self) {
        match self.bar.take() {
            Some(bar) => bar.finish_and_clear(),
            None if self.done > 0 || self.total == 0 => self.print_line(""),
            None => {}
        }
    }
}

/// Remaining time at the rate so far; `None` before anything is done.
pub fn eta(elapsed: Duration, done: u64, total: u64) -> Option<Duration> {
    if done == 0 || total < done {
        return None;
    }
    Some(elapsed.mul_f64((total - done) as f64 / done as f64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eta_follows_the_measured_rate() {
        assert_eq!(eta(Duration::from_secs(10), 0, 100), None);
        assert_eq!(
            eta(Duration::from_secs(10), 25, 100),
            Some(Duration::from_secs(30))
        );
        assert_eq!(eta(Duration::from_secs(10), 100, 100), Some(Duration::ZERO));
    }
}
