//! Leader election: round-robin over the genesis validator set.

use super::messages::ValidatorIndex;

/// The leader of `round` among `validators` validators.
///
/// # Panics
/// If `validators` is 0 (genesis validation rules that out).
pub fn leader(round: u64, validators: usize) -> ValidatorIndex {
    assert!(validators > 0, "a validator set is never empty");
    let n = u64::try_from(validators).expect("at most 256 validators");
    u32::try_from(round % n).expect("index below validator count")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_robin() {
        let leaders: Vec<_> = (0..9).map(|r| leader(r, 4)).collect();
        assert_eq!(leaders, vec![0, 1, 2, 3, 0, 1, 2, 3, 0]);
        assert_eq!(leader(u64::MAX, 7), (u64::MAX % 7) as u32);
    }
}
