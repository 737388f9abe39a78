//! Percentiles of the per-run figures.

use serde::Serialize;

/// p50, p95 and max of one figure over the runs that have it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Spread {
    /// How many runs had the figure.
    pub count: usize,
    /// Median (nearest rank).
    pub p50: f64,
    /// 95th percentile (nearest rank).
    pub p95: f64,
    /// Largest value.
    pub max: f64,
}

impl Spread {
    /// The spread of `values` (NaN values are ignored); `None` when there are none.
    pub fn of(values: impl IntoIterator<Item = f64>) -> Option<Self> {
        let mut sorted: Vec<f64> = values.into_iter().filter(|v| !v.is_nan()).collect();
        sorted.sort_by(f64::total_cmp);
        Some(Self {
            count: sorted.len(),
            p50: percentile(&sorted, 50.0)?,
            p95: percentile(&sorted, 95.0)?,
            max: *sorted.last()?,
        })
    }
}

/// The nearest-rank percentile of sorted values: the smallest value with at least `p`
/// percent of the values at or below it (rank ⌈p/100 · n⌉). It is always one of the
/// measured values, never an interpolation, so "p95 of 20 runs" is the 19th fastest run.
pub fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() || !(0.0..=100.0).contains(&p) {
        return None;
    }
    let n = sorted.len();
    let rank = ((p / 100.0) * n as f64).ceil() as usize;
    sorted.get(rank.clamp(1, n) - 1).copied()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let one_to_twenty: Vec<f64> = (1..=20).map(f64::from).collect();
        assert_eq!(percentile(&one_to_twenty, 50.0), Some(10.0));
        assert_eq!(percentile(&one_to_twenty, 95.0), Some(19.0));
        assert_eq!(percentile(&one_to_twenty, 100.0), Some(20.0));
        assert_eq!(percentile(&one_to_twenty, 0.0), Some(1.0));
        assert_eq!(percentile(&[7.0], 95.0), Some(7.0));
        assert_eq!(percentile(&[1.0, 2.0, 3.0, 4.0], 50.0), Some(2.0));
        // With fewer than 20 runs, p95 is the max.
        assert_eq!(percentile(&[1.0, 2.0, 3.0, 4.0, 5.0], 95.0), Some(5.0));
        assert_eq!(percentile(&[], 50.0), None);
        assert_eq!(percentile(&[1.0], 101.0), None);
    }

    #[test]
    fn spread_sorts_and_skips_nan() {
        let s = Spread::of([300.0, 100.0, f64::NAN, 200.0]).unwrap();
        assert_eq!(
            s,
            Spread {
                count: 3,
                p50: 200.0,
                p95: 300.0,
                max: 300.0
            }
        );
        assert_eq!(Spread::of([]), None);
        assert_eq!(Spread::of([f64::NAN]), None);
    }
}
