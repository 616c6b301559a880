//! Which storage nodes answer, as the gateway's probe (`background::probe`) last saw them: the
//! write path sends the share of a holder that is down to a substitute (hinted handoff), and a
//! node that missed writes nobody kept for it is healed when it answers.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// What the gateway last saw of each node, by index into the layout's node list.
pub struct Liveness {
    up: Vec<AtomicBool>,
    /// Set when a write went on without the node and without a substitute keeping its share.
    missed: Vec<AtomicBool>,
    /// Fragment files the node's scrubber last reported damaged (`ScrubStatus::damaged`).
    damaged: Vec<AtomicU64>,
}

impl Liveness {
    /// Every node starts as up: the first probe corrects that within the probe's interval.
    pub fn new(nodes: usize) -> Liveness {
        Liveness {
            up: (0..nodes).map(|_| AtomicBool::new(true)).collect(),
            missed: (0..nodes).map(|_| AtomicBool::new(false)).collect(),
            damaged: (0..nodes).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    pub fn is_up(&self, node: usize) -> bool {
        self.up[node].load(Ordering::Relaxed)
    }

    /// True while `node` lacks writes and its heal has not started.
    pub fn needs_heal(&self, node: usize) -> bool {
        self.missed[node].load(Ordering::Relaxed)
    }

    /// Notes that `node` lacks a write it should hold.
    pub fn missed(&self, node: usize) {
        self.missed[node].store(true, Ordering::Relaxed);
    }

    /// Records a probe's outcome; returns whether the node was up before.
    pub fn set_up(&self, node: usize, up: bool) -> bool {
        self.up[node].swap(up, Ordering::Relaxed)
    }

    /// Records the damaged fragment files a node reports; returns the count before.
    pub fn set_damaged(&self, node: usize, damaged: u64) -> u64 {
        self.damaged[node].swap(damaged, Ordering::Relaxed)
    }

    /// A heal of `node` has started: it no longer needs one.
    pub fn healing(&self, node: usize) {
        self.missed[node].store(false, Ordering::Relaxed);
    }
}
