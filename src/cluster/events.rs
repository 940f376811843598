//! The one Event announcer: every Event kafka-expose publishes goes through [`Announcer`].
//!
//! What is said "once" (a policy's Audit preview, a conflict, a node address that changed) is
//! remembered in [`Said`], a set of fingerprints with a fixed capacity: the oldest is forgotten
//! first, so the memory stays bounded however many workloads, pods and messages come and go.
//! A forgotten message may be said once more, which an Event's own aggregation absorbs (the
//! API server counts repeats of one Event; see `kube::runtime::events::Recorder`).

use std::collections::{HashSet, VecDeque};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Mutex;

use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, EventType, Recorder};
use tracing::warn;

/// How many distinct messages are remembered as said. At a few dozen bytes each, a megabyte at
/// most; far more than the distinct messages of the workloads one cluster exposes.
pub const SAID_CAPACITY: usize = 16_384;

/// Events are cut to this many characters (the API server refuses notes over 1 KiB).
const NOTE_LIMIT: usize = 1000;

/// One Event to publish.
pub struct Note<'a> {
    pub type_: EventType,
    pub reason: &'a str,
    pub note: &'a str,
    /// What kafka-expose was doing: `Reconcile`, `Policy`, `Bind`.
    pub action: &'a str,
    /// A second object the Event is about (the broker pod of a workload's Event).
    pub secondary: Option<ObjectReference>,
}

/// The messages said once, bounded: [`Said::first_time`] tells whether a message is new.
#[derive(Debug)]
pub struct Said {
    capacity: usize,
    seen: HashSet<u64>,
    order: VecDeque<u64>,
}

impl Said {
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            seen: HashSet::new(),
            order: VecDeque::new(),
        }
    }

    /// Whether `note` of `reason` about `subject` (an object's uid) is said for the first time;
    /// remembers it. The oldest message is forgotten once the capacity is reached.
    pub fn first_time(&mut self, subject: &str, reason: &str, note: &str) -> bool {
        let mut h = DefaultHasher::new();
        (subject, reason, note).hash(&mut h);
        let key = h.finish();
        if !self.seen.insert(key) {
            return false;
        }
        self.order.push_back(key);
        while self.order.len() > self.capacity {
            if let Some(old) = self.order.pop_front() {
                self.seen.remove(&old);
            }
        }
        true
    }

    /// How many messages are remembered.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }
}

/// Publishes Events under kafka-expose's reporter, and remembers what is said once.
pub struct Announcer {
    recorder: Recorder,
    said: Mutex<Said>,
}

impl Announcer {
    pub fn new(recorder: Recorder) -> Self {
        Self {
            recorder,
            said: Mutex::new(Said::new(SAID_CAPACITY)),
        }
    }

    /// Publishes `n` about `subject`; a failure is logged, never returned: an Event is news,
    /// and no reconciliation waits on it.
    pub async fn publish(&self, subject: &ObjectReference, n: Note<'_>) {
        let event = Event {
            type_: n.type_,
            reason: n.reason.into(),
            note: Some(n.note.chars().take(NOTE_LIMIT).collect()),
            action: n.action.into(),
            secondary: n.secondary,
        };
        if let Err(e) = self.recorder.publish(&event, subject).await {
            warn!(error = %e, reason = n.reason, "could not publish an Event");
        }
    }

    /// Publishes `n` about `subject` unless the same message was said of the object `uid`
    /// before (within [`SAID_CAPACITY`]). Returns whether it was published.
    pub async fn publish_once(&self, uid: &str, subject: &ObjectReference, n: Note<'_>) -> bool {
        let first = self
            .said
            .lock()
            .map(|mut s| s.first_time(uid, n.reason, n.note))
            .unwrap_or(true);
        if first {
            self.publish(subject, n).await;
        }
        first
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_is_said_once_per_object_and_reason() {
        let mut s = Said::new(8);
        assert!(s.first_time("uid-1", "PolicyAudit", "would expose"));
        assert!(!s.first_time("uid-1", "PolicyAudit", "would expose"));
        assert!(s.first_time("uid-2", "PolicyAudit", "would expose"));
        assert!(s.first_time("uid-1", "PolicyConflict", "would expose"));
        assert!(s.first_time("uid-1", "PolicyAudit", "would expose elsewhere"));
        assert_eq!(s.len(), 4);
    }

    #[test]
    fn the_memory_of_what_was_said_stays_bounded() {
        let mut s = Said::new(100);
        for i in 0..10_000 {
            assert!(s.first_time(&format!("uid-{i}"), "NodeAddressChanged", "restart it"));
            assert!(s.len() <= 100);
        }
        assert_eq!(s.len(), 100);
        assert_eq!(s.seen.len(), 100, "the set and its order agree");
        // The newest are remembered; the oldest forgotten, so said again.
        assert!(!s.first_time("uid-9999", "NodeAddressChanged", "restart it"));
        assert!(s.first_time("uid-0", "NodeAddressChanged", "restart it"));
        assert_eq!(s.len(), 100);
    }
}
