//! Admission: ready steps wait in one queue for every run and start while
//! the machine's cores and memory allow.

use std::collections::{HashMap, VecDeque};

use kaon_engine::NodeId;

use crate::error::RuntimeError;

/// Resources of this machine that steps are admitted against.
#[derive(Clone, Copy, Debug)]
pub struct Capacity {
    /// CPU cores.
    pub cpus: f64,
    /// Memory in bytes.
    pub memory: u64,
}

impl Capacity {
    /// What the machine has: its cores and its memory.
    pub fn detect() -> Capacity {
        let cpus = std::thread::available_parallelism()
            .map(|n| n.get() as f64)
            .unwrap_or(1.0);
        let memory = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| {
                m.lines()
                    .find(|l| l.starts_with("MemTotal:"))
                    .and_then(|l| l.split_whitespace().nth(1))
                    .and_then(|kb| kb.parse::<u64>().ok())
            })
            .map(|kb| kb * 1024)
            .unwrap_or(8 << 30);
        Capacity { cpus, memory }
    }

    /// This capacity with `--cpus` / `--memory` applied.
    pub fn with(
        mut self,
        cpus: Option<f64>,
        memory: Option<u64>,
    ) -> Result<Capacity, RuntimeError> {
        if let Some(c) = cpus {
            if !(c > 0.0 && c.is_finite()) {
                return Err(RuntimeError::BadCapacity {
                    what: "cpus",
                    value: c.to_string(),
                });
            }
            self.cpus = c;
        }
        if let Some(m) = memory {
            if m == 0 {
                return Err(RuntimeError::BadCapacity {
                    what: "memory",
                    value: m.to_string(),
                });
            }
            self.memory = m;
        }
        Ok(self)
    }
}

/// Ready steps of every run waiting for room, and what the running ones
/// hold.
pub(crate) struct Admission {
    capacity: Capacity,
    free: Capacity,
    /// (run, node, cpus, memory), in the order they became ready.
    queue: VecDeque<(String, NodeId, f64, u64)>,
    held: HashMap<(String, u32), (f64, u64)>,
}

impl Admission {
    pub(crate) fn new(capacity: Capacity) -> Self {
        Admission {
            capacity,
            free: capacity,
            queue: VecDeque::new(),
            held: HashMap::new(),
        }
    }

    /// A step became ready.
    pub(crate) fn enqueue(&mut self, run: &str, node: NodeId, cpus: f64, memory: u64) {
        self.queue.push_back((run.to_string(), node, cpus, memory));
    }

    /// Takes the steps that fit now: first fit in FIFO order, so one big
    /// step does not hold up small ones behind it. Each taken step holds
    /// its resources until [`Admission::release`]. A request above the
    /// machine's capacity is capped so that the step runs alone.
    pub(crate) fn admit(&mut self) -> Vec<(String, NodeId)> {
        let mut out = Vec::new();
        let mut i = 0;
        let mut looked = 0;
        while i < self.queue.len() && looked < 10_000 && self.free.cpus > 0.0 {
            looked += 1;
            let (_, _, cpus, mem) = &self.queue[i];
            let cpus = cpus.min(self.capacity.cpus);
            let mem = (*mem).min(self.capacity.memory);
            let fits = cpus <= self.free.cpus + 1e-9 && mem <= self.free.memory;
            if !fits {
                i += 1;
                continue;
            }
            if let Some((run, node, c, m)) = self.queue.remove(i) {
                self.hold(&run, node, c, m);
                out.push((run, node));
            }
        }
        out
    }

    /// Counts a step against capacity (once per step).
    pub(crate) fn hold(&mut self, run: &str, node: NodeId, cpus: f64, memory: u64) {
        let key = (run.to_string(), node.0);
        if self.held.contains_key(&key) {
            return;
        }
        let c = cpus.min(self.capacity.cpus);
        // What is given back is what was taken: a step re-attached after
        // a restart may be held while memory is short, and giving back
        // more than was taken would grow the machine for good.
        let m = memory.min(self.capacity.memory).min(self.free.memory);
        self.free.cpus -= c;
        self.free.memory -= m;
        self.held.insert(key, (c, m));
    }

    /// A step no longer runs: its resources go back.
    pub(crate) fn release(&mut self, run: &str, node: NodeId) {
        if let Some((c, m)) = self.held.remove(&(run.to_string(), node.0)) {
            self.free.cpus += c;
            self.free.memory += m;
        }
    }

    /// True when a step of one of `runs` still holds resources.
    pub(crate) fn holds_any(&self, runs: &dyn Fn(&str) -> bool) -> bool {
        self.held.keys().any(|(r, _)| runs(r))
    }

    /// Forgets the queued steps of runs this loop lets go of.
    pub(crate) fn drop_runs(&mut self, runs: &dyn Fn(&str) -> bool) {
        self.queue.retain(|(r, ..)| !runs(r));
        let gone: Vec<_> = self.held.keys().filter(|(r, _)| runs(r)).cloned().collect();
        for (r, n) in gone {
            self.release(&r, NodeId(n));
        }
    }
}
