//! Counting answers against a quorum: the one place that decides whether enough holders or nodes
//! answered, and what the client is told when they did not.
//!
//! The counts that matter (see docs/architecture.md, "Quorums"): a write is acknowledged once W
//! holders of the key's k+m committed it; a read asks R = k+m-W+1 of them, so that every read
//! quorum meets every write quorum (R + W > k+m); the bucket table is written to and read from a
//! majority of all nodes, and two majorities always share a node.

use crate::ops::error::OpError;
use node_rpc::RpcError;

/// How many of a set of calls must succeed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Quorum {
    pub needed: usize,
}

impl Quorum {
    /// More than half of `nodes`: two such sets always share one.
    pub fn majority(nodes: usize) -> Quorum {
        Quorum {
            needed: nodes / 2 + 1,
        }
    }

    pub fn met(self, ok: usize) -> bool {
        ok >= self.needed
    }

    /// `Ok` when `ok` of `of` is enough; otherwise `ServiceUnavailable`, saying what fell short.
    pub fn require(self, ok: usize, of: usize, what: &str) -> Result<(), OpError> {
        if self.met(ok) {
            return Ok(());
        }
        crate::metrics::METRICS.quorum_failures.inc();
        Err(OpError::Unavailable(format!(
            "{ok} of {of} {what}; {} needed",
            self.needed
        )))
    }

    /// Counts the successful answers: `Ok` with the count when enough succeeded. Otherwise the
    /// error (see `shortfall`) says what fell short and why the first failed call failed.
    pub fn tally<'a, T: 'a>(
        self,
        answers: impl IntoIterator<Item = &'a Result<T, RpcError>>,
        what: &str,
    ) -> Result<usize, OpError> {
        let (mut ok, mut of, mut first_error) = (0, 0, None);
        let answers: Vec<&Result<T, RpcError>> = answers.into_iter().collect();
        for answer in &answers {
            of += 1;
            match answer {
                Ok(_) => ok += 1,
                Err(e) => {
                    first_error.get_or_insert_with(|| e.to_string());
                }
            }
        }
        let Err(OpError::Unavailable(why)) = self.require(ok, of, what) else {
            return Ok(ok);
        };
        let why = match first_error {
            Some(e) => format!("{why} ({e})"),
            None => why,
        };
        Err(shortfall(why, answers))
    }
}

/// The error for a quorum that fell short: 403 when a holder refused to delete a version that
/// Object Lock protects, 507 when a node said its disk is full (the client should not just
/// retry), else 503.
pub fn shortfall<'a, T: 'a>(
    why: String,
    answers: impl IntoIterator<Item = &'a Result<T, RpcError>>,
) -> OpError {
    let errors: Vec<&RpcError> = answers
        .into_iter()
        .filter_map(|a| a.as_ref().err())
        .collect();
    if errors.iter().any(|e| e.is_locked()) {
        OpError::Locked
    } else if errors.iter().any(|e| e.is_disk_full()) {
        OpError::DiskFull(why)
    } else {
        OpError::Unavailable(why)
    }
}

/// R for `width` holders and a write quorum `write`.
pub fn read_quorum(width: usize, write: usize) -> usize {
    width - write + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answers(ok: usize, failed: usize, disk_full: bool) -> Vec<Result<(), RpcError>> {
        let error = || {
            if disk_full {
                RpcError::Status(http::StatusCode::INSUFFICIENT_STORAGE, "disk full".into())
            } else {
                RpcError::Timeout
            }
        };
        (0..ok)
            .map(|_| Ok(()))
            .chain((0..failed).map(|_| Err(error())))
            .collect()
    }

    #[test]
    fn a_quorum_is_met_at_exactly_its_count() {
        let q = Quorum { needed: 5 };
        assert!(!q.met(4));
        assert!(q.met(5));
        assert!(q.require(4, 6, "holders committed").is_err());
        assert_eq!(q.tally(&answers(5, 1, false), "x").unwrap(), 5);
        assert!(q.tally(&answers(4, 2, false), "x").is_err());
    }

    #[test]
    fn a_shortfall_says_what_and_why() {
        let q = Quorum { needed: 5 };
        match q.tally(&answers(3, 3, false), "holders committed") {
            Err(OpError::Unavailable(why)) => {
                assert!(
                    why.starts_with("3 of 6 holders committed; 5 needed"),
                    "{why}"
                );
            }
            other => panic!("{other:?}"),
        }
        let full = q.tally(&answers(4, 2, true), "holders committed");
        assert!(matches!(full, Err(OpError::DiskFull(_))));
    }

    #[test]
    fn majorities_overlap() {
        for nodes in 1..20 {
            let m = Quorum::majority(nodes).needed;
            assert!(2 * m > nodes, "two majorities of {nodes} must share a node");
            assert!(m <= nodes);
        }
    }

    #[test]
    fn every_read_quorum_meets_every_write_quorum() {
        for k in 1..8 {
            for m in 0..5 {
                let width = k + m;
                for write in k..=width {
                    let read = read_quorum(width, write);
                    assert!(read + write > width, "k={k} m={m} W={write} R={read}");
                    assert!((1..=width).contains(&read));
                }
            }
        }
    }
}
