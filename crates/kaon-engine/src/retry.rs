//! Retry delays: exponential backoff with a cap and jitter.

use crate::state::Millis;

/// The delay before retry number `n` (1 for the first retry): `base`
/// doubled per retry, capped at `cap`, then jittered into its upper half
/// ("equal jitter": between half and all of it) so that many steps failing
/// together do not retry in lockstep.
///
/// The jitter is derived from the run, node and attempt rather than drawn
/// at random, so the engine stays deterministic: replaying the same events
/// gives the same timers.
pub fn backoff(base: Millis, cap: Millis, n: u32, run: &str, node: u32, attempt: u32) -> Millis {
    let exp = n.saturating_sub(1).min(32);
    let full = base.saturating_mul(1u64 << exp).min(cap.max(base.min(cap)));
    let half = full / 2;
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in run
        .as_bytes()
        .iter()
        .chain(&node.to_le_bytes())
        .chain(&attempt.to_le_bytes())
    {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    half + if full - half == 0 {
        0
    } else {
        h % (full - half + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_caps_and_jitters_within_bounds() {
        for n in 1..=12 {
            let full = (1000u64 << (n - 1)).min(30_000);
            for node in 0..50 {
                let d = backoff(1000, 30_000, n, "r1", node, n);
                assert!(
                    d >= full / 2 && d <= full,
                    "retry {n}: {d} not in [{}, {full}]",
                    full / 2
                );
            }
        }
    }

    #[test]
    fn jitter_spreads_steps_that_fail_together() {
        let delays: std::collections::BTreeSet<u64> = (0..100)
            .map(|node| backoff(8000, 60_000, 1, "r1", node, 1))
            .collect();
        assert!(delays.len() > 50, "only {} distinct delays", delays.len());
    }

    #[test]
    fn zero_base_means_no_wait() {
        assert_eq!(backoff(0, 1000, 3, "r", 1, 1), 0);
    }
}
