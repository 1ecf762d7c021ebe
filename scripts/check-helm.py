#!/usr/bin/env python3
"""Checks the Helm chart in helm/capstan without a cluster.

Prerequisite (this script installs nothing):

    pip install helm-python-sdk kubernetes-validate

helm-python-sdk bundles the Helm engine (lint, render, values.schema.json validation);
kubernetes-validate checks manifests against the Kubernetes 1.30 schemas offline.

What it does:

1. Lints the chart strictly (warnings are failures).
2. Renders it for several value sets (defaults, external database and keys from
   existing Secrets, S3, RWX volume, autoscaling, ingress, ServiceMonitor and
   PrometheusRule), each validated against values.schema.json first.
3. Validates every rendered manifest with `kubernetes-validate -k 1.30.0 --strict`,
   except the Prometheus Operator kinds (CRDs, no offline schema), which are checked
   structurally instead: the PrometheusRule's groups must equal files/alerts.yml.
4. Asserts the Deployment's contract: probes, preStop drain, termination grace above
   the drain plus the shutdown grace, non-root, read-only root, no capabilities, env.
5. Negative cases: bad values must be refused with a message naming the problem, and
   a template with a syntax error injected (in a temporary copy) must fail to render.

Usage: scripts/check-helm.py [path/to/chart]   (default: helm/capstan)
Exits non-zero with the failures listed if anything is wrong.
"""

from __future__ import annotations

import copy
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

try:
    import helm_python
    import yaml
except ImportError as e:  # pragma: no cover
    sys.exit(f"check-helm: {e}: run `pip install helm-python-sdk kubernetes-validate` first")

ROOT = Path(__file__).resolve().parent.parent
CHART = Path(sys.argv[1]).resolve() if len(sys.argv) > 1 else ROOT / "helm" / "capstan"
KUBE_VERSION = "1.30.0"
RELEASE = "capstan"
NAMESPACE = "capstan"
# Custom resources: no schema offline, checked structurally below.
CRD_KINDS = {"ServiceMonitor", "PrometheusRule"}

FAILURES: list[str] = []


def fail(msg: str) -> None:
    FAILURES.append(msg)
    print(f"  FAIL {msg}")


def ok(msg: str) -> None:
    print(f"  ok   {msg}")


def check(cond: bool, msg: str) -> None:
    (ok if cond else fail)(msg)


def merge(base: dict, extra: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge(out[k], v)
        else:
            out[k] = v
    return out


REQUIRED = {
    "database": {"url": "postgres://capstan:secret@db.example.internal:5432/capstan"},
    "auth": {
        "masterKey": "q83vEjQ2B7xvS0n4cJrW1mK9zF6tYhLpA5eGdU8oXiM=",
        "adminApiKey": "0123456789abcdef0123456789abcdef0123456789abcdef",
    },
}

CASES: dict[str, dict] = {
    "defaults": REQUIRED,
    "key-rotation": merge(
        REQUIRED,
        {"auth": {"masterKeyPrevious": "b2xkLWtleS1mb3ItdGhlLWNoYXJ0LWNoZWNrLTAxMjM=,q83vEjQ2B7xvS0n4cJrW1mK9zF6tYhLpA5eGdU8oXiM="}},
    ),
    "external-secrets": {
        "database": {"existingSecret": "capstan-db", "existingSecretKey": "url"},
        "auth": {
            "existingSecret": "capstan-keys",
            "masterKeyKey": "mk",
            "adminApiKeyKey": "ak",
        },
    },
    "s3": merge(
        REQUIRED,
        {
            "blob": {
                "type": "s3",
                "s3": {
                    "bucket": "deploys",
                    "prefix": "capstan/",
                    "endpoint": "http://minio.minio.svc:9000",
                    "pathStyle": True,
                    "region": "eu-west-1",
                    "existingSecret": "capstan-s3",
                },
            }
        },
    ),
    "s3-inline-credentials": merge(
        REQUIRED,
        {
            "blob": {
                "type": "s3",
                "s3": {"bucket": "deploys", "accessKeyId": "AKIA0000", "secretAccessKey": "s3cr3t"},
            }
        },
    ),
    "volume-existing-claim": merge(
        REQUIRED, {"blob": {"type": "volume", "volume": {"existingClaim": "capstan-nfs"}}}
    ),
    "autoscaling": merge(REQUIRED, {"autoscaling": {"enabled": True, "minReplicas": 3, "maxReplicas": 8}}),
    "ingress": merge(
        REQUIRED,
        {
            "ingress": {
                "enabled": True,
                "className": "nginx",
                "tls": [{"secretName": "capstan-tls", "hosts": ["capstan.example.com"]}],
            },
            "config": {"trustedProxies": ["10.244.0.0/16"], "taskCap": 8},
        },
    ),
    "monitoring": merge(
        REQUIRED,
        {
            "metrics": {
                "serviceMonitor": {"enabled": True, "labels": {"release": "kube-prometheus"}},
                "prometheusRule": {"enabled": True},
            },
            "topologySpread": {"enabled": True},
            "publicUrl": "http://[$(POD_IP)]:8080",
            "podAntiAffinity": "hard",
            "terminationGracePeriodSeconds": 900,
            "resources": {"limits": {"memory": "1Gi"}},
        },
    ),
}

# (name, values, substrings the error must contain): the schema or the templates must refuse.
NEGATIVE: list[tuple[str, dict, list[str]]] = [
    ("blob.type ftp", merge(REQUIRED, {"blob": {"type": "ftp"}}), ["blob", "type"]),
    ("replicaCount 0", merge(REQUIRED, {"replicaCount": 0}), ["replicaCount", "minimum"]),
    ("taskCap 1001", merge(REQUIRED, {"config": {"taskCap": 1001}}), ["taskCap", "maximum"]),
    ("duration without unit", merge(REQUIRED, {"config": {"shutdownGrace": "300"}}), ["shutdownGrace"]),
    ("unknown top-level key", merge(REQUIRED, {"replicas": 3}), ["replicas"]),
    ("unknown key in blob.s3", merge(REQUIRED, {"blob": {"s3": {"bucekt": "x"}}}), ["bucekt"]),
    ("s3 without bucket", merge(REQUIRED, {"blob": {"type": "s3"}}), ["bucket"]),
    (
        "volume without claim or size",
        merge(REQUIRED, {"blob": {"type": "volume", "volume": {"size": ""}}}),
        ["size"],
    ),
    ("no database", {"auth": REQUIRED["auth"]}, ["database"]),
    ("short admin key", merge(REQUIRED, {"auth": {"adminApiKey": "short"}}), ["adminApiKey"]),
    (
        "termination grace too short",
        merge(REQUIRED, {"terminationGracePeriodSeconds": 400}),
        ["terminationGracePeriodSeconds (400) must exceed"],
    ),
    (
        "lease below three heartbeats",
        merge(REQUIRED, {"config": {"heartbeatInterval": "30s", "leaseTtl": "60s"}}),
        ["leaseTtl"],
    ),
]


def seconds(duration: str) -> float:
    m = re.fullmatch(r"([0-9]+)(ms|s|m|h|d)", duration)
    if not m:
        raise ValueError(f"not a duration: {duration}")
    n, unit = int(m.group(1)), m.group(2)
    return n * {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}[unit]


def render(chart: helm_python.Chart, values: dict) -> list[dict]:
    """Validates values against the schema, renders, returns the parsed manifests."""
    chart.validate_schema(values)
    out = chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    docs = []
    for path, text in sorted(out.items()):
        if not path.endswith((".yaml", ".yml")):
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                doc.setdefault("metadata", {}).setdefault("annotations", {})
                docs.append(doc)
    return docs, out


def kube_validate(docs: list[dict], workdir: Path, case: str) -> None:
    plain = [d for d in docs if d["kind"] not in CRD_KINDS]
    skipped = sorted({d["kind"] for d in docs if d["kind"] in CRD_KINDS})
    path = workdir / f"{case}.yaml"
    path.write_text(yaml.safe_dump_all(plain, sort_keys=False))
    proc = subprocess.run(
        ["kubernetes-validate", "-k", KUBE_VERSION, "--strict", "--quiet", str(path)],
        capture_output=True,
        text=True,
    )
    kinds = ", ".join(sorted(d["kind"] for d in plain))
    if proc.returncode != 0:
        fail(f"{case}: kubernetes-validate {KUBE_VERSION} --strict refused:\n{proc.stdout}{proc.stderr}")
    else:
        ok(f"{case}: kubernetes-validate {KUBE_VERSION} --strict: {kinds}")
    if skipped:
        print(f"       (not schema-validated, custom resources: {', '.join(skipped)})")


def env_of(container: dict) -> dict:
    return {e["name"]: e for e in container.get("env", [])}


def check_deployment(case: str, values: dict, docs: list[dict], merged: dict) -> None:
    deps = [d for d in docs if d["kind"] == "Deployment"]
    if len(deps) != 1:
        fail(f"{case}: expected one Deployment, got {len(deps)}")
        return
    dep = deps[0]
    spec = dep["spec"]
    pod = spec["template"]["spec"]
    c = pod["containers"][0]
    env = env_of(c)
    p = f"{case}: Deployment"

    if merged["autoscaling"]["enabled"]:
        check("replicas" not in spec, f"{p} leaves replicas to the HPA")
    else:
        check(spec.get("replicas") == merged["replicaCount"], f"{p} replicas {spec.get('replicas')}")
    ru = spec["strategy"].get("rollingUpdate", {})
    check(
        spec["strategy"]["type"] == "RollingUpdate" and ru.get("maxUnavailable") == 0 and ru.get("maxSurge") == 1,
        f"{p} strategy {spec['strategy']} (want RollingUpdate maxUnavailable 0 maxSurge 1)",
    )
    check(c.get("args") == ["server"], f"{p} runs `capstan server`")
    rp = c.get("readinessProbe", {}).get("httpGet", {})
    check(rp.get("path") == "/api/nodes/ping", f"{p} readiness GET {rp.get('path')} (want /api/nodes/ping)")
    lp = c.get("livenessProbe", {}).get("httpGet", {})
    check(lp.get("path") == "/healthz", f"{p} liveness GET {lp.get('path')} (want /healthz)")

    cmd = " ".join(c.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", []))
    drain_timeout = merged["drain"]["timeout"]
    check(
        "capstan nodes drain \"$CAPSTAN_NODE_NAME\" --wait" in cmd
        and f"--timeout {drain_timeout}" in cmd
        and "--server http://127.0.0.1:8080" in cmd,
        f"{p} preStop drains its own node: {cmd!r}",
    )
    check(
        env.get("CAPSTAN_API_KEY", {}).get("valueFrom", {}).get("secretKeyRef", {}).get("key")
        == env.get("CAPSTAN_ADMIN_API_KEY", {}).get("valueFrom", {}).get("secretKeyRef", {}).get("key"),
        f"{p} the CLI's CAPSTAN_API_KEY is the admin key",
    )

    grace = pod.get("terminationGracePeriodSeconds", 0)
    shutdown = seconds(merged["config"]["shutdownGrace"])
    prestop = seconds(drain_timeout) + merged["drain"]["settleSeconds"]
    check(
        grace > shutdown + prestop,
        f"{p} terminationGracePeriodSeconds {grace} > preStop {prestop:g}s + shutdown grace {shutdown:g}s",
    )
    check(env.get("CAPSTAN_SHUTDOWN_GRACE", {}).get("value") == merged["config"]["shutdownGrace"],
          f"{p} CAPSTAN_SHUTDOWN_GRACE={env.get('CAPSTAN_SHUTDOWN_GRACE', {}).get('value')}")

    sc, psc = c.get("securityContext", {}), pod.get("securityContext", {})
    check(
        sc.get("runAsNonRoot") is True and psc.get("runAsNonRoot") is True and sc.get("runAsUser") == 10001,
        f"{p} runs as non-root uid {sc.get('runAsUser')}",
    )
    check(sc.get("readOnlyRootFilesystem") is True, f"{p} read-only root filesystem")
    check(sc.get("capabilities", {}).get("drop") == ["ALL"], f"{p} drops ALL capabilities")
    check(sc.get("allowPrivilegeEscalation") is False, f"{p} no privilege escalation")

    node = env.get("CAPSTAN_NODE_NAME", {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath")
    check(node == "metadata.name", f"{p} CAPSTAN_NODE_NAME from {node}")
    check(
        env.get("POD_IP", {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "status.podIP"
        and env.get("CAPSTAN_PUBLIC_URL", {}).get("value") == (merged["publicUrl"] or "http://$(POD_IP):8080"),
        f"{p} CAPSTAN_PUBLIC_URL from the pod IP",
    )
    names = list(env)
    check(
        names.index("POD_IP") < names.index("CAPSTAN_PUBLIC_URL"),
        f"{p} POD_IP is defined before CAPSTAN_PUBLIC_URL uses it",
    )
    own = dep["metadata"]["name"]
    db, auth = merged["database"], merged["auth"]
    want_refs = {
        "CAPSTAN_DATABASE_URL": (db["existingSecret"] or own, db["existingSecretKey"] if db["existingSecret"] else "database-url"),
        "CAPSTAN_MASTER_KEY": (auth["existingSecret"] or own, auth["masterKeyKey"] if auth["existingSecret"] else "master-key"),
        "CAPSTAN_ADMIN_API_KEY": (auth["existingSecret"] or own, auth["adminApiKeyKey"] if auth["existingSecret"] else "admin-api-key"),
    }
    secrets = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Secret"}
    for secret_env, (name, key) in want_refs.items():
        ref = env.get(secret_env, {}).get("valueFrom", {}).get("secretKeyRef", {})
        check((ref.get("name"), ref.get("key")) == (name, key), f"{p} {secret_env} from Secret {name} key {key}")
        if name == own:
            check(key in (secrets.get(own, {}).get("data") or {}), f"{p} the chart's Secret holds {key}")
        else:
            check(name not in secrets, f"{p} does not create the existing Secret {name}")
    # The previous master key is optional: present only during a rotation.
    previous_key = auth["masterKeyPreviousKey"] if auth["existingSecret"] else "master-key-previous"
    ref = env.get("CAPSTAN_MASTER_KEY_PREVIOUS", {}).get("valueFrom", {}).get("secretKeyRef", {})
    check(
        (ref.get("name"), ref.get("key"), ref.get("optional")) == (auth["existingSecret"] or own, previous_key, True),
        f"{p} CAPSTAN_MASTER_KEY_PREVIOUS from Secret key {previous_key}, optional",
    )
    if not auth["existingSecret"]:
        held = previous_key in (secrets.get(own, {}).get("data") or {})
        check(held == bool(auth["masterKeyPrevious"]), f"{p} the chart's Secret holds {previous_key} only while rotating")

    blob = merged["blob"]
    url = env.get("CAPSTAN_BLOB_URL", {}).get("value")
    mounts = {m["name"]: m["mountPath"] for m in c.get("volumeMounts", [])}
    if blob["type"] == "s3":
        s3 = blob["s3"]
        prefix = s3["prefix"].strip("/")
        want = f"s3://{s3['bucket']}/{prefix}" if prefix else f"s3://{s3['bucket']}"
        check(url == want, f"{p} CAPSTAN_BLOB_URL={url}")
        check("blobs" not in mounts, f"{p} mounts no blob volume")
        if s3["endpoint"]:
            check(env.get("CAPSTAN_S3_ENDPOINT", {}).get("value") == s3["endpoint"], f"{p} CAPSTAN_S3_ENDPOINT")
        check(env.get("CAPSTAN_S3_PATH_STYLE", {}).get("value") == str(s3["pathStyle"]).lower(),
              f"{p} CAPSTAN_S3_PATH_STYLE={env.get('CAPSTAN_S3_PATH_STYLE', {}).get('value')}")
        if s3["existingSecret"] or s3["accessKeyId"]:
            ref = env.get("AWS_ACCESS_KEY_ID", {}).get("valueFrom", {}).get("secretKeyRef", {})
            want_name = s3["existingSecret"] or dep["metadata"]["name"]
            check(ref.get("name") == want_name and "AWS_SECRET_ACCESS_KEY" in env,
                  f"{p} AWS credentials from Secret {ref.get('name')}")
    else:
        check(url == "file:///var/lib/capstan/blobs", f"{p} CAPSTAN_BLOB_URL={url}")
        check(mounts.get("blobs") == "/var/lib/capstan/blobs", f"{p} blob volume at /var/lib/capstan/blobs")
        claim = next(v for v in pod["volumes"] if v["name"] == "blobs")["persistentVolumeClaim"]["claimName"]
        pvcs = [d for d in docs if d["kind"] == "PersistentVolumeClaim"]
        if blob["volume"]["existingClaim"]:
            check(claim == blob["volume"]["existingClaim"] and not pvcs, f"{p} uses the existing claim {claim}")
        else:
            check(
                len(pvcs) == 1 and pvcs[0]["metadata"]["name"] == claim
                and pvcs[0]["spec"]["accessModes"] == ["ReadWriteMany"],
                f"{p} uses the ReadWriteMany claim it creates ({claim})",
            )
    for required_env in (
        "CAPSTAN_HEARTBEAT_INTERVAL", "CAPSTAN_LEASE_TTL", "CAPSTAN_REQUEST_TIMEOUT", "CAPSTAN_MAX_UPLOAD_SIZE",
        "CAPSTAN_TASK_LOG_CAP", "CAPSTAN_DB_POOL_SIZE", "CAPSTAN_LOG_FORMAT", "CAPSTAN_LISTEN",
    ):
        if required_env not in env:
            fail(f"{p} lacks {required_env}")
    if merged["config"]["taskCap"] is None:
        check("CAPSTAN_TASK_CAP" not in env, f"{p} leaves CAPSTAN_TASK_CAP unset")
    else:
        check(env.get("CAPSTAN_TASK_CAP", {}).get("value") == str(merged["config"]["taskCap"]), f"{p} CAPSTAN_TASK_CAP")


def check_others(case: str, docs: list[dict], merged: dict, alerts: dict) -> None:
    kinds = {d["kind"]: d for d in docs}
    svc = kinds.get("Service")
    check(
        svc is not None and svc["spec"]["type"] == "ClusterIP" and svc["spec"]["ports"][0]["port"] == 8080,
        f"{case}: Service ClusterIP :8080",
    )
    pdb = kinds.get("PodDisruptionBudget")
    check(pdb is not None and pdb["spec"].get("maxUnavailable") == 1, f"{case}: PodDisruptionBudget maxUnavailable 1")
    check(("HorizontalPodAutoscaler" in kinds) == merged["autoscaling"]["enabled"], f"{case}: HPA only when enabled")
    check(("Ingress" in kinds) == merged["ingress"]["enabled"], f"{case}: Ingress only when enabled")
    if "Ingress" in kinds:
        ann = kinds["Ingress"]["metadata"].get("annotations", {})
        check(ann.get("nginx.ingress.kubernetes.io/proxy-body-size") == "0", f"{case}: Ingress allows large uploads")
    secrets = [d for d in docs if d["kind"] == "Secret"]
    for s in secrets:
        for k, v in (s.get("data") or {}).items():
            if not v:
                fail(f"{case}: Secret {s['metadata']['name']} has an empty {k}")
    sm = kinds.get("ServiceMonitor")
    check((sm is not None) == merged["metrics"]["serviceMonitor"]["enabled"], f"{case}: ServiceMonitor only when enabled")
    if sm:
        ep = sm["spec"]["endpoints"][0]
        check(
            sm["apiVersion"] == "monitoring.coreos.com/v1"
            and ep.get("port") == "http" and ep.get("path") == "/metrics"
            and sm["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items(),
            f"{case}: ServiceMonitor scrapes the Service's http port at /metrics",
        )
    pr = kinds.get("PrometheusRule")
    check((pr is not None) == merged["metrics"]["prometheusRule"]["enabled"], f"{case}: PrometheusRule only when enabled")
    if pr:
        check(pr["apiVersion"] == "monitoring.coreos.com/v1", f"{case}: PrometheusRule apiVersion")
        check(pr["spec"]["groups"] == alerts["groups"], f"{case}: PrometheusRule groups equal files/alerts.yml")


def negative_values(chart: helm_python.Chart) -> None:
    print("negative cases (each must be refused):")
    for name, values, needles in NEGATIVE:
        try:
            render(chart, values)
        except helm_python.HelmError as e:
            msg = str(e)
            first = " ".join(msg.split())[:300]
            if all(n.lower() in msg.lower() for n in needles):
                ok(f"refused {name}: {first}")
            else:
                fail(f"{name}: refused, but the message does not name {needles}: {msg}")
        else:
            fail(f"{name}: accepted, but it must be refused")


def negative_kube_validate(chart: helm_python.Chart) -> None:
    """A manifest with an unknown field must fail kubernetes-validate --strict."""
    docs, _ = render(chart, REQUIRED)
    dep = next(d for d in docs if d["kind"] == "Deployment")
    dep["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGett"] = {"path": "/"}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "broken.yaml"
        path.write_text(yaml.safe_dump(dep))
        proc = subprocess.run(
            ["kubernetes-validate", "-k", KUBE_VERSION, "--strict", "--quiet", str(path)],
            capture_output=True,
            text=True,
        )
    out = " ".join((proc.stdout + proc.stderr).split())
    check(proc.returncode != 0 and "httpGett" in out,
          f"kubernetes-validate refused a Deployment with an unknown field: {out[:200]}")


def negative_broken_template() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        copy_dir = Path(tmp) / "capstan"
        shutil.copytree(CHART, copy_dir)
        tpl = copy_dir / "templates" / "service.yaml"
        tpl.write_text(tpl.read_text() + "\n{{ if .Values.service.port }}\n")  # unclosed action
        try:
            broken = helm_python.Chart.load(copy_dir)
            broken.render(REQUIRED, name=RELEASE, namespace=NAMESPACE, is_install=True)
        except helm_python.HelmError as e:
            ok(f"refused a template with a syntax error: {' '.join(str(e).split())[:200]}")
        else:
            fail("a template with a syntax error rendered without error")
        lint = helm_python.lint(copy_dir, REQUIRED, strict=True, kube_version=f"v{KUBE_VERSION}")
        check(bool(lint["errors"]) or any(m["severity"] >= 2 for m in lint["messages"]),
              "lint reports the broken template")


def main() -> int:
    if shutil.which("kubernetes-validate") is None:
        sys.exit("check-helm: kubernetes-validate not found: pip install helm-python-sdk kubernetes-validate")
    print(f"chart {CHART}")
    alerts = yaml.safe_load((CHART / "files" / "alerts.yml").read_text())
    check(isinstance(alerts, dict) and isinstance(alerts.get("groups"), list) and alerts["groups"],
          "files/alerts.yml has a groups list")

    print("lint (strict):")
    for case in ("defaults", "s3", "monitoring"):
        res = helm_python.lint(CHART, CASES[case], strict=True, kube_version=f"v{KUBE_VERSION}")
        problems = [m for m in res["messages"] if m["severity"] >= 2] + [{"error": e} for e in res["errors"]]
        check(not problems, f"lint {case}: " + ("clean" if not problems else "; ".join(m["error"] for m in problems)))

    chart = helm_python.Chart.load(CHART)
    defaults = chart.values
    with tempfile.TemporaryDirectory() as tmp:
        for case, values in CASES.items():
            print(f"render {case}:")
            try:
                docs, out = render(chart, values)
            except helm_python.HelmError as e:
                fail(f"{case}: {e}")
                continue
            merged = merge(defaults, values)
            kube_validate(docs, Path(tmp), case)
            check_deployment(case, values, docs, merged)
            check_others(case, docs, merged, alerts)
            notes = next((t for p, t in out.items() if p.endswith("NOTES.txt")), "")
            check("capstan nodes drain" in notes and "base64 -d" in notes, f"{case}: NOTES say how to drain and get the key")

    negative_values(chart)
    negative_kube_validate(chart)
    negative_broken_template()

    if FAILURES:
        print(f"\ncheck-helm: {len(FAILURES)} failure(s):", file=sys.stderr)
        for f in FAILURES:
            print(f"  - {f}", file=sys.stderr)
        return 1
    print("\ncheck-helm: the chart passes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
