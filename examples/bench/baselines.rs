//! The physical limits tidemill is compared with, measured in the same run on
//! the same records: a minimal consumer that discards (raw consume), binary
//! COPY of the W1 rows encoded before the clock starts (raw load), and a
//! minimal consume → decode → COPY program with no transform engine, no
//! offsets stored and no state (consume→COPY).

use crate::db::{self, W1Row};
use crate::gen::{Dist, Generator, TYPES};
use crate::kafka::{backlog_ts, BROKERS};
use crate::machine::{Snapshot, Split};
use anyhow::{bail, Context as _};
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::message::Message as _;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use std::time::{Duration, Instant};

/// Rows per COPY: tidemill's `batch.max_rows` in every generated config.
pub const BATCH_ROWS: usize = 5000;

/// Records processed, the seconds they took (from the first record in), and
/// the bench process's CPU seconds over the same span (the baseline is all
/// it runs then; the database's CPU is not included, as for tidemill), and
/// the whole machine's CPU over the span, by whom.
#[derive(Debug, Clone, Copy)]
pub struct Measure {
    pub records: u64,
    pub secs: f64,
    pub cpu_secs: f64,
    pub machine: Split,
}

impl Measure {
    pub fn rate(&self) -> f64 {
        self.records as f64 / self.secs.max(1e-9)
    }

    /// CPU microseconds per record.
    pub fn cpu_us(&self) -> f64 {
        self.cpu_secs / self.records.max(1) as f64 * 1e6
    }
}

/// A span's start: wall clock, this process's CPU time and the machine's.
struct Start(Instant, f64, Snapshot);

impl Start {
    /// The machine is read first, so that reading it is outside the span.
    fn now() -> Self {
        let machine = Snapshot::take(std::process::id());
        Self(Instant::now(), process_cpu(), machine)
    }

    fn measure(self, records: u64) -> Measure {
        let (secs, cpu_secs) = (self.0.elapsed().as_secs_f64(), process_cpu() - self.1);
        Measure {
            records,
            secs,
            cpu_secs,
            machine: self.2.until(&Snapshot::take(std::process::id())),
        }
    }
}

/// utime + stime of this process, all threads (librdkafka's included).
fn process_cpu() -> f64 {
    crate::runner::Proc::cpu_of("self").map_or(0.0, |(cpu, _)| cpu)
}

fn assigned_consumer(topic: &str, group: &str) -> anyhow::Result<BaseConsumer> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", BROKERS)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("fetch.max.bytes", "52428800")
        .create()?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..crate::gen::PARTITIONS {
        tpl.add_partition_offset(topic, p, Offset::Beginning)?;
    }
    c.assign(&tpl)?;
    Ok(c)
}

/// Reads the whole topic and discards every record.
pub fn raw_consume(topic: &str, n: u64) -> anyhow::Result<Measure> {
    let c = assigned_consumer(topic, &format!("{topic}-raw"))?;
    let deadline = Instant::now() + Duration::from_secs(600);
    let (mut seen, mut bytes, mut first) = (0u64, 0usize, None);
    while seen < n {
        if Instant::now() > deadline {
            bail!("raw consume: {seen} of {n} records before the deadline");
        }
        if let Some(m) = c.poll(Duration::from_millis(100)) {
            let m = m?;
            first.get_or_insert_with(Start::now);
            bytes += m.payload().map_or(0, <[u8]>::len);
            seen += 1;
        }
    }
    std::hint::black_box(bytes);
    let first = first.context("raw consume: no record")?;
    Ok(first.measure(n))
}

/// Binary COPY of the W1 rows of the backlog's `n` records, `BATCH_ROWS` per
/// COPY, every buffer encoded before the clock starts.
pub async fn raw_copy(db: &str, dist: Dist, n: u64, base: i64) -> anyhow::Result<Measure> {
    let mut gen = Generator::new(dist);
    let mut buffers = Vec::new();
    let (mut buf, mut rows) = (Vec::new(), 0);
    for i in 0..n {
        let e = gen.next(backlog_ts(base, i));
        if !db::w1_keeps(TYPES[e.kind]) {
            continue;
        }
        if rows == 0 {
            db::copy_header(&mut buf);
        }
        let key = e.key_str();
        W1Row {
            event_id: i64::try_from(e.event_id)?,
            key: &key,
            ts: e.ts,
            kind: TYPES[e.kind],
            amount: e.amount,
            qty: i32::try_from(e.qty)?,
        }
        .encode(&mut buf);
        rows += 1;
        if rows == BATCH_ROWS {
            db::copy_trailer(&mut buf);
            buffers.push(std::mem::take(&mut buf));
            rows = 0;
        }
    }
    if rows > 0 {
        db::copy_trailer(&mut buf);
        buffers.push(buf);
    }
    let mut c = db::connect(db).await?;
    let started = Start::now();
    for b in &buffers {
        db::copy_in(&mut c, b).await?;
    }
    Ok(started.measure(n))
}

#[derive(serde::Deserialize)]
struct Rec<'a> {
    event_id: i64,
    #[serde(borrow)]
    key: &'a str,
    ts: i64,
    #[serde(rename = "type", borrow)]
    kind: &'a str,
    amount: i64,
    qty: i32,
}

/// Consume → decode → filter/compute W1's value → binary COPY per
/// `BATCH_ROWS` rows, on one thread.
pub fn consume_copy(topic: &str, db: &str, n: u64) -> anyhow::Result<Measure> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut conn = rt.block_on(db::connect(db))?;
    let c = assigned_consumer(topic, &format!("{topic}-copy"))?;
    let deadline = Instant::now() + Duration::from_secs(600);
    let (mut seen, mut first, mut rows) = (0u64, None, 0usize);
    let mut buf = Vec::with_capacity(1 << 20);
    while seen < n {
        if Instant::now() > deadline {
            bail!("consume→COPY: {seen} of {n} records before the deadline");
        }
        let Some(m) = c.poll(Duration::from_millis(100)) else {
            continue;
        };
        let m = m?;
        first.get_or_insert_with(Start::now);
        seen += 1;
        let r: Rec = serde_json::from_slice(m.payload().unwrap_or_default())
            .context("decoding a generated record")?;
        if db::w1_keeps(r.kind) {
            if rows == 0 {
                db::copy_header(&mut buf);
            }
            W1Row {
                event_id: r.event_id,
                key: r.key,
                ts: r.ts,
                kind: r.kind,
                amount: r.amount,
                qty: r.qty,
            }
            .encode(&mut buf);
            rows += 1;
        }
        if rows > 0 && (rows == BATCH_ROWS || seen == n) {
            db::copy_trailer(&mut buf);
            rt.block_on(db::copy_in(&mut conn, &buf))?;
            buf.clear();
            rows = 0;
        }
    }
    let first = first.context("consume→COPY: no record")?;
    Ok(first.measure(n))
}
