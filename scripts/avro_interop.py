#!/usr/bin/env python3
"""Reads one message from a Pulsar topic with an independent Avro implementation (fastavro),
using the schema the broker's registry holds, and prints it as JSON.

    scripts/avro_interop.py ADMIN_URL persistent://TENANT/NS/TOPIC SUBSCRIPTION [POSITION]

It takes the schema from the registry (GET /admin/v2/schemas/{tenant}/{ns}/{topic}/schema) and the
raw payload by peeking the subscription's backlog (GET .../subscription/{sub}/position/{n}), then
decodes the payload as a raw Avro datum. Nothing of the project's Rust code is involved, so a
successful decode shows that what our producer wrote is plain Avro of the registered schema.
Exits non-zero, saying why, when the schema or the message is missing or does not decode.
"""
import io
import json
import sys
import urllib.error
import urllib.request

try:
    import fastavro
except ImportError:
    sys.exit("fastavro is not installed: pip install fastavro")


def get(url):
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.read()
    except urllib.error.HTTPError as e:
        sys.exit(f"GET {url}: HTTP {e.code}: {e.read()[:300]!r}")


def main():
    if len(sys.argv) not in (4, 5):
        sys.exit(__doc__)
    admin, topic, subscription = sys.argv[1].rstrip("/"), sys.argv[2], sys.argv[3]
    position = sys.argv[4] if len(sys.argv) == 5 else "1"
    prefix = "persistent://"
    if not topic.startswith(prefix):
        sys.exit(f"topic must start with {prefix}")
    path = topic[len(prefix):]
    registered = json.loads(get(f"{admin}/admin/v2/schemas/{path}/schema"))
    if registered.get("type") != "AVRO":
        sys.exit(f"the registry holds a {registered.get('type')} schema, not AVRO")
    schema = fastavro.parse_schema(json.loads(registered["data"]))
    payload = get(f"{admin}/admin/v2/persistent/{path}/subscription/{subscription}/position/{position}")
    buffer = io.BytesIO(payload)
    record = fastavro.schemaless_reader(buffer, schema)
    if buffer.tell() != len(payload):
        sys.exit(f"{len(payload) - buffer.tell()} bytes left after the datum: not a raw datum of this schema")
    print(json.dumps({"schema_version": registered.get("version"), "record": record}, default=str, ensure_ascii=False))


if __name__ == "__main__":
    main()
