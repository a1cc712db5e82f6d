#!/usr/bin/env python3
"""Validates deploy/k8s offline: every manifest against the Kubernetes JSON schemas
(kubernetes-validate, strict: unknown fields are errors) and the couplings between them that
a schema cannot see. Prints one line per problem; exit status 1 if there is any.

  deploy/k8s/validate.py [DIR]        (default: the folder of this script)
"""
import os, re, sys

import kubernetes_validate
import yaml

KUBERNETES_VERSION = "1.30.0"  # oldest version the manifests target (pod-index label: ≥ 1.28)
MANIFESTS = ["namespace.yaml", "redis.yaml", "fanout.yaml", "notifier.yaml"]


def flag(args, name):
    for i, arg in enumerate(args):
        if arg == name and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


def env(container, name):
    return next((e for e in container.get("env", []) if e["name"] == name), None)


def check(directory):
    problems, objects = [], {}
    kustomization = yaml.safe_load(open(os.path.join(directory, "kustomization.yaml")))
    if sorted(kustomization.get("resources", [])) != sorted(MANIFESTS):
        problems.append(f"kustomization.yaml resources {kustomization.get('resources')} are not {MANIFESTS}")
    for name in MANIFESTS:
        for document in yaml.safe_load_all(open(os.path.join(directory, name))):
            if document is None:
                continue
            try:
                kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)
            except kubernetes_validate.ValidationError as error:
                path = ".".join(str(p) for p in error.path)
                problems.append(f"{name}: {document.get('kind')}/{document['metadata'].get('name')}: {path}: {error.message}")
            objects[(document["kind"], document["metadata"]["name"])] = document

    fanout = objects.get(("StatefulSet", "fanout"))
    notifier = objects.get(("StatefulSet", "notifier"))
    if not fanout or not notifier:
        return problems + ["fanout.yaml and notifier.yaml must define the StatefulSets 'fanout' and 'notifier'"]
    fc = fanout["spec"]["template"]["spec"]["containers"][0]
    replicas = env(fc, "SWITCHBOARD_REPLICAS")
    if replicas is None or replicas.get("value") != str(fanout["spec"]["replicas"]):
        problems.append(f"fanout: SWITCHBOARD_REPLICAS ({replicas and replicas.get('value')}) must equal spec.replicas ({fanout['spec']['replicas']}), or partitions are unowned or owned twice")
    copies = env(fc, "SWITCHBOARD_COPIES")
    copies_value = int((copies or {}).get("value", "1"))
    if copies_value < 2 or fanout["spec"]["replicas"] % copies_value != 0:
        problems.append(f"fanout: SWITCHBOARD_COPIES ({copies_value}) must be 2 or more and divide spec.replicas ({fanout['spec']['replicas']}): every share needs a warm standby")
    ordinal = env(fc, "SWITCHBOARD_ORDINAL")
    if not ordinal or "pod-index" not in str(ordinal.get("valueFrom")):
        problems.append("fanout: SWITCHBOARD_ORDINAL must come from the pod-index label")
    if flag(fc.get("args", []), "--stream-replicas") != "3":
        problems.append("fanout: --stream-replicas 3 is required on the 3-node NATS cluster")

    nc = notifier["spec"]["template"]["spec"]["containers"][0]
    instance = env(nc, "SWITCHBOARD_INSTANCE_ID")
    if not instance or instance.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") != "metadata.name":
        problems.append("notifier: SWITCHBOARD_INSTANCE_ID must be the pod name (stable per StatefulSet ordinal)")
    drain = float(flag(nc.get("args", []), "--drain-seconds") or 5)
    pre_stop = nc.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", [])
    pre_stop_seconds = float(pre_stop[-1]) if pre_stop[:1] == ["sleep"] else 0
    grace = notifier["spec"]["template"]["spec"].get("terminationGracePeriodSeconds", 30)
    # Drain is bounded by preStop + drain window + 5 s close handshake + ~5 s for Redis and NATS.
    if grace < pre_stop_seconds + drain + 10:
        problems.append(f"notifier: terminationGracePeriodSeconds {grace} < preStop {pre_stop_seconds} + drain {drain} + 10 s: pods would be killed mid-drain")
    for kind_name, container in (("fanout", fc), ("notifier", nc)):
        paths = {p.get("httpGet", {}).get("path") for p in (container.get("readinessProbe", {}), container.get("livenessProbe", {}))}
        if paths != {"/readyz", "/healthz"}:
            problems.append(f"{kind_name}: readiness must probe /readyz and liveness /healthz (found {sorted(map(str, paths))})")
        if "requests" not in container.get("resources", {}):
            problems.append(f"{kind_name}: resource requests are missing")
    for name in ("fanout", "notifier"):
        pdb = objects.get(("PodDisruptionBudget", name))
        if not pdb or pdb["spec"].get("selector", {}).get("matchLabels") != objects[("StatefulSet", name)]["spec"]["selector"]["matchLabels"]:
            problems.append(f"{name}: a PodDisruptionBudget selecting the StatefulSet's pods is missing")

    url = env(fc, "SWITCHBOARD_NATS_URL")
    if not url or url.get("valueFrom", {}).get("secretKeyRef", {}).get("key") != "fanout-url":
        problems.append("fanout: SWITCHBOARD_NATS_URL must come from the Secret key fanout-url (its own NATS user)")
    user = env(nc, "SWITCHBOARD_NATS_USER")
    if not user or user.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") != "metadata.name":
        problems.append("notifier: SWITCHBOARD_NATS_USER must be the pod name (each instance its own NATS user)")
    for kind_name, container in (("fanout", fc), ("notifier", nc)):
        ca = env(container, "SWITCHBOARD_NATS_TLS_CA")
        mounts = [m["mountPath"] for m in container.get("volumeMounts", [])]
        if not ca or not any(ca.get("value", "").startswith(m + "/") for m in mounts):
            problems.append(f"{kind_name}: SWITCHBOARD_NATS_TLS_CA must name a file in a mounted volume")

    values = yaml.safe_load(open(os.path.join(directory, "nats-values.yaml")))
    config = values.get("config", {})
    if not (config.get("cluster", {}).get("enabled") and config.get("cluster", {}).get("replicas") == 3 and config.get("jetstream", {}).get("enabled")):
        problems.append("nats-values.yaml: config.cluster (3 replicas) and config.jetstream must be enabled")
    if not config.get("nats", {}).get("tls", {}).get("enabled"):
        problems.append("nats-values.yaml: config.nats.tls must be enabled (clients on TLS)")
    users = {u.get("user") for u in config.get("merge", {}).get("authorization", {}).get("users", [])}
    expected = set(re.findall(r"user: ([\w-]+)", open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "nats", "users.conf")).read()))
    if users != expected:
        problems.append(f"nats-values.yaml: the users must be those of deploy/nats/users.conf {sorted(expected)} (found {sorted(map(str, users))})")
    replicas = notifier["spec"]["replicas"]
    missing = {f"notifier-{n}" for n in range(replicas)} - users
    if missing:
        problems.append(f"nats-values.yaml: no NATS user for notifier pods {sorted(missing)}")
    # The same subjects as deploy/nats/users.conf (the tested file), user by user.
    conf = open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "nats", "users.conf")).read()
    for block in re.split(r"\n    \{\n", conf)[1:]:
        name = re.search(r"user: ([\w-]+)", block).group(1)
        subjects = set(re.findall(r'"([^"]+)"', block))
        mine = next((u for u in config.get("merge", {}).get("authorization", {}).get("users", []) if u.get("user") == name), {})
        permissions = mine.get("permissions", {})
        listed = set(permissions.get("publish", {}).get("allow", [])) | set(permissions.get("subscribe", {}).get("allow", []))
        if listed != subjects:
            problems.append(f"nats-values.yaml: {name}'s subjects differ from deploy/nats/users.conf: {sorted(listed ^ subjects)}")
    for user in config.get("merge", {}).get("authorization", {}).get("users", []):
        if not str(user.get("password", "")).startswith("<< $"):
            problems.append(f"nats-values.yaml: the password of {user.get('user')} must come from the environment")
    return problems


if __name__ == "__main__":
    directory = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__))
    problems = check(directory)
    for problem in problems:
        print(problem)
    print(f"deploy/k8s: {len(MANIFESTS)} manifests against Kubernetes {KUBERNETES_VERSION} (strict): " + ("ok" if not problems else f"{len(problems)} problem(s)"))
    sys.exit(1 if problems else 0)
