#!/usr/bin/env python3
"""Offline check of deploy/grafana/ (run by scripts/check-deploy.sh): the provisioning
files parse and point where docker-compose.yml mounts the dashboards; each dashboard
is valid JSON with a unique uid, the `datasource` and `gateway` variables, and every
panel but text panels has at least one Prometheus query that uses them. Whether the
queries return data is tests/cluster/prometheus.test.mjs's job (a real Prometheus)."""
import glob
import json
import sys

import yaml

errors = []
ds = yaml.safe_load(open("deploy/grafana/provisioning/datasources/prometheus.yml"))
uids = {d["uid"] for d in ds["datasources"]}
if "prometheus" not in uids:
    errors.append("datasource provisioning: no datasource with uid 'prometheus'")
prov = yaml.safe_load(open("deploy/grafana/provisioning/dashboards/confab.yml"))
paths = [p["options"]["path"] for p in prov["providers"]]
compose = yaml.safe_load(open("docker-compose.yml"))
mounts = compose["services"]["grafana"]["volumes"]
for path in paths:
    if not any(m.startswith("./deploy/grafana/dashboards:" + path) for m in mounts):
        errors.append(f"dashboard provider path {path} is not where docker-compose.yml mounts deploy/grafana/dashboards")

files = sorted(glob.glob("deploy/grafana/dashboards/*.json"))
if len(files) < 4:
    errors.append(f"expected the four dashboards (overview, delivery, redis, abuse), found {files}")
seen = {}
queries = 0
for f in files:
    d = json.load(open(f))
    uid = d.get("uid")
    if not uid or uid in seen:
        errors.append(f"{f}: missing or duplicate uid {uid!r}")
    seen[uid] = f
    names = {v["name"] for v in d.get("templating", {}).get("list", [])}
    for v in ("datasource", "gateway"):
        if v not in names:
            errors.append(f"{f}: no ${v} variable")
    for p in d.get("panels", []):
        if p.get("type") in ("text", "row"):
            continue
        targets = [t for t in p.get("targets", []) if t.get("expr", "").strip()]
        if not targets:
            errors.append(f"{f}: panel {p.get('title')!r} has no query")
        if p.get("datasource", {}).get("uid") != "${datasource}":
            errors.append(f"{f}: panel {p.get('title')!r} does not use the $datasource variable")
        for t in targets:
            queries += 1
            if 'gateway=~"$gateway"' not in t["expr"] and "up{" not in t["expr"]:
                errors.append(f"{f}: panel {p.get('title')!r}: query ignores $gateway: {t['expr']}")
if errors:
    print("\n".join("check-grafana: " + e for e in errors), file=sys.stderr)
    sys.exit(1)
print(f"check-grafana: {len(files)} dashboards, {queries} queries")
