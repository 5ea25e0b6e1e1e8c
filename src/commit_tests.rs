//! The committer's promises, with plain values.

use super::*;

fn batch(id: u64, parts: &[(i32, i64, i64)]) -> Batch {
    let mut b = Batch {
        id,
        ..Batch::default()
    };
    for &(p, first, last) in parts {
        b.offsets
            .insert(TopicPartition::new("t", p), OffsetRange { first, last });
    }
    b
}

fn ack(b: &Batch) -> BatchAck {
    BatchAck {
        id: b.id,
        offsets: b.offsets.clone(),
        rows: 0,
        bytes: 0,
        trace: None,
        spent: None,
        committed_at: None,
    }
}

fn tp(p: i32) -> TopicPartition {
    TopicPartition::new("t", p)
}

#[test]
fn nothing_is_committable_before_the_ack() {
    let mut c = Committer::default();
    c.assign(tp(0), None);
    let b = batch(1, &[(0, 0, 9)]);
    c.dispatched(&b);
    assert!(c.pending(Instant::now()).is_empty());
    c.acked(&ack(&b));
    assert_eq!(c.pending(Instant::now())[&tp(0)], 10);
}

#[test]
fn a_resumed_checkpoint_is_committable_at_once() {
    let mut c = Committer::default();
    c.assign(tp(0), Some(42));
    assert_eq!(c.pending(Instant::now())[&tp(0)], 42);
}

#[test]
fn out_of_order_ack_waits_for_earlier_batches() {
    let mut c = Committer::default();
    c.assign(tp(0), None);
    let (b1, b2) = (batch(1, &[(0, 0, 9)]), batch(2, &[(0, 10, 19)]));
    c.dispatched(&b1);
    c.dispatched(&b2);
    c.acked(&ack(&b2));
    assert!(
        c.pending(Instant::now()).is_empty(),
        "batch 1 not yet in the database"
    );
    c.acked(&ack(&b1));
    assert_eq!(c.pending(Instant::now())[&tp(0)], 20);
    assert_eq!(c.in_flight(None), 0);
}

#[test]
fn partitions_advance_independently() {
    let mut c = Committer::default();
    c.assign(tp(0), None);
    c.assign(tp(1), None);
    let (b1, b2) = (batch(1, &[(0, 0, 4), (1, 0, 4)]), batch(2, &[(1, 5, 9)]));
    c.dispatched(&b1);
    c.dispatched(&b2);
    c.acked(&ack(&b1));
    assert_eq!(c.pending(Instant::now())[&tp(0)], 5);
    assert_eq!(c.pending(Instant::now())[&tp(1)], 5);
    assert_eq!(c.in_flight(Some(&[tp(1)])), 1);
}

/// Reports `next` as queued asynchronously at `at`.
fn sent(c: &mut Committer, p: i32, next: i64, at: Instant) {
    let request = CommitRequest {
        offsets: BTreeMap::from([(tp(p), next)]),
    };
    c.sent(&request, Sent::Queued, at);
}

#[test]
fn a_refused_commit_is_retried_after_a_pause_unless_superseded() {
    let t0 = Instant::now();
    let mut c = Committer::default();
    c.assign(tp(0), None);
    let (b1, b2) = (batch(1, &[(0, 0, 9)]), batch(2, &[(0, 10, 19)]));
    c.dispatched(&b1);
    c.acked(&ack(&b1));
    sent(&mut c, 0, 10, t0);
    assert!(!c.has_pending(t0));
    c.commit_result(&[(tp(0), 10, false)], t0);
    assert!(!c.has_pending(t0), "no retry in a tight loop");
    assert_eq!(c.pending(t0 + RETRY_AFTER)[&tp(0)], 10);
    c.dispatched(&b2);
    c.acked(&ack(&b2));
    sent(&mut c, 0, 20, t0);
    c.commit_result(&[(tp(0), 10, false)], t0);
    assert!(
        !c.has_pending(t0 + RETRY_AFTER),
        "a later commit already covers offset 10"
    );
}

#[test]
fn a_partition_refused_inside_a_successful_commit_is_retried_alone() {
    // A result names each partition's outcome; the per-partition errors
    // are what count, whatever the overall result says.
    let t0 = Instant::now();
    let mut c = Committer::default();
    c.assign(tp(0), Some(5));
    c.assign(tp(1), Some(7));
    sent(&mut c, 0, 5, t0);
    sent(&mut c, 1, 7, t0);
    c.commit_result(&[(tp(0), 5, true), (tp(1), 7, false)], t0);
    let later = t0 + RETRY_AFTER;
    assert_eq!(c.pending(later), BTreeMap::from([(tp(1), 7)]));
    sent(&mut c, 1, 7, later);
    c.commit_result(&[(tp(1), 7, true)], later);
    assert!(!c.has_pending(later + RESEND_AFTER), "both confirmed");
}

#[test]
fn a_commit_kafka_never_confirms_is_sent_again_when_idle() {
    let t0 = Instant::now();
    let mut c = Committer::default();
    c.assign(tp(0), Some(42));
    sent(&mut c, 0, 42, t0);
    assert!(!c.has_pending(t0 + RESEND_AFTER / 2));
    assert_eq!(c.pending(t0 + RESEND_AFTER)[&tp(0)], 42);
}

#[test]
fn a_request_holds_every_pending_offset_and_nothing_else() {
    let mut c = Committer::default();
    c.assign(tp(0), None);
    c.assign(tp(1), Some(7));
    let b = batch(1, &[(0, 0, 9)]);
    c.dispatched(&b);
    let now = Instant::now();
    let first = c.request(now).expect("partition 1 resumed at 7");
    assert_eq!(first.offsets, BTreeMap::from([(tp(1), 7)]));
    assert_eq!(first.to_string(), "t/1@7");
    c.sent(&first, Sent::Confirmed, now);
    assert_eq!(c.request(now), None, "a confirmed commit is not pending");
    c.acked(&ack(&b));
    let second = c.request(now).expect("batch 1 acknowledged");
    assert_eq!(second.offsets, BTreeMap::from([(tp(0), 10)]));
}

#[test]
fn a_confirmed_commit_is_never_sent_again_but_a_queued_one_is() {
    let t0 = Instant::now();
    let mut c = Committer::default();
    c.assign(tp(0), Some(3));
    c.assign(tp(1), Some(4));
    let request = c.request(t0).expect("both resumed");
    let only = |p: i32, o: i64| CommitRequest {
        offsets: BTreeMap::from([(tp(p), o)]),
    };
    c.sent(&only(0, 3), Sent::Confirmed, t0);
    c.sent(&only(1, 4), Sent::Queued, t0);
    assert_eq!(request.offsets.len(), 2);
    let later = t0 + RESEND_AFTER;
    assert_eq!(
        c.request(later),
        Some(only(1, 4)),
        "only the unconfirmed one"
    );
}

#[test]
fn revoked_partition_is_never_committed() {
    let mut c = Committer::default();
    c.assign(tp(0), None);
    let b = batch(1, &[(0, 0, 9)]);
    c.dispatched(&b);
    c.revoke(&tp(0));
    c.acked(&ack(&b));
    assert!(c.pending(Instant::now()).is_empty());
    assert!(!c.owns(&tp(0)));
}
