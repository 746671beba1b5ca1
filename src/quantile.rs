//! Percentiles of measured values, shared by the desk's figures, the
//! service levels and the reports (one definition: nearest rank).

/// The `p`-th percentile (0..=100) of `values` by nearest rank; `None` if empty.
/// Sorts `values` in place.
pub fn percentile(values: &mut [f64], p: f64) -> Option<f64> {
    let rank = nearest_rank(values.len(), p)?;
    values.sort_by(f64::total_cmp);
    Some(values[rank - 1])
}

/// The 1-based rank of the `p`-th percentile among `n` sorted values by
/// nearest rank; `None` if `n` is 0. For queries that pick the value in SQL
/// (`ORDER BY … LIMIT 1 OFFSET rank - 1`) instead of reading every value.
pub fn nearest_rank(n: usize, p: f64) -> Option<usize> {
    if n == 0 {
        return None;
    }
    let rank = ((p / 100.0) * n as f64).ceil() as usize;
    Some(rank.clamp(1, n))
}

#[cfg(test)]
mod tests {
    use super::percentile;

    #[test]
    fn ranks_agree_with_the_percentile() {
        use super::nearest_rank;
        assert_eq!(nearest_rank(0, 50.0), None);
        for n in 1..50usize {
            let mut v: Vec<f64> = (1..=n).map(|i| i as f64).collect();
            for p in [0.0, 1.0, 50.0, 90.0, 95.0, 99.0, 100.0] {
                let r = nearest_rank(n, p).map(|r| r as f64);
                assert!(r.is_some(), "n {n} p {p}");
                assert_eq!(percentile(&mut v, p), r, "n {n} p {p}");
            }
        }
    }

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
