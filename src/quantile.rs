//! Percentiles of measured values, shared by the desk's figures, the
//! service levels and the reports (one definition: nearest rank).

/// The `p`-th percentile (0..=100) of `values` by nearest rank; `None` if empty.
/// Sorts `values` in place.
pub fn percentile(values: &mut [f64], p: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * values.len() as f64).ceil() as usize;
    Some(values[rank.clamp(1, values.len()) - 1])
}

#[cfg(test)]
mod tests {
    use super::percentile;

    #[test]
    fn nearest_rank_percentiles() {
        assert_eq!(percentile(&mut [], 50.0), None);
        assert_eq!(percentile(&mut [7.0], 90.0), Some(7.0));
        let mut v: Vec<f64> = (1..=10).rev().map(f64::from).collect();
        assert_eq!(percentile(&mut v, 50.0), Some(5.0));
        assert_eq!(percentile(&mut v, 90.0), Some(9.0));
        assert_eq!(percentile(&mut v, 100.0), Some(10.0));
        assert_eq!(percentile(&mut v, 0.0), Some(1.0));
    }
}
