//! The reconnect schedule of ActiveMQ's `FailoverTransport.doReconnect`:
//! which order the members are tried in, how long to wait after a failed
//! pass over the list, and when to give up.
//!
//! One deliberate difference: after a live connection drops, ActiveMQ
//! sleeps the current delay both before *and* after every failed pass
//! (AMQ-5819, "reconnect delay applied twice"). Here the first pass after a
//! drop is preceded by one `initialReconnectDelay`, as in ActiveMQ, and every
//! failed pass is followed by exactly one delay of the sequence.

use super::uri::{Endpoint, FailoverOptions};
use std::time::Duration;

/// The delay sequence: `initialReconnectDelay`, then multiplied by
/// `reconnectDelayExponent` after each sleep and capped at
/// `maxReconnectDelay` — with Java's `long *= double` truncation, and the cap
/// applied only after multiplying, so an initial delay above the cap is
/// still slept once (both as in `doDelay`).
#[derive(Debug, Clone)]
pub struct Backoff {
    delay_ms: u64,
    initial_ms: u64,
    max_ms: u64,
    exponential: bool,
    exponent: f64,
}

impl Backoff {
    pub fn new(options: &FailoverOptions) -> Self {
        let initial_ms = options.initial_reconnect_delay.as_millis() as u64;
        Backoff {
            delay_ms: initial_ms,
            initial_ms,
            max_ms: options.max_reconnect_delay.as_millis() as u64,
            exponential: options.use_exponential_back_off,
            exponent: options.reconnect_delay_exponent,
        }
    }

    /// The delay to sleep now; advances the sequence.
    pub fn next_delay(&mut self) -> Duration {
        let now = self.delay_ms;
        if self.exponential {
            // Java: reconnectDelay *= backOffMultiplier (a saturating cast to long).
            let grown = (self.delay_ms as f64 * self.exponent) as u64;
            self.delay_ms = grown.min(self.max_ms);
        }
        Duration::from_millis(now)
    }

    /// Back to `initialReconnectDelay`, as after every successful connect.
    pub fn reset(&mut self) {
        self.delay_ms = self.initial_ms;
    }

    pub fn initial(&self) -> Duration {
        Duration::from_millis(self.initial_ms)
    }
}

impl Iterator for Backoff {
    type Item = Duration;
    fn next(&mut self) -> Option<Duration> {
        Some(self.next_delay())
    }
}

/// How many failed passes over the list end the attempt (`None`: never).
/// `startupMaxReconnectAttempts` replaces `maxReconnectAttempts` until the
/// first connection succeeded, unless it is -1
/// (`calculateReconnectAttemptLimit`). A limit of 0 still makes one pass.
pub fn pass_limit(options: &FailoverOptions, ever_connected: bool) -> Option<u32> {
    let limit = if !ever_connected && options.startup_max_reconnect_attempts != -1 {
        options.startup_max_reconnect_attempts
    } else {
        options.max_reconnect_attempts
    };
    (limit != -1).then(|| limit.max(1) as u32)
}

/// Whether a connection that dropped is re-established at all:
/// `maxReconnectAttempts=0` hands the failure straight to the application
/// (`canReconnect`).
pub fn reconnects_after_drop(options: &FailoverOptions) -> bool {
    options.max_reconnect_attempts != 0
}

/// Whether to log a warning after `failed_passes` (ActiveMQ: on the first
/// failure and every `warnAfterReconnectAttempts`-th).
pub fn warn_now(options: &FailoverOptions, failed_passes: u32) -> bool {
    let every = options.warn_after_reconnect_attempts;
    every > 0 && (failed_passes == 1 || failed_passes.is_multiple_of(every as u32))
}

/// The order of one pass: the members (shuffled if `randomize`), with the
/// one that just failed moved to the end (`getConnectList`), and a master
/// named by a slave put first.
pub fn connect_order(
    members: &[Endpoint],
    options: &FailoverOptions,
    failed: Option<&Endpoint>,
    redirect: Option<&Endpoint>,
    rng: &mut fastrand::Rng,
) -> Vec<Endpoint> {
    let mut list: Vec<Endpoint> = members.to_vec();
    let failed_was_member = failed.is_some_and(|f| {
        let before = list.len();
        list.retain(|e| e != f);
        list.len() != before
    });
    if options.randomize {
        rng.shuffle(&mut list);
    }
    if failed_was_member {
        list.push(failed.cloned().expect("checked above"));
    }
    if let Some(r) = redirect {
        list.retain(|e| e != r);
        list.insert(0, r.clone());
    }
    list
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::failover::FailoverUri;

    fn opts(query: &str) -> FailoverOptions {
        FailoverUri::parse(&format!("failover:(stomp://a:1)?{query}"))
            .unwrap()
            .options
    }

    fn ms(seq: impl Iterator<Item = Duration>, n: usize) -> Vec<u64> {
        seq.take(n).map(|d| d.as_millis() as u64).collect()
    }

    #[test]
    fn default_delays_double_from_10ms_up_to_30s() {
        let b = Backoff::new(&FailoverOptions::default());
        assert_eq!(
            ms(b, 15),
            vec![
                10, 20, 40, 80, 160, 320, 640, 1280, 2560, 5120, 10240, 20480, 30000, 30000, 30000
            ]
        );
    }

    #[test]
    fn exponent_truncates_like_java_long_arithmetic() {
        // 10 * 1.5 = 15, 22.5 -> 22, 33, 49.5 -> 49, 73.5 -> 73, 109.5 -> 109
        let b = Backoff::new(&opts("reconnectDelayExponent=1.5"));
        assert_eq!(ms(b, 7), vec![10, 15, 22, 33, 49, 73, 109]);
    }

    #[test]
    fn cap_applies_after_multiplying() {
        let b = Backoff::new(&opts("initialReconnectDelay=100&maxReconnectDelay=350"));
        assert_eq!(ms(b, 5), vec![100, 200, 350, 350, 350]);
        // An initial delay above the cap is slept once, then capped (doDelay).
        let b = Backoff::new(&opts("initialReconnectDelay=1000&maxReconnectDelay=300"));
        assert_eq!(ms(b, 3), vec![1000, 300, 300]);
    }

    #[test]
    fn without_exponential_back_off_the_delay_is_constant() {
        let b = Backoff::new(&opts(
            "useExponentialBackOff=false&initialReconnectDelay=250",
        ));
        assert_eq!(ms(b, 4), vec![250, 250, 250, 250]);
    }

    #[test]
    fn zero_initial_delay_stays_zero() {
        let b = Backoff::new(&opts("initialReconnectDelay=0"));
        assert_eq!(ms(b, 3), vec![0, 0, 0]);
    }

    #[test]
    fn reset_returns_to_the_initial_delay() {
        let mut b = Backoff::new(&FailoverOptions::default());
        b.next_delay();
        b.next_delay();
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_millis(10));
    }

    #[test]
    fn attempts_are_counted_in_passes() {
        let d = FailoverOptions::default();
        assert_eq!(pass_limit(&d, false), None);
        assert_eq!(pass_limit(&d, true), None);
        assert!(reconnects_after_drop(&d));

        let o = opts("maxReconnectAttempts=3");
        assert_eq!(pass_limit(&o, false), Some(3));
        assert_eq!(pass_limit(&o, true), Some(3));

        // startupMaxReconnectAttempts only before the first connection.
        let o = opts("maxReconnectAttempts=5&startupMaxReconnectAttempts=2");
        assert_eq!(pass_limit(&o, false), Some(2));
        assert_eq!(pass_limit(&o, true), Some(5));
        // -1 for startup means: use maxReconnectAttempts.
        let o = opts("maxReconnectAttempts=4&startupMaxReconnectAttempts=-1");
        assert_eq!(pass_limit(&o, false), Some(4));
        // ...and a startup limit with maxReconnectAttempts=-1 is forever afterwards.
        let o = opts("startupMaxReconnectAttempts=1");
        assert_eq!(pass_limit(&o, false), Some(1));
        assert_eq!(pass_limit(&o, true), None);

        // 0 still makes one pass, and disables reconnecting after a drop.
        let o = opts("maxReconnectAttempts=0");
        assert_eq!(pass_limit(&o, false), Some(1));
        assert!(!reconnects_after_drop(&o));
    }

    #[test]
    fn warnings_on_first_and_every_nth_failure() {
        let d = FailoverOptions::default();
        let warned: Vec<u32> = (1..=30).filter(|&n| warn_now(&d, n)).collect();
        assert_eq!(warned, vec![1, 10, 20, 30]);
        assert!(!(1..=30).any(|n| warn_now(&opts("warnAfterReconnectAttempts=0"), n)));
    }

    #[test]
    fn failed_uri_goes_last_and_redirect_first() {
        let members: Vec<Endpoint> = (1..=4).map(|p| Endpoint::new("h", p)).collect();
        let mut rng = fastrand::Rng::with_seed(7);
        let fixed = opts("randomize=false");
        let order = connect_order(&members, &fixed, Some(&members[0]), None, &mut rng);
        assert_eq!(
            order,
            vec![
                members[1].clone(),
                members[2].clone(),
                members[3].clone(),
                members[0].clone()
            ]
        );

        let redirect = Endpoint::new("master", 9);
        let order = connect_order(
            &members,
            &fixed,
            Some(&members[0]),
            Some(&redirect),
            &mut rng,
        );
        assert_eq!(order[0], redirect);
        assert_eq!(order.len(), 5);
        assert_eq!(order[4], members[0]);

        // Randomized: always a permutation, failed one always last, and
        // every member gets to be first sometimes.
        let rand = FailoverOptions::default();
        let mut firsts = std::collections::HashSet::new();
        for _ in 0..200 {
            let order = connect_order(&members, &rand, Some(&members[2]), None, &mut rng);
            assert_eq!(order.len(), 4);
            assert_eq!(order[3], members[2]);
            let mut sorted = order.clone();
            sorted.sort();
            assert_eq!(sorted, members);
            firsts.insert(order[0].clone());
        }
        assert_eq!(firsts.len(), 3);

        // A failed endpoint that is not a member (a redirect target) is not added.
        let order = connect_order(&members, &fixed, Some(&redirect), None, &mut rng);
        assert_eq!(order, members);
    }
}
