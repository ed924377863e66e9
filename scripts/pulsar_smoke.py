#!/usr/bin/env python3
"""Smoke test of the Apache Pulsar standalone broker run by scripts/pulsar.sh.

Needs the official client: pip install 'pulsar-client[avro]'.

Steps (exit status 0 only if every check passes):
  1. `scripts/pulsar.sh start` (idempotent: reuses a running broker).
  2. Produce 10 Avro messages (pulsar.schema.AvroSchema) on persistent://T/NS/smoke, consume and ack them.
  3. GET /admin/v2/schemas/T/NS/smoke/schema returns the AVRO schema the producer attached.
  4. Schema evolution on a fresh topic: v1, then a backward-compatible v2 (new optional field) attached by
     a producer is accepted (namespace isAllowAutoUpdateSchema=true), an incompatible v3 is rejected
     (BACKWARD_TRANSITIVE).
  5. Produce 5 more without consuming, `scripts/pulsar.sh kill` (kill -9), `scripts/pulsar.sh start`,
     and check that exactly those 5 are delivered after the restart (already-acked messages that come
     again are counted and reported: delivery is at-least-once).
  6. Topic stats over REST: the subscription's backlog drains to 0.

Options: --skip-crash (no kill/restart), --stop (stop the broker at the end).
The environment (PULSAR_BROKER_PORT, PULSAR_HTTP_PORT, PULSAR_DATA_DIR, PULSAR_TENANT, PULSAR_NAMESPACE...)
is passed to scripts/pulsar.sh unchanged.
"""
import argparse
import json
import logging
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
PULSAR_SH = os.path.join(HERE, "pulsar.sh")

failures = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        failures.append(what)
    return cond


def pulsar_sh(cmd):
    """Runs scripts/pulsar.sh CMD; returns (seconds, {KEY: VALUE} from its stdout)."""
    t0 = time.monotonic()
    out = subprocess.run([PULSAR_SH, cmd], stdout=subprocess.PIPE, text=True)
    took = time.monotonic() - t0
    if out.returncode != 0:
        print(out.stdout)
        raise SystemExit(f"scripts/pulsar.sh {cmd} failed with exit code {out.returncode}")
    env = dict(line.split("=", 1) for line in out.stdout.splitlines() if "=" in line)
    return took, env


def http_get(url):
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def http_delete(url):
    req = urllib.request.Request(url, method="DELETE")
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--skip-crash", action="store_true", help="do not kill -9 and restart the broker")
    ap.add_argument("--stop", action="store_true", help="stop the broker at the end")
    args = ap.parse_args()

    try:
        import pulsar
        from pulsar.schema import AvroSchema, Integer, Record, String
    except ImportError as e:
        print(f"FAIL the Pulsar Python client is missing ({e}): pip install 'pulsar-client[avro]'")
        return 1

    took, env = pulsar_sh("start")
    url, admin = env.get("PULSAR_URL"), env.get("PULSAR_ADMIN_URL")
    ns = env.get("PULSAR_NAMESPACE")
    if not (url and admin and ns):
        print(f"FAIL scripts/pulsar.sh start did not print the URLs: {env}")
        return 1
    print(f"broker {url} admin {admin} namespace {ns} (start: {took:.1f} s)")

    # The client logs INFO to stdout by default: warnings only, minus the expected schema rejection below.
    quiet = logging.getLogger("pulsar-client")
    quiet.setLevel(logging.WARNING)
    quiet.addFilter(lambda rec: "IncompatibleSchema" not in rec.getMessage())
    logging.basicConfig(format="client %(levelname)s %(message)s")
    run = uuid.uuid4().hex[:8]
    topic_path = f"{ns}/smoke"
    topic = f"persistent://{topic_path}"
    sub = f"smoke-{run}"

    def event_v1():
        class SmokeEvent(Record):
            run = String(required=True)
            seq = Integer(required=True)
            phase = String(required=True)
        return SmokeEvent

    def event_v2():  # v1 + an optional field: readers of v2 can read v1 data (backward compatible)
        class SmokeEvent(Record):
            run = String(required=True)
            seq = Integer(required=True)
            phase = String(required=True)
            note = String(required_default=True)  # ["null","string"] with "default": null
        return SmokeEvent

    def event_v3():  # seq changes type: not backward compatible
        class SmokeEvent(Record):
            run = String(required=True)
            seq = String(required=True)
            phase = String(required=True)
        return SmokeEvent

    V1 = event_v1()
    client = pulsar.Client(url, operation_timeout_seconds=30, logger=quiet)
    consumer = client.subscribe(topic, sub, schema=AvroSchema(V1),
                                consumer_type=pulsar.ConsumerType.Shared,
                                initial_position=pulsar.InitialPosition.Latest)
    producer = client.create_producer(topic, schema=AvroSchema(V1))

    # --- 10 messages, produced and consumed ---
    for i in range(10):
        producer.send(V1(run=run, seq=i, phase="before"))
    got = []
    deadline = time.monotonic() + 30
    while len(got) < 10 and time.monotonic() < deadline:
        try:
            m = consumer.receive(timeout_millis=2000)
        except pulsar.Timeout:
            continue
        v = m.value()
        consumer.acknowledge(m)
        if v.run == run:
            got.append(v.seq)
    check(sorted(got) == list(range(10)), f"10 Avro messages produced and consumed on {topic} (got {sorted(got)})")

    # --- schema registry over REST ---
    st, body = http_get(f"{admin}/admin/v2/schemas/{topic_path}/schema")
    ok = st == 200
    schema_doc = {}
    if ok:
        schema_doc = json.loads(body)
        inner = json.loads(schema_doc.get("data", "{}"))
        ok = schema_doc.get("type") == "AVRO" and inner.get("name") == "SmokeEvent"
    check(ok, f"GET /admin/v2/schemas/{topic_path}/schema returns the AVRO schema (HTTP {st}, "
              f"type={schema_doc.get('type')}, version={schema_doc.get('version')})")

    # --- schema evolution on a fresh topic ---
    evo_path = f"{ns}/smoke-schema-{run}"
    evo = f"persistent://{evo_path}"
    p1 = client.create_producer(evo, schema=AvroSchema(V1))
    p1.send(V1(run=run, seq=0, phase="v1"))
    V2 = event_v2()
    try:
        p2 = client.create_producer(evo, schema=AvroSchema(V2))
        p2.send(V2(run=run, seq=1, phase="v2", note="added field"))
        p2.close()
        check(True, "a producer attaching a backward-compatible v2 schema is accepted")
    except Exception as e:  # noqa: BLE001
        check(False, f"a producer attaching a backward-compatible v2 schema is accepted ({e!r})")
    V3 = event_v3()
    client3 = pulsar.Client(url, operation_timeout_seconds=30, logger=quiet)
    try:
        p3 = client3.create_producer(evo, schema=AvroSchema(V3))
        p3.close()
        check(False, "a producer attaching an incompatible v3 schema is rejected")
    except Exception as e:  # noqa: BLE001
        check("ncompatible" in f"{type(e).__name__} {e}",
              f"a producer attaching an incompatible v3 schema is rejected ({type(e).__name__}: {e})")
    client3.close()
    p1.close()
    st, body = http_get(f"{admin}/admin/v2/schemas/{evo_path}/schema")
    latest = json.loads(body).get("version") if st == 200 else None
    check(st == 200 and str(latest) == "1", f"schema registry holds versions 0 and 1 of {evo_path} (latest {latest})")

    # --- 5 unconsumed messages across a kill -9 ---
    for i in range(5):
        producer.send(V1(run=run, seq=i, phase="after-kill"))
    producer.close()
    consumer.close()
    client.close()
    stats_url = f"{admin}/admin/v2/persistent/{topic_path}/stats?getPreciseBacklog=true"

    def backlog():
        st, body = http_get(stats_url)
        if st != 200:
            return None
        return json.loads(body).get("subscriptions", {}).get(sub, {}).get("msgBacklog")

    b = None
    for _ in range(50):
        b = backlog()
        if b == 5:
            break
        time.sleep(0.2)
    check(b == 5, f"subscription {sub} has a backlog of 5 before the crash (msgBacklog={b})")

    if not args.skip_crash:
        pulsar_sh("kill")
        took, env2 = pulsar_sh("start")
        print(f"broker restarted after kill -9 in {took:.1f} s")
        client = pulsar.Client(url, operation_timeout_seconds=30, logger=quiet)
        consumer = client.subscribe(topic, sub, schema=AvroSchema(V1), consumer_type=pulsar.ConsumerType.Shared)
        after, redelivered = [], 0
        deadline = time.monotonic() + 60
        while len(after) < 5 and time.monotonic() < deadline:
            try:
                m = consumer.receive(timeout_millis=2000)
            except pulsar.Timeout:
                continue
            v = m.value()
            consumer.acknowledge(m)
            if v.run != run:
                continue
            if v.phase == "after-kill":
                after.append(v.seq)
            else:
                redelivered += 1
        # Anything else still queued?
        extra = 0
        while True:
            try:
                m = consumer.receive(timeout_millis=1500)
            except pulsar.Timeout:
                break
            consumer.acknowledge(m)
            extra += 1
        check(sorted(after) == list(range(5)),
              f"the 5 unconsumed messages are delivered after kill -9 and restart (got {sorted(after)})")
        print(f"info already-acked messages redelivered after the crash: {redelivered}; extra after the 5: {extra}")
        consumer.close()
        client.close()
        client = None
    else:
        client = pulsar.Client(url, operation_timeout_seconds=30, logger=quiet)
        consumer = client.subscribe(topic, sub, schema=AvroSchema(V1), consumer_type=pulsar.ConsumerType.Shared)
        n = 0
        while n < 5:
            try:
                consumer.acknowledge(consumer.receive(timeout_millis=5000))
                n += 1
            except pulsar.Timeout:
                break
        check(n == 5, f"the 5 unconsumed messages are delivered (got {n})")
        consumer.close()
        client.close()

    # --- backlog drains to 0 (acks are asynchronous: poll) ---
    for _ in range(50):
        b = backlog()
        if b == 0:
            break
        time.sleep(0.2)
    check(b == 0, f"subscription {sub} backlog is 0 after consuming (msgBacklog={b})")

    # --- clean up this run's subscription and topic ---
    http_delete(f"{admin}/admin/v2/persistent/{topic_path}/subscription/{sub}")
    http_delete(f"{admin}/admin/v2/persistent/{evo_path}?force=true")

    if args.stop:
        pulsar_sh("stop")

    if failures:
        print(f"\n{len(failures)} check(s) failed:")
        for f in failures:
            print(f"  - {f}")
        return 1
    print("\nall Pulsar smoke checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
