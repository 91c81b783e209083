//! A tracing layer that counts the engine's warnings and errors, so that a run ends with a
//! summary of what went wrong under load even when the log scrolled by.

use std::collections::HashMap;
use std::fmt::{self, Write as _};
use std::sync::{Arc, Mutex, MutexGuard};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer};

/// How many distinct log messages the summary lists.
const SUMMARY_LINES: usize = 15;

/// Counts of warning and error events by level, target and message. Clones share the counts.
#[derive(Clone, Default)]
pub struct LogCounts {
    counts: Arc<Mutex<HashMap<Key, Tally>>>,
}

#[derive(Clone, PartialEq, Eq, Hash)]
struct Key {
    level: Level,
    target: String,
    message: String,
}

struct Tally {
    count: u64,
    /// The other fields of the first event with this key, such as `error=...`.
    first_fields: String,
}

impl LogCounts {
    fn lock(&self) -> MutexGuard<'_, HashMap<Key, Tally>> {
        // Every update is one insert or increment, so a poisoned map is still consistent.
        self.counts
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Returns the number of events at `level`.
    pub fn total(&self, level: Level) -> u64 {
        self.lock()
            .iter()
            .filter(|(key, _)| key.level == level)
            .map(|(_, tally)| tally.count)
            .sum()
    }

    /// Prints the totals and the most frequent messages with the fields of their first event.
    pub fn print_summary(&self) {
        let warnings = self.total(Level::WARN);
        let errors = self.total(Level::ERROR);
        println!("log (engine, stand-in, load generator): {warnings} warnings, {errors} errors");
        let counts = self.lock();
        let mut entries: Vec<(&Key, &Tally)> = counts.iter().collect();
        entries.sort_by_key(|(_, tally)| std::cmp::Reverse(tally.count));
        for (key, tally) in entries.iter().take(SUMMARY_LINES) {
            println!(
                "  {:>6} x {} {}: {}  [first: {}]",
                tally.count, key.level, key.target, key.message, tally.first_fields
            );
        }
        if entries.len() > SUMMARY_LINES {
            println!("  ... and {} other messages", entries.len() - SUMMARY_LINES);
        }
    }
}

impl<S: Subscriber> Layer<S> for LogCounts {
    fn on_event(&self, event: &Event<'_>, _context: Context<'_, S>) {
        let metadata = event.metadata();
        let mut fields = FieldText::default();
        event.record(&mut fields);
        let key = Key {
            level: *metadata.level(),
            target: metadata.target().to_string(),
            message: fields.message,
        };
        self.lock()
            .entry(key)
            .and_modify(|tally| tally.count += 1)
            .or_insert(Tally {
                count: 1,
                first_fields: fields.others,
            });
    }
}

/// The `message` field and the other fields of one event, as text.
#[derive(Default)]
struct FieldText {
    message: String,
    others: String,
}

impl Visit for FieldText {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            self.message = format!("{value:?}");
        } else {
            if !self.others.is_empty() {
                self.others.push(' ');
            }
            let _ = write!(self.others, "{}={value:?}", field.name());
        }
    }
}
