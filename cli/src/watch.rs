//! Watching a run on a terminal: one status line on stderr (`⠋ RUNNING 3.2s · attempt 2`)
//! that log lines scroll above, the reconnect notice as that same line, and what Ctrl-C does.
//!
//! Off a terminal nothing here draws: output stays plain lines, stable for scripts.

use std::cell::RefCell;
use std::io::IsTerminal as _;
use std::time::Duration;

use clap::ValueEnum;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::output::{parse_time, seconds_text};

/// What Ctrl-C does while a command follows a run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum OnInterrupt {
    /// The first Ctrl-C stops following (the run goes on) and prints how to follow or cancel
    /// it; a second one within three seconds cancels the run.
    #[default]
    Detach,
    /// The first Ctrl-C cancels the run.
    Cancel,
}

/// How long a second Ctrl-C may come after the first to cancel the run.
pub const SECOND_INTERRUPT_WINDOW: Duration = Duration::from_secs(3);

/// What the status line knows about the run.
#[derive(Clone, Debug, Default)]
pub struct RunState {
    /// The status's GraphQL name.
    pub status: String,
    /// Attempts so far (retries make it grow).
    pub attempts: i64,
    /// When the run was created (RFC 3339).
    pub created_at: Option<String>,
    /// When it started running.
    pub started_at: Option<String>,
    /// When it finished.
    pub finished_at: Option<String>,
}

impl RunState {
    /// How long the run has been in its phase: since it started while it runs (or ran), since
    /// it was created before that.
    pub fn elapsed(&self) -> Option<String> {
        let since = self
            .started_at
            .as_deref()
            .or(self.created_at.as_deref())
            .and_then(parse_time)?;
        let until = self
            .finished_at
            .as_deref()
            .and_then(parse_time)
            .unwrap_or_else(chrono::Utc::now);
        Some(seconds_text(
            (until - since).num_milliseconds().max(0) as f64 / 1000.0,
        ))
    }

    fn line(&self) -> String {
        let mut line = if self.status.is_empty() {
            "connecting".to_owned()
        } else {
            self.status.clone()
        };
        if let Some(elapsed) = self.elapsed() {
            line.push(' ');
            line.push_str(&elapsed);
        }
        if self.attempts > 1 {
            line.push_str(&format!(" · attempt {}", self.attempts));
        }
        line
    }
}

/// The status line, when stderr is a terminal.
pub struct StatusLine {
    bar: Option<ProgressBar>,
    state: RefCell<RunState>,
    trouble: RefCell<Option<String>>,
}

impl StatusLine {
    /// A status line on stderr if `wanted` and stderr is a terminal; otherwise one that draws
    /// nothing.
    pub fn new(wanted: bool) -> Self {
        let bar = (wanted && std::io::stderr().is_terminal()).then(|| {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template("{spinner} {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar.enable_steady_tick(Duration::from_millis(100));
            bar
        });
        Self {
            bar,
            state: RefCell::new(RunState::default()),
            trouble: RefCell::new(None),
        }
    }

    /// Whether it draws.
    pub fn drawn(&self) -> bool {
        self.bar.is_some()
    }

    /// The run's new state.
    pub fn update(&self, state: RunState) {
        *self.state.borrow_mut() = state;
        self.redraw();
    }

    /// Shows `notice` (a lost connection) in place of the status until [`StatusLine::clear_trouble`].
    pub fn trouble(&self, notice: String) {
        *self.trouble.borrow_mut() = Some(notice);
        self.redraw();
    }

    /// Back to the status after a reconnection.
    pub fn clear_trouble(&self) {
        if self.trouble.borrow_mut().take().is_some() {
            self.redraw();
        }
    }

    /// Recomputes the elapsed time (called on a timer).
    pub fn redraw(&self) {
        if let Some(bar) = &self.bar {
            let message = match &*self.trouble.borrow() {
                Some(notice) => notice.clone(),
                None => self.state.borrow().line(),
            };
            bar.set_message(message);
        }
    }

    /// Runs `print` with the line out of the way (it is drawn again after).
    pub fn above(&self, print: impl FnOnce()) {
        match &self.bar {
            Some(bar) => bar.suspend(print),
            None => print(),
        }
    }

    /// Removes the line for good.
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

impl Drop for StatusLine {
    fn drop(&mut self) {
        self.finish();
    }
}
