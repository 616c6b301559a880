//! Who drains this region's outboxes for each target region: a lease per target, held by one
//! gateway at a time until it lapses or is given up (`LeaseRequest`). A gateway drains only
//! while a majority of the layout's nodes grant it the lease, so that several gateways do not
//! each send every entry. The lease is advisory (an entry sent twice is applied once), so it is
//! kept in memory: a node that restarts forgets it, and the drainer has it again at its next
//! renewal.

use crate::protocol::{LeaseAnswer, LeaseRequest};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The longest lease a drainer may ask for: one that dies holds it no longer.
const MAX_TTL: Duration = Duration::from_secs(60);

#[derive(Default)]
pub struct DrainLeases {
    /// Per target region: the drainer and when its lease lapses.
    held: Mutex<HashMap<String, (String, Instant)>>,
}

impl DrainLeases {
    pub fn ask(&self, request: &LeaseRequest, now: Instant) -> LeaseAnswer {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        let current = held.get(&request.target).filter(|(_, until)| *until > now);
        match current {
            Some((holder, _)) if *holder != request.drainer => LeaseAnswer {
                granted: false,
                holder: Some(holder.clone()),
            },
            _ if request.release => {
                held.remove(&request.target);
                LeaseAnswer {
                    granted: false,
                    holder: None,
                }
            }
            _ => {
                let ttl = Duration::from_millis(request.ttl_ms).min(MAX_TTL);
                held.insert(request.target.clone(), (request.drainer.clone(), now + ttl));
                LeaseAnswer {
                    granted: true,
                    holder: Some(request.drainer.clone()),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ask(drainer: &str, release: bool) -> LeaseRequest {
        LeaseRequest {
            target: "eu-west-1".into(),
            drainer: drainer.into(),
            ttl_ms: 10_000,
            release,
        }
    }

    #[test]
    fn one_drainer_holds_the_lease_until_it_lapses_or_is_given_up() {
        let leases = DrainLeases::default();
        let start = Instant::now();
        assert!(leases.ask(&ask("a", false), start).granted);
        let refused = leases.ask(&ask("b", false), start + Duration::from_secs(5));
        assert!(!refused.granted);
        assert_eq!(refused.holder.as_deref(), Some("a"));
        assert!(
            leases
                .ask(&ask("a", false), start + Duration::from_secs(9))
                .granted,
            "renewed"
        );
        let later = start + Duration::from_secs(18);
        assert!(
            !leases.ask(&ask("b", false), later).granted,
            "the renewal counts"
        );
        assert!(
            !leases.ask(&ask("b", true), later).granted,
            "only the holder gives it up"
        );
        assert!(
            leases
                .ask(&ask("b", false), start + Duration::from_secs(20))
                .granted,
            "lapsed"
        );
        leases.ask(&ask("b", true), start + Duration::from_secs(21));
        assert!(
            leases
                .ask(&ask("a", false), start + Duration::from_secs(21))
                .granted,
            "given up"
        );
    }
}
