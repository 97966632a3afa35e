//! Progress output: one spinner line per host (indicatif) on a terminal,
//! plain timestamped lines otherwise or with `--plain` (logs, CI, pipes).

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

pub struct Progress {
    started: Instant,
    bars: Option<(MultiProgress, Mutex<BTreeMap<String, ProgressBar>>)>,
}

impl Progress {
    /// Bars when stderr is a terminal and `plain` is not asked for.
    pub fn new(plain: bool) -> Progress {
        let bars = (!plain && std::io::stderr().is_terminal())
            .then(|| (MultiProgress::new(), Mutex::new(BTreeMap::new())));
        Progress {
            started: Instant::now(),
            bars,
        }
    }

    /// `host`: `message` — the step a host is on now.
    pub fn step(&self, host: &str, message: &str) {
        match &self.bars {
            Some((multi, bars)) => {
                let mut bars = bars.lock().unwrap_or_else(|e| e.into_inner());
                let bar = bars.entry(host.to_string()).or_insert_with(|| {
                    let bar = multi.add(ProgressBar::new_spinner());
                    bar.set_style(
                        ProgressStyle::with_template("{spinner:.cyan} {prefix:<14.bold} {msg}")
                            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                    );
                    bar.set_prefix(host.to_string());
                    bar.enable_steady_tick(Duration::from_millis(100));
                    bar
                });
                bar.set_message(message.to_string());
            }
            None => eprintln!("[{:>6.2}s] {host}: {message}", self.elapsed()),
        }
    }

    /// A line that stays (phase boundaries, results).
    pub fn line(&self, message: &str) {
        match &self.bars {
            Some((multi, _)) => {
                let _ = multi.println(message);
            }
            None => eprintln!("[{:>6.2}s] {message}", self.elapsed()),
        }
    }

    /// Finishes every bar, leaving its last message.
    pub fn finish(&self) {
        if let Some((_, bars)) = &self.bars {
            for bar in bars.lock().unwrap_or_else(|e| e.into_inner()).values() {
                if !bar.is_finished() {
                    bar.finish();
                }
            }
        }
    }

    /// Removes the bars (before a summary takes their place).
    pub fn clear(&self) {
        if let Some((_, bars)) = &self.bars {
            for bar in bars.lock().unwrap_or_else(|e| e.into_inner()).values() {
                bar.finish_and_clear();
            }
        }
    }

    pub fn elapsed(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }
}
