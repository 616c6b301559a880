//! Which storage nodes answer, as the gateway's probe (`background::probe`) last saw them: the
//! write path sends the share of a holder that is down to a substitute (hinted handoff), and a
//! node that missed writes nobody kept for it is healed when it answers.
//!
//! It also knows which nodes lack writes that substitutes still keep for them (are "behind"),
//! which decides how a read counts its answers (see `reads_settled` and docs/architecture.md,
//! "Reads after hinted writes").
//!
//! And it knows which fragment frame formats every node checks, which decides the format new
//! fragments are written in (`frame_format`).

use erasure::FrameFormat;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::Mutex;
use std::time::Instant;

/// What the gateway last saw of each node, by index into the layout's node list.
pub struct Liveness {
    up: Vec<AtomicBool>,
    /// Set when a write ended without the node and without a substitute keeping its share, or
    /// the scrubber found damaged fragment files on it; cleared as a heal of it starts.
    missed: Vec<AtomicBool>,
    /// Fragment files the node's scrubber last reported damaged (`ScrubStatus::damaged`).
    damaged: Vec<AtomicU64>,
    /// Some node reported hints for it in the last probe round, or this gateway acknowledged a
    /// write with a hint for it since that round began.
    behind: Vec<AtomicBool>,
    /// When this gateway last acknowledged a write with a hint for the node: milliseconds since
    /// `epoch`, plus one (0: never).
    hinted_at: Vec<AtomicU64>,
    /// For each node, the nodes that reported hints for it in the last probe round: they keep its
    /// share of some writes, fragment files included, until they hand them over.
    keepers: Mutex<Vec<Vec<usize>>>,
    /// Probe rounds finished: none yet means this gateway has not heard what the nodes hold.
    rounds: AtomicU64,
    /// The frame formats each node last reported knowing, one bit each (bit n: format n); 0
    /// until it has answered a probe.
    frame_formats: Vec<AtomicU8>,
    epoch: Instant,
}

impl Liveness {
    /// Every node starts as up: the first probe corrects that within the probe's interval.
    pub fn new(nodes: usize) -> Liveness {
        Liveness {
            up: (0..nodes).map(|_| AtomicBool::new(true)).collect(),
            missed: (0..nodes).map(|_| AtomicBool::new(false)).collect(),
            damaged: (0..nodes).map(|_| AtomicU64::new(0)).collect(),
            behind: (0..nodes).map(|_| AtomicBool::new(false)).collect(),
            hinted_at: (0..nodes).map(|_| AtomicU64::new(0)).collect(),
            keepers: Mutex::new(vec![Vec::new(); nodes]),
            rounds: AtomicU64::new(0),
            frame_formats: (0..nodes).map(|_| AtomicU8::new(0)).collect(),
            epoch: Instant::now(),
        }
    }

    pub fn is_up(&self, node: usize) -> bool {
        self.up[node].load(Ordering::SeqCst)
    }

    /// True while `node` lacks writes and its heal has not started.
    pub fn needs_heal(&self, node: usize) -> bool {
        self.missed[node].load(Ordering::SeqCst)
    }

    /// Notes that `node` lacks a write it should hold.
    pub fn missed(&self, node: usize) {
        self.missed[node].store(true, Ordering::SeqCst);
    }

    /// Clears the note that `node` needs a heal, as one is about to start; returns whether it
    /// needed one. Whatever was noted before is in the records the heal compares; a write that
    /// ends without the node after this notes it again.
    pub fn take_missed(&self, node: usize) -> bool {
        self.missed[node].swap(false, Ordering::SeqCst)
    }

    /// Records a probe's outcome; returns whether the node was up before.
    pub fn set_up(&self, node: usize, up: bool) -> bool {
        self.up[node].swap(up, Ordering::SeqCst)
    }

    /// Records the frame formats a node reports knowing (`NodeHealth::frame_formats`: empty from
    /// a release that knows format 1 alone).
    pub fn set_frame_formats(&self, node: usize, known: &[u8]) {
        let bits = known
            .iter()
            .filter(|&&n| n < 8)
            .fold(1 << FrameFormat::PositionFirst.number(), |bits, n| {
                bits | 1 << n
            });
        self.frame_formats[node].store(bits, Ordering::Relaxed);
    }

    /// The format new fragments are written in: the newest this gateway knows that every node
    /// has reported knowing. Format 1 until each node has answered a probe: a node of a release
    /// before format 2 would refuse every newer frame sent to it, and any node may be one until
    /// it has said otherwise. (So while a node stays down, a gateway that started during its
    /// outage writes format 1.)
    pub fn frame_format(&self) -> FrameFormat {
        let common = self
            .frame_formats
            .iter()
            .fold(u8::MAX, |bits, node| bits & node.load(Ordering::Relaxed));
        FrameFormat::known()
            .into_iter()
            .rev()
            .find(|&n| common & 1 << n != 0)
            .and_then(FrameFormat::from_number)
            .unwrap_or_default()
    }

    /// Records the damaged fragment files a node reports; returns the count before.
    pub fn set_damaged(&self, node: usize, damaged: u64) -> u64 {
        self.damaged[node].swap(damaged, Ordering::Relaxed)
    }

    /// Milliseconds since this gateway started: the clock of `note_hinted` and the probe rounds.
    pub fn now(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// This gateway acknowledged a write with a hint for `node`.
    pub fn note_hinted(&self, node: usize) {
        self.hinted_at[node].fetch_max(self.now() + 1, Ordering::SeqCst);
        self.behind[node].store(true, Ordering::SeqCst);
    }

    /// Ends a probe round that began at `started` (see `now`): `keepers[i]` are the nodes that
    /// reported hints for node i. A hint this gateway acknowledged after the round began may
    /// have reached its substitute after the substitute answered, so it keeps its node behind
    /// until a later round.
    pub fn finish_round(&self, started: u64, keepers: Vec<Vec<usize>>) {
        for (node, keepers) in keepers.iter().enumerate() {
            let hinted_since = self.hinted_at[node].load(Ordering::SeqCst) > started;
            self.behind[node].store(!keepers.is_empty() || hinted_since, Ordering::SeqCst);
        }
        *self.keepers.lock().unwrap_or_else(|p| p.into_inner()) = keepers;
        self.rounds.fetch_add(1, Ordering::SeqCst);
    }

    /// The nodes that reported hints for `node` in the last probe round.
    pub fn keepers_of(&self, node: usize) -> Vec<usize> {
        self.keepers.lock().unwrap_or_else(|p| p.into_inner())[node].clone()
    }

    /// A probe round has finished since this gateway started.
    pub fn has_probed(&self) -> bool {
        self.rounds.load(Ordering::SeqCst) > 0
    }

    pub fn is_behind(&self, node: usize) -> bool {
        self.behind[node].load(Ordering::SeqCst)
    }

    /// True when every acknowledged write is on a write quorum of its holders themselves: a
    /// probe round has finished since this gateway started, and in the last one every node
    /// answered and none held hints. Otherwise a substitute (one that is down, or one that has
    /// not handed its hints over yet) may keep the only copies of a write's share for a holder,
    /// and a read must hear from every holder that is up (see `ops::lookup`).
    pub fn reads_settled(&self) -> bool {
        self.has_probed()
            && self.up.iter().all(|u| u.load(Ordering::SeqCst))
            && !self.behind.iter().any(|b| b.load(Ordering::SeqCst))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn new_frames_wait_until_every_node_knows_their_format() {
        let live = Liveness::new(3);
        assert_eq!(live.frame_format(), FrameFormat::PositionFirst);
        live.set_frame_formats(0, &[1, 2]);
        live.set_frame_formats(1, &[1, 2, 7]);
        assert_eq!(
            live.frame_format(),
            FrameFormat::PositionFirst,
            "one not heard"
        );
        live.set_frame_formats(2, &[]);
        assert_eq!(
            live.frame_format(),
            FrameFormat::PositionFirst,
            "one before 2"
        );
        live.set_frame_formats(2, &[2, 200]);
        assert_eq!(live.frame_format(), FrameFormat::PositionLast);
        for node in 0..3 {
            live.set_frame_formats(node, &[1, 2, 3]);
        }
        assert_eq!(live.frame_format(), FrameFormat::Checksummed);
        live.set_frame_formats(0, &[1, 2]);
        assert_eq!(
            live.frame_format(),
            FrameFormat::PositionLast,
            "one before 3"
        );
        live.set_frame_formats(1, &[]);
        assert_eq!(
            live.frame_format(),
            FrameFormat::PositionFirst,
            "a node went back"
        );
    }

    #[test]
    fn reads_settle_after_a_round_with_every_node_up_and_no_hints() {
        let live = Liveness::new(3);
        assert!(
            !live.reads_settled(),
            "a gateway that never probed knows nothing of hints"
        );
        live.finish_round(live.now(), vec![vec![]; 3]);
        assert!(live.reads_settled());
        live.set_up(1, false);
        assert!(!live.reads_settled(), "a node that is down may keep hints");
        live.set_up(1, true);
        live.finish_round(live.now(), vec![vec![], vec![], vec![0]]);
        assert_eq!(live.keepers_of(2), [0]);
        assert!(live.is_behind(2) && !live.reads_settled());
        live.finish_round(live.now(), vec![vec![]; 3]);
        assert!(!live.is_behind(2) && live.reads_settled());
    }

    #[test]
    fn a_hint_acknowledged_during_a_round_outlives_that_round() {
        let live = Liveness::new(2);
        live.finish_round(live.now(), vec![vec![]; 2]);
        let started = live.now();
        std::thread::sleep(Duration::from_millis(2));
        // The round asked the substitute before it stored the hint, so it reports none.
        live.note_hinted(0);
        assert!(!live.reads_settled());
        live.finish_round(started, vec![vec![]; 2]);
        assert!(live.is_behind(0) && !live.reads_settled());
        std::thread::sleep(Duration::from_millis(2));
        live.finish_round(live.now(), vec![vec![]; 2]);
        assert!(live.reads_settled());
    }
}
