"""Expected results, recomputed from the topic itself (not from the generator's seed).

Reads every partition from offset 0 to its high watermark with an assigned consumer (no group,
so the peer's group is untouched) and folds the records into what W1/W2/W3 must produce.
Guarantee: the summary describes exactly the records the peer will read, whoever wrote them.
"""

import json
import time
from dataclasses import dataclass, field

from confluent_kafka import Consumer, TopicPartition


@dataclass
class Expected:
    records: int = 0
    w1_rows: int = 0
    w1_sum_value: int = 0
    w2: dict = field(default_factory=dict)  # key -> [cnt, total]
    w3: dict = field(default_factory=dict)  # (key, window_start) -> [cnt, total]
    max_ts: dict = field(default_factory=dict)  # partition -> largest ts in it

    def w3_closable(self):
        """Windows every peer must have closed: those ending at or before the smallest
        per-partition maximum event time (a watermark taken as min over partitions)."""
        horizon = min(self.max_ts.values())
        return {w for w in self.w3 if w[1] + 1000 <= horizon}


def _fold(e, partition, value):
    r = json.loads(value)
    amount, key, ts = r["amount"], r["key"], r["ts"]
    e.records += 1
    if r["type"] != "view":
        e.w1_rows += 1
        e.w1_sum_value += amount * r["qty"]
    t = e.w2.get(key)
    if t is None:
        e.w2[key] = [1, amount]
    else:
        t[0] += 1
        t[1] += amount
    wk = (key, ts - ts % 1000)
    w = e.w3.get(wk)
    if w is None:
        e.w3[wk] = [1, amount]
    else:
        w[0] += 1
        w[1] += amount
    if ts > e.max_ts.get(partition, -1):
        e.max_ts[partition] = ts


def scan(brokers, topic, partitions, timeout_s=300):
    c = Consumer({"bootstrap.servers": brokers, "group.id": "peers-verifier-unused",
                  "enable.auto.commit": False, "enable.partition.eof": True,
                  "fetch.max.bytes": 64 << 20})
    try:
        ends = {}
        for p in range(partitions):
            lo, hi = c.get_watermark_offsets(TopicPartition(topic, p), timeout=30)
            if hi > lo:
                ends[p] = hi
        c.assign([TopicPartition(topic, p, 0) for p in ends])
        e, left, deadline = Expected(), dict(ends), time.monotonic() + timeout_s
        while left:
            if time.monotonic() > deadline:
                raise TimeoutError(f"reading {topic} for the expected results: {left} left")
            for m in c.consume(10000, 1.0):
                if m.error():
                    continue  # partition EOF events
                p = m.partition()
                if p in left and m.offset() < ends[p]:
                    _fold(e, p, m.value())
                    if m.offset() + 1 >= ends[p]:
                        del left[p]
        return e
    finally:
        c.close()
