"""Development filler: writes N records in the benchmark's record format to a topic.

Same format as the Rust generator (see /work/briefs/workloads.md / README): Kafka key = `key`,
value = JSON {event_id, key, ts, type, amount, qty, tag}; 100,000 keys, uniform or Zipf(1.1);
ts is synthetic event time at 100k records/s (backlog mode). Fixed seed, so a run is repeatable.
It prints the expected results (the same summary run.sh's verifier recomputes from the topic).

Run with the Quix venv's python (it has confluent-kafka):
  target/bench/peers/quix-venv/bin/python benches/peers/fill.py --topic T --records 200000
"""

import argparse
import bisect
import json
import random
import string
import sys

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

TYPES = ["view", "click", "cart", "buy", "like", "share", "search", "exit"]
KEYS = 100_000
TS_BASE = 1_764_000_000_000
ALNUM = string.ascii_letters + string.digits


def zipf_cdf(n, s):
    acc, cdf = 0.0, []
    for rank in range(1, n + 1):
        acc += 1.0 / rank**s
        cdf.append(acc)
    return [c / acc for c in cdf]


def records(n, seed, dist):
    rng = random.Random(seed)
    cdf = zipf_cdf(KEYS, 1.1) if dist == "zipf" else None
    for event_id in range(n):
        k = bisect.bisect_left(cdf, rng.random()) if cdf else rng.randrange(KEYS)
        yield {
            "event_id": event_id,
            "key": "k%06d" % min(k, KEYS - 1),
            "ts": TS_BASE + event_id // 100,
            "type": TYPES[rng.randrange(8)],
            "amount": rng.randint(0, 100_000),
            "qty": rng.randint(1, 10),
            "tag": "".join(rng.choice(ALNUM) for _ in range(48)),
        }


def create_topic(brokers, topic, partitions):
    admin = AdminClient({"bootstrap.servers": brokers})
    fut = admin.create_topics([NewTopic(topic, partitions, 1)])[topic]
    try:
        fut.result(30)
    except Exception as e:  # an existing topic is an error: the data would be mixed
        sys.exit(f"fill: cannot create topic {topic}: {e}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--brokers", default="127.0.0.1:9092")
    ap.add_argument("--topic", required=True)
    ap.add_argument("--partitions", type=int, default=8)
    ap.add_argument("--records", type=int, required=True)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--dist", choices=["uniform", "zipf"], default="uniform")
    a = ap.parse_args()
    create_topic(a.brokers, a.topic, a.partitions)
    p = Producer({"bootstrap.servers": a.brokers, "linger.ms": 20, "batch.size": 1 << 20,
                  "compression.type": "none", "acks": "all", "enable.idempotence": True})
    failed = []
    non_view = value_sum = amount_sum = 0
    keys = set()
    for r in records(a.records, a.seed, a.dist):
        if r["type"] != "view":
            non_view += 1
            value_sum += r["amount"] * r["qty"]
        amount_sum += r["amount"]
        keys.add(r["key"])
        while True:
            try:
                p.produce(a.topic, key=r["key"], value=json.dumps(r, separators=(",", ":")),
                          on_delivery=lambda err, _m: err and failed.append(err))
                break
            except BufferError:
                p.poll(0.05)
        p.poll(0)
    if p.flush(60) or failed:
        sys.exit(f"fill: {len(failed)} records failed to deliver: {failed[:3]}")
    print(json.dumps({"topic": a.topic, "records": a.records, "w1_rows": non_view,
                      "w1_sum_value": value_sum, "w2_keys": len(keys),
                      "w2_sum_total": amount_sum}))


if __name__ == "__main__":
    main()
