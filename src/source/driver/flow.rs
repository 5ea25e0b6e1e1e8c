//! Flow control of the source: how much the writer may hold, and when the
//! partitions pause.
//!
//! Contract: at most `batch.max_in_flight` batches are handed to the writer
//! and not yet finished (each holds a slot until the writer drops it), and
//! consumption pauses while more than `batch.max_in_flight_bytes` of payload
//! is consumed and not yet in the database. The partitions pause when no slot
//! is free for a due batch or the byte budget is spent, and resume only when
//! neither holds. [`Flow`] decides; the driver carries out a [`Switch`] on
//! the consumer (the only I/O), so every rule here is tested with values.

use std::sync::Arc;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// What to do to the assigned partitions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Switch {
    Pause,
    Resume,
    Stay,
}

#[derive(Debug)]
pub struct Flow {
    /// One permit per batch the writer may hold; a batch carries its permit
    /// until the writer drops it.
    slots: Arc<Semaphore>,
    max_in_flight: usize,
    /// The open batch is due but no slot is free.
    waiting: bool,
    paused: bool,
    /// Payload bytes handed to the writer and not yet acknowledged.
    in_flight_bytes: usize,
    max_in_flight_bytes: usize,
}

impl Flow {
    pub fn new(max_in_flight: usize, max_in_flight_bytes: usize) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(max_in_flight)),
            max_in_flight,
            waiting: false,
            paused: false,
            in_flight_bytes: 0,
            max_in_flight_bytes,
        }
    }

    /// The slots, to wait on one from the poll thread.
    pub fn slots(&self) -> Arc<Semaphore> {
        Arc::clone(&self.slots)
    }

    /// A free slot, if any, without waiting.
    pub fn try_slot(&self) -> Option<OwnedSemaphorePermit> {
        Arc::clone(&self.slots).try_acquire_owned().ok()
    }

    /// A batch of `bytes` went to the writer with its slot: resume if paused.
    pub fn sent(&mut self, bytes: usize) -> Switch {
        self.in_flight_bytes += bytes;
        self.waiting = false;
        self.resume()
    }

    /// The writer acknowledged a batch of `bytes`.
    pub fn acked(&mut self, bytes: usize) {
        self.in_flight_bytes = self.in_flight_bytes.saturating_sub(bytes);
    }

    /// A batch is due and no slot is free: it stays open and consumption pauses.
    pub fn no_slot(&mut self) -> Switch {
        self.waiting = true;
        self.pause()
    }

    /// The byte budget with `open_bytes` in the open batch: pause over it,
    /// resume under it unless a due batch waits for a slot.
    pub fn budget(&mut self, open_bytes: usize) -> Switch {
        let over = self.in_flight_bytes + open_bytes > self.max_in_flight_bytes;
        if over {
            self.pause()
        } else if !self.waiting {
            self.resume()
        } else {
            Switch::Stay
        }
    }

    /// Whether consumption is held back (idle clocks must not run meanwhile).
    pub fn holding(&self) -> bool {
        self.waiting || self.paused
    }

    pub fn paused(&self) -> bool {
        self.paused
    }

    pub fn in_flight_bytes(&self) -> usize {
        self.in_flight_bytes
    }

    /// Batches the writer holds now (a slot frees just after the writer sent
    /// its batch's ack: this may lag by one poll).
    pub fn held(&self) -> usize {
        self.max_in_flight - self.slots.available_permits()
    }

    fn pause(&mut self) -> Switch {
        if self.paused {
            return Switch::Stay;
        }
        self.paused = true;
        Switch::Pause
    }

    fn resume(&mut self) -> Switch {
        if !self.paused {
            return Switch::Stay;
        }
        self.paused = false;
        Switch::Resume
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_writer_holds_at_most_max_in_flight_slots() {
        let flow = Flow::new(2, usize::MAX);
        let (a, b) = (flow.try_slot(), flow.try_slot());
        assert!(a.is_some() && b.is_some());
        assert!(flow.try_slot().is_none(), "a third batch gets no slot");
        assert_eq!(flow.held(), 2);
        drop(a);
        assert_eq!(flow.held(), 1);
        assert!(flow.try_slot().is_some(), "a dropped slot is free again");
    }

    #[test]
    fn no_slot_pauses_once_and_the_next_send_resumes() {
        let mut flow = Flow::new(1, usize::MAX);
        assert_eq!(flow.no_slot(), Switch::Pause);
        assert_eq!(flow.no_slot(), Switch::Stay, "paused already");
        assert!(flow.holding());
        assert_eq!(
            flow.budget(0),
            Switch::Stay,
            "a due batch still waits for its slot"
        );
        assert_eq!(flow.sent(10), Switch::Resume);
        assert!(!flow.holding());
    }

    #[test]
    fn the_byte_budget_pauses_over_it_and_resumes_below_it() {
        let mut flow = Flow::new(4, 100);
        assert_eq!(flow.sent(60), Switch::Stay);
        assert_eq!(
            flow.budget(40),
            Switch::Stay,
            "exactly the budget is within it"
        );
        assert_eq!(flow.budget(41), Switch::Pause);
        assert_eq!(flow.budget(41), Switch::Stay);
        flow.acked(60);
        assert_eq!(flow.in_flight_bytes(), 0);
        assert_eq!(flow.budget(41), Switch::Resume);
    }
}
