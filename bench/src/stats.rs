//! Latency percentiles and the formatting of durations and rates.

use std::time::Duration;

/// Percentiles of a set of latencies, by the nearest-rank method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Percentiles {
    pub count: usize,
    pub p50: Duration,
    pub p95: Duration,
    pub p99: Duration,
    pub max: Duration,
}

impl Percentiles {
    /// Computes the percentiles of `samples`, or `None` when there are none.
    pub fn of(mut samples: Vec<Duration>) -> Option<Percentiles> {
        if samples.is_empty() {
            return None;
        }
        samples.sort_unstable();
        Some(Percentiles {
            count: samples.len(),
            p50: nearest_rank(&samples, 50),
            p95: nearest_rank(&samples, 95),
            p99: nearest_rank(&samples, 99),
            max: samples[samples.len() - 1],
        })
    }

    /// Formats the percentiles on one line, in milliseconds.
    pub fn line(&self) -> String {
        format!(
            "p50 {}  p95 {}  p99 {}  max {}  (n = {})",
            millis(self.p50),
            millis(self.p95),
            millis(self.p99),
            millis(self.max),
            self.count
        )
    }
}

/// Returns the smallest sample with at least `percent` % of the samples at or below it. `sorted` must
/// be sorted and not empty.
fn nearest_rank(sorted: &[Duration], percent: usize) -> Duration {
    let rank = (percent * sorted.len()).div_ceil(100).max(1);
    sorted[rank - 1]
}

/// Formats a duration in milliseconds with one decimal, such as `12.3 ms`.
pub fn millis(duration: Duration) -> String {
    format!("{:.1} ms", duration.as_secs_f64() * 1000.0)
}

/// Formats a duration in seconds with two decimals, such as `4.56 s`.
pub fn seconds(duration: Duration) -> String {
    format!("{:.2} s", duration.as_secs_f64())
}

/// Returns `count` divided by `elapsed` in events per second, or 0 for a zero duration.
pub fn per_second(count: usize, elapsed: Duration) -> f64 {
    let secs = elapsed.as_secs_f64();
    if secs > 0.0 {
        count as f64 / secs
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(values: impl IntoIterator<Item = u64>) -> Vec<Duration> {
        values.into_iter().map(Duration::from_millis).collect()
    }

    #[test]
    fn percentiles_of_nothing() {
        assert_eq!(Percentiles::of(Vec::new()), None);
    }

    #[test]
    fn percentiles_of_one_sample() {
        let p = Percentiles::of(ms([7])).unwrap();
        assert_eq!(p.count, 1);
        assert_eq!(p.p50, Duration::from_millis(7));
        assert_eq!(p.p99, Duration::from_millis(7));
        assert_eq!(p.max, Duration::from_millis(7));
    }

    #[test]
    fn percentiles_of_hundred_samples() {
        // 100 ms down to 1 ms, so the samples must be sorted first.
        let samples = ms((1..=100).rev());
        let p = Percentiles::of(samples).unwrap();
        assert_eq!(p.p50, Duration::from_millis(50));
        assert_eq!(p.p95, Duration::from_millis(95));
        assert_eq!(p.p99, Duration::from_millis(99));
        assert_eq!(p.max, Duration::from_millis(100));
    }

    #[test]
    fn percentiles_round_rank_up() {
        // Nearest rank of p95 over 10 samples is ceil(9.5) = 10.
        let p = Percentiles::of(ms(1..=10)).unwrap();
        assert_eq!(p.p50, Duration::from_millis(5));
        assert_eq!(p.p95, Duration::from_millis(10));
    }

    #[test]
    fn per_second_of_zero_duration() {
        assert_eq!(per_second(10, Duration::ZERO), 0.0);
        assert_eq!(per_second(10, Duration::from_secs(2)), 5.0);
    }
}
