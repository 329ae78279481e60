//! The only module that draws: a progress bar on a terminal, periodic plain log lines otherwise, nothing
//! with `--quiet`. Log lines go through [`StderrWriter`], which lifts the bar out of the way while a line is
//! written, so logs never tear the bar.

use std::io::{self, IsTerminal, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// The bar in use, if any, so the log writer can suspend it.
static ACTIVE_BAR: OnceLock<ProgressBar> = OnceLock::new();

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressMode {
    /// A bar on stderr (stderr is a terminal).
    Bar,
    /// A log line every few seconds (cron, CI, pipes).
    Log,
    /// Nothing.
    Quiet,
}

impl ProgressMode {
    /// `Bar` on a terminal, `Log` otherwise, `Quiet` when asked.
    pub fn detect(quiet: bool) -> ProgressMode {
        if quiet {
            ProgressMode::Quiet
        } else if io::stderr().is_terminal() {
            ProgressMode::Bar
        } else {
            ProgressMode::Log
        }
    }
}

/// Counters the run updates and the progress display reads.
#[derive(Debug, Default)]
pub struct Counters {
    pub rows: AtomicU64,
    pub ok: AtomicU64,
    pub failed: AtomicU64,
    pub bytes: AtomicU64,
}

/// A running display; dropped or [`Progress::finish`]ed at the end.
pub struct Progress {
    bar: Option<ProgressBar>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Progress {
    /// Starts displaying `counters`; `total_bytes` (the input's size, when known) gives a percentage and ETA.
    pub fn start(mode: ProgressMode, counters: Arc<Counters>, total_bytes: Option<u64>) -> Progress {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        match mode {
            ProgressMode::Quiet => Progress { bar: None, stop: None },
            ProgressMode::Bar => {
                let bar = match total_bytes {
                    Some(n) => ProgressBar::new(n),
                    None => ProgressBar::new_spinner(),
                };
                bar.set_draw_target(ProgressDrawTarget::stderr_with_hz(4));
                let template = if total_bytes.is_some() {
                    "{spinner} [{elapsed_precise}] {wide_bar} {percent:>3}% {msg} ETA {eta}"
                } else {
                    "{spinner} [{elapsed_precise}] {msg}"
                };
                if let Ok(style) = ProgressStyle::with_template(template) {
                    bar.set_style(style);
                }
                let _ = ACTIVE_BAR.set(bar.clone());
                let b = bar.clone();
                let c = Arc::clone(&counters);
                every(Duration::from_millis(250), true, rx, move |elapsed| {
                    b.set_position(c.bytes.load(Ordering::Relaxed));
                    b.set_message(status_line(&c, elapsed));
                });
                Progress { bar: Some(bar), stop: Some(tx) }
            }
            ProgressMode::Log => {
                every(Duration::from_secs(10), false, rx, move |elapsed| {
                    let pct = total_bytes
                        .filter(|t| *t > 0)
                        .map(|t| {
                            format!(
                                ", {:.0}% of the input",
                                100.0 * counters.bytes.load(Ordering::Relaxed) as f64 / t as f64
                            )
                        })
                        .unwrap_or_default();
                    tracing::info!("progress: {}{pct}", status_line(&counters, elapsed));
                });
                Progress { bar: None, stop: Some(tx) }
            }
        }
    }

    pub fn finish(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

/// Counters of a listing (`export`): records written so far, and the total the server announced (0 until
/// the first page tells it).
#[derive(Debug, Default)]
pub struct ListCounters {
    pub done: AtomicU64,
    pub total: AtomicU64,
}

impl Progress {
    /// Starts displaying a listing: `what` names the records (`contacts`, `companies`). The bar gets its
    /// length once `counters.total` is known.
    pub fn listing(mode: ProgressMode, what: &'static str, counters: Arc<ListCounters>) -> Progress {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        match mode {
            ProgressMode::Quiet => Progress { bar: None, stop: None },
            ProgressMode::Bar => {
                let bar = ProgressBar::new_spinner();
                bar.set_draw_target(ProgressDrawTarget::stderr_with_hz(4));
                let with_total = "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} {msg} ETA {eta}";
                let without = "{spinner} [{elapsed_precise}] {pos} {msg}";
                if let Ok(style) = ProgressStyle::with_template(without) {
                    bar.set_style(style);
                }
                let _ = ACTIVE_BAR.set(bar.clone());
                let b = bar.clone();
                let mut sized = false;
                every(Duration::from_millis(250), true, rx, move |elapsed| {
                    let total = counters.total.load(Ordering::Relaxed);
                    if total > 0 && !sized {
                        sized = true;
                        b.set_length(total);
                        if let Ok(style) = ProgressStyle::with_template(with_total) {
                            b.set_style(style);
                        }
                    }
                    let done = counters.done.load(Ordering::Relaxed);
                    b.set_position(done);
                    b.set_message(format!("{what} · {}", per_second(done, elapsed)));
                });
                Progress { bar: Some(bar), stop: Some(tx) }
            }
            ProgressMode::Log => {
                every(Duration::from_secs(10), false, rx, move |elapsed| {
                    let done = counters.done.load(Ordering::Relaxed);
                    let of = match counters.total.load(Ordering::Relaxed) {
                        0 => String::new(),
                        total => format!(" of {total}"),
                    };
                    tracing::info!("progress: {done}{of} {what}, {}", per_second(done, elapsed));
                });
                Progress { bar: None, stop: Some(tx) }
            }
        }
    }
}

/// Calls `tick` with the time since start every `period` (at once too, when `now`), until `stop` fires or
/// its sender is dropped: the one loop behind every bar and every periodic log line.
fn every(
    period: Duration,
    now: bool,
    mut stop: tokio::sync::oneshot::Receiver<()>,
    mut tick: impl FnMut(Duration) + Send + 'static,
) {
    tokio::spawn(async move {
        let started = Instant::now();
        if now {
            tick(started.elapsed());
        }
        loop {
            tokio::select! {
                _ = &mut stop => break,
                () = tokio::time::sleep(period) => tick(started.elapsed()),
            }
        }
    });
}

fn per_second(n: u64, elapsed: Duration) -> String {
    format!("{:.1}/s", n as f64 / elapsed.as_secs_f64().max(0.001))
}

fn status_line(c: &Counters, elapsed: Duration) -> String {
    let rows = c.rows.load(Ordering::Relaxed);
    let rate = rows as f64 / elapsed.as_secs_f64().max(0.001);
    format!(
        "{rows} rows done · {} ok · {} not ok · {rate:.1} rows/s",
        c.ok.load(Ordering::Relaxed),
        c.failed.load(Ordering::Relaxed)
    )
}

/// A `tracing` writer for stderr that suspends the progress bar while a log line is written.
#[derive(Debug, Clone, Copy, Default)]
pub struct StderrWriter;

impl Write for StderrWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match ACTIVE_BAR.get() {
            Some(bar) if !bar.is_finished() => bar.suspend(|| io::stderr().write_all(buf)).map(|()| buf.len()),
            _ => io::stderr().write_all(buf).map(|()| buf.len()),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        io::stderr().flush()
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for StderrWriter {
    type Writer = StderrWriter;

    fn make_writer(&'a self) -> Self::Writer {
        StderrWriter
    }
}
