#!/usr/bin/env python3
"""Prints a campaign and its saga's history as the demo shows them: demo_show.py BASE_URL CAMPAIGN_ID SAGA_ID."""
import json
import sys
import urllib.request


def get(url):
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.load(r)


base, campaign_id, saga_id = sys.argv[1:4]
c = get(f"{base}/afiliaciones/campana/{campaign_id}")
if c["estado"] == "activa":
    print("   estado: activa")
else:
    print("   estado: {} ({} at {}: {})".format(c["estado"], c["codigo"], c["paso_fallido"], c["motivo"]))
print(f"   saga {saga_id}:")
for e in get(f"{base}/sagas/{saga_id}")["historia"]:
    ev = e["event"]
    kind = ev["type"]
    extra = ""
    if kind == "command_sent":
        c = ev["command"]["correlation"]
        extra = "{} {} attempt {}".format(c["step_name"], c["kind"], c["attempt"])
    elif kind == "reply_accepted":
        extra = ev["outcome"]["outcome"] + (" " + ev["outcome"]["code"] if "code" in ev["outcome"] else "")
    elif kind == "compensation_started":
        extra = "{}: {}".format(ev["failure"]["code"], ev["failure"]["reason"])
    print("   {:>3} {} {:<22} {}".format(e["seq"], e["at"][11:23], kind, extra))
