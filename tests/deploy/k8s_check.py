"""Static checks of the Kubernetes manifests in deploy/k8s/, run by `cargo xtask k8s-check`.

1. Schema: every resource listed in kustomization.yaml validates with
   kubernetes-validate against one pinned Kubernetes version, strictly (unknown fields
   fail), from the schemas the package bundles: the socket module is disabled first, so
   any attempt to fetch a schema fails the check. A StatefulSet with an unknown field
   must be rejected, proving strict mode bites.
2. Consistency with the binary and between the resources: the SLUICE_* variables exist
   in `sluice --help`; container ports are the listener, controller RPC and HTTP ports of
   the environment; probes ask the HTTP port for the paths of crates/broker/src/http.rs;
   Services and the PodDisruptionBudget select the StatefulSet's pods and name existing
   container ports; the headless Service is the StatefulSet's serviceName and publishes
   not-ready addresses; the grace period outlasts the controlled shutdown; ...
3. The environment of one pod (default: `sluice-1` in namespace `default`): downward-API
   values substituted, then `$(VAR)` references expanded in order as the kubelet does.
   It must give node id ordinal + 1 and the voters at the headless Service's pod DNS
   names. Written as JSON (--pod-json) for xtask, which runs the image with it.

Prints `PASS name` / `FAIL name: reason` per check and `N passed, M failed`; exits 1 if
any failed.
"""

import argparse
import copy
import json
import os
import re
import socket
import sys

import yaml

import kubernetes_validate
from kubernetes_validate import utils as kv

# Kubernetes' cluster domain the manifests assume (the default one).
CLUSTER_DOMAIN = "cluster.local"
# After the controlled shutdown the node still closes connections, flushes every log
# and stops its quorum node: the grace period must exceed the timeout by this much.
SHUTDOWN_MARGIN_S = 15
# A liveness probe must tolerate at least this long without an answer (a busy node
# must not be restarted for a slow answer or two).
MIN_LIVENESS_WINDOW_S = 30


class CheckFailed(Exception):
    pass


def fail(msg):
    raise CheckFailed(msg)


def need(cond, msg):
    if not cond:
        fail(msg)


class Runner:
    def __init__(self):
        self.passed = 0
        self.failed = 0

    def check(self, name, fn, *args):
        """Runs one check; returns its result, or None if it failed."""
        try:
            result = fn(*args)
        except CheckFailed as e:
            self.failed += 1
            print(f"FAIL {name}: {e}", flush=True)
            return None
        except Exception as e:  # a bug or a malformed manifest: still a clear FAIL
            self.failed += 1
            print(f"FAIL {name}: {type(e).__name__}: {e}", flush=True)
            return None
        self.passed += 1
        detail = f" ({result})" if isinstance(result, str) and result else ""
        print(f"PASS {name}{detail}", flush=True)
        return result if result is not None else True


# ---------------------------------------------------------------------------- loading


def load_resources(manifests):
    """The documents of the files kustomization.yaml lists: [(file, doc)]."""
    with open(os.path.join(manifests, "kustomization.yaml")) as f:
        kustomization = yaml.safe_load(f)
    need(kustomization.get("kind") == "Kustomization", "kustomization.yaml is not a Kustomization")
    listed = kustomization.get("resources") or []
    need(len(listed) == len(set(listed)), f"duplicate resources in kustomization.yaml: {listed}")
    present = sorted(
        n for n in os.listdir(manifests)
        if n.endswith((".yaml", ".yml")) and n != "kustomization.yaml"
    )
    need(
        sorted(listed) == present,
        f"kustomization.yaml lists {sorted(listed)} but the directory holds {present}",
    )
    resources = []
    for name in listed:
        with open(os.path.join(manifests, name)) as f:
            for doc in yaml.safe_load_all(f):
                if doc is None:
                    continue
                need(isinstance(doc, dict), f"{name}: a document is not a mapping")
                for key in ("apiVersion", "kind", "metadata"):
                    need(key in doc, f"{name}: a document has no {key}")
                need(
                    "namespace" not in doc["metadata"],
                    f"{name}: {doc['kind']}/{doc['metadata'].get('name')} names a namespace "
                    "(the manifests are namespace-agnostic)",
                )
                resources.append((name, doc))
    need(resources, "no resources")
    kinds = ", ".join(f"{d['kind']}/{d['metadata']['name']}" for _, d in resources)
    return resources, kinds


# ----------------------------------------------------------------------------- schemas


def forbid_network():
    """Makes every socket operation fail: schema validation must be offline."""

    def refuse(*_args, **_kwargs):
        raise OSError("network access attempted during offline schema validation")

    socket.socket.connect = refuse
    socket.socket.connect_ex = refuse
    socket.create_connection = refuse
    socket.getaddrinfo = refuse


def validate_schemas(resources, version):
    wanted = kv.major_minor(version)
    need(
        wanted in [kv.major_minor(v) for v in kv.all_versions()],
        f"kubernetes-validate {kubernetes_validate.__version__} bundles no schemas for "
        f"Kubernetes {wanted} (it has {', '.join(kv.all_versions())})",
    )
    problems = []
    for name, doc in resources:
        what = f"{name}: {doc['kind']}/{doc['metadata']['name']}"
        try:
            used = kv.validate(doc, version, strict=True)
        except kv.ValidationError as e:
            path = ".".join(str(p) for p in e.absolute_path) or "(top)"
            problems.append(f"{what}: at {path}: {e.message}")
            continue
        except (kv.SchemaNotFoundError, kv.VersionNotSupportedError, kv.InvalidSchemaError) as e:
            problems.append(f"{what}: {e.message}")
            continue
        if used != wanted:
            problems.append(f"{what}: validated against {used}, not {wanted}")
    if problems:
        fail("; ".join(problems))
    return f"{len(resources)} resources, Kubernetes {version}, strict, offline"


def strict_mode_rejects_unknown_fields(resources, version):
    sts = next(d for _, d in resources if d["kind"] == "StatefulSet")
    bad = copy.deepcopy(sts)
    bad["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyTypo"] = "Always"
    try:
        kv.validate(bad, version, strict=True)
    except kv.ValidationError:
        return "an unknown container field is rejected"
    fail("a StatefulSet with an unknown container field passed strict validation")


# ------------------------------------------------------------------------- the binary


def parse_help(text):
    """`sluice --help` -> {env var: default or None}."""
    options = {}
    starts = [m.start() for m in re.finditer(r"(?m)^\s+(?:-\w, )?--[a-z0-9-]+", text)]
    for i, start in enumerate(starts):
        chunk = text[start : starts[i + 1] if i + 1 < len(starts) else len(text)]
        env = re.search(r"\[env: (SLUICE_[A-Z0-9_]+)=", chunk)
        if env:
            default = re.search(r"\[default: ([^\],]+)", chunk)
            options[env.group(1)] = default.group(1).strip() if default else None
    need(options, "found no `[env: SLUICE_...=]` in the `sluice --help` output")
    return options


def http_paths(http_rs):
    with open(http_rs) as f:
        src = f.read()
    paths = {}
    for const in ("LIVE_PATH", "READY_PATH", "METRICS_PATH"):
        m = re.search(rf'pub const {const}: &str = "([^"]+)";', src)
        need(m, f"{http_rs} has no `pub const {const}: &str = \"...\";`")
        paths[const] = m.group(1)
    return paths


# ------------------------------------------------------------------ kubernetes helpers


def selector_matches(selector, labels):
    """A LabelSelector (matchLabels/matchExpressions) against a label set."""
    need(selector, "empty selector (it would select every pod)")
    for k, v in (selector.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for e in selector.get("matchExpressions") or []:
        key, op, values = e["key"], e["operator"], e.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and labels.get(key) in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def expand(text, lookup):
    """Kubernetes' `$(VAR)` expansion (third_party/forked/golang/expansion): `$$` is a
    literal `$`, `$(NAME)` the variable if defined (else left as written), any other
    `$` itself."""
    out = []
    i = 0
    while i < len(text):
        c = text[i]
        if c == "$" and i + 1 < len(text):
            nxt = text[i + 1]
            if nxt == "$":
                out.append("$")
                i += 2
                continue
            if nxt == "(":
                close = text.find(")", i + 2)
                if close != -1:
                    name = text[i + 2 : close]
                    out.append(lookup(name) if lookup(name) is not None else f"$({name})")
                    i = close + 1
                    continue
                out.append("$(")
                i += 2
                continue
            out.append("$" + nxt)
            i += 2
            continue
        out.append(c)
        i += 1
    return "".join(out)


def pod_environment(container, pod_name, namespace):
    """The container's environment as the kubelet builds it for this pod, in order."""
    need(not container.get("envFrom"), "envFrom is not modelled by this check")
    fields = {"metadata.name": pod_name, "metadata.namespace": namespace}
    env = {}
    order = []
    for var in container.get("env") or []:
        name = var["name"]
        need(name not in env, f"env {name} is set twice")
        if "valueFrom" in var:
            ref = var["valueFrom"].get("fieldRef")
            need(ref, f"env {name}: only fieldRef (downward API) is modelled by this check")
            need(
                ref["fieldPath"] in fields,
                f"env {name}: fieldRef {ref['fieldPath']} is not modelled by this check",
            )
            value = fields[ref["fieldPath"]]
        else:
            value = expand(var.get("value", ""), env.get)
        env[name] = value
        order.append(name)
    return [(n, env[n]) for n in order]


def service_link_names(service):
    """The variables enableServiceLinks would inject for a Service (none if headless)."""
    spec = service["spec"]
    if spec.get("clusterIP") == "None":
        return []
    prefix = service["metadata"]["name"].upper().replace("-", "_")
    names = [f"{prefix}_SERVICE_HOST", f"{prefix}_SERVICE_PORT", f"{prefix}_PORT"]
    for p in spec.get("ports") or []:
        if p.get("name"):
            names.append(f"{prefix}_SERVICE_PORT_{p['name'].upper().replace('-', '_')}")
        base = f"{prefix}_PORT_{p['port']}_{p.get('protocol', 'TCP')}"
        names += [base, f"{base}_PROTO", f"{base}_PORT", f"{base}_ADDR"]
    return names


def host_port(addr, what):
    m = re.fullmatch(r"(\[[^\]]+\]|[^:]+):(\d+)", addr)
    need(m, f"{what}: `{addr}` is not host:port")
    return m.group(1), int(m.group(2))


def parse_listeners(value, what):
    out = {}
    for item in value.split(","):
        m = re.fullmatch(r"([A-Za-z0-9_]+)://(.+)", item.strip())
        need(m, f"{what}: `{item}` is not NAME://host:port")
        name = m.group(1).upper()
        need(name not in out, f"{what}: listener {name} twice")
        out[name] = host_port(m.group(2), what)
    return out


def parse_voters(value):
    out = {}
    for item in value.split(","):
        m = re.fullmatch(r"(\d+)@(.+)", item.strip())
        need(m, f"SLUICE_VOTERS: `{item}` is not ID@host:port")
        need(int(m.group(1)) not in out, f"SLUICE_VOTERS: id {m.group(1)} twice")
        out[int(m.group(1))] = m.group(2)
    return out


# -------------------------------------------------------------------------------- main


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--manifests", required=True)
    ap.add_argument("--help-text", required=True, help="file with `sluice --help` output")
    ap.add_argument("--http-rs", required=True, help="crates/broker/src/http.rs")
    ap.add_argument("--kubernetes-version", required=True)
    ap.add_argument("--image", required=True, help="the image the StatefulSet must run")
    ap.add_argument("--image-user", required=True, help="the image's USER (uid[:gid])")
    ap.add_argument("--pod-ordinal", type=int, default=1)
    ap.add_argument("--namespace", default="default")
    ap.add_argument("--pod-json", required=True, help="where to write the pod's run spec")
    args = ap.parse_args()

    r = Runner()
    print(
        f"kubernetes-validate {kubernetes_validate.__version__}, "
        f"PyYAML {yaml.__version__}, Kubernetes schemas {args.kubernetes_version}",
        flush=True,
    )
    loaded = r.check("manifests load (kustomization.yaml lists every file)", load_resources, args.manifests)
    if loaded is None:
        return finish(r)
    resources, _ = loaded

    forbid_network()
    r.check("schemas", validate_schemas, resources, args.kubernetes_version)
    r.check("strict validation", strict_mode_rejects_unknown_fields, resources, args.kubernetes_version)

    with open(args.help_text) as f:
        flags = r.check("sluice --help lists SLUICE_* variables", parse_help, f.read())
    paths = r.check("http.rs path constants", http_paths, args.http_rs)
    if not flags or not paths:
        return finish(r)

    def of_kind(kind):
        return [d for _, d in resources if d["kind"] == kind]

    def one_statefulset():
        sets = of_kind("StatefulSet")
        need(len(sets) == 1, f"{len(sets)} StatefulSets, want 1")
        return sets[0]

    sts = r.check("one StatefulSet", one_statefulset)
    if not sts:
        return finish(r)
    spec = sts["spec"]
    pod = spec["template"]["spec"]
    labels = spec["template"]["metadata"].get("labels") or {}
    name = sts["metadata"]["name"]
    pod_name = f"{name}-{args.pod_ordinal}"
    services = {s["metadata"]["name"]: s for s in of_kind("Service")}

    def statefulset_shape():
        need(spec.get("replicas") == 3, f"replicas {spec.get('replicas')}, want 3")
        need(
            spec.get("podManagementPolicy") == "Parallel",
            "podManagementPolicy must be Parallel (voters wait for each other before ready)",
        )
        need(selector_matches(spec["selector"], labels), "spec.selector does not match the pod template's labels")
        need(len(pod["containers"]) == 1, "want exactly one container")
        need(not pod.get("initContainers"), "unexpected initContainers")
        c = pod["containers"][0]
        need(c.get("image") == args.image, f"image {c.get('image')}, want {args.image}")
        need(c.get("imagePullPolicy") == "IfNotPresent", "imagePullPolicy must be IfNotPresent")
        need(not c.get("command") and not c.get("args"), "the image's entrypoint runs as is, no command/args")
        return f"{name}: {spec['replicas']} replicas, Parallel, {c['image']}"

    r.check("statefulset shape", statefulset_shape)
    container = pod["containers"][0]

    def headless_service():
        svc_name = spec.get("serviceName")
        need(svc_name in services, f"serviceName {svc_name!r} is not one of the Services {sorted(services)}")
        s = services[svc_name]["spec"]
        need(s.get("clusterIP") == "None", f"Service {svc_name} is not headless (clusterIP: None)")
        need(
            s.get("publishNotReadyAddresses") is True,
            f"Service {svc_name} must publish not-ready addresses: voters resolve each other before any is ready",
        )
        return svc_name

    headless = r.check("headless Service is serviceName", headless_service)
    headless = headless if isinstance(headless, str) else spec.get("serviceName")

    def env_names():
        names = [v["name"] for v in container.get("env") or []]
        unknown = [n for n in names if n.startswith("SLUICE_") and n not in flags]
        need(not unknown, f"not in `sluice --help`: {', '.join(unknown)}")
        return f"{sum(n.startswith('SLUICE_') for n in names)} SLUICE_* variables, all known to the binary"

    r.check("env vars exist in the binary", env_names)

    def service_links():
        injected = sorted(n for s in services.values() for n in service_link_names(s) if n.startswith("SLUICE_"))
        need(
            pod.get("enableServiceLinks") is False,
            "enableServiceLinks must be false: Kubernetes would inject "
            + ", ".join(injected or ["<service variables>"])
            + " into the SLUICE_* namespace the flags read",
        )
        clash = [n for n in injected if n in flags]
        need(not clash, f"Service variables would collide with flags: {clash}")
        return "enableServiceLinks: false"

    r.check("no service-link variables", service_links)

    env_list = r.check(
        f"environment of pod {pod_name} in namespace {args.namespace}",
        lambda: pod_environment(container, pod_name, args.namespace),
    )
    if not env_list:
        return finish(r)
    env = dict(env_list)

    def env_expanded():
        left = [f"{k}={v}" for k, v in env_list if re.search(r"\$\(", v)]
        need(not left, f"unexpanded references: {left}")
        return ""

    r.check("every $(VAR) reference resolves", env_expanded)

    def explicit(var):
        need(var in env, f"{var} must be set in the manifest (not left to the image's default)")
        return env[var]

    def node_identity():
        need(env.get("SLUICE_NODE_ID_FROM_HOSTNAME") == "true", "SLUICE_NODE_ID_FROM_HOSTNAME must be true")
        need("SLUICE_NODE_ID" not in env, "SLUICE_NODE_ID must not be set (the pod ordinal gives the id)")
        return f"{pod_name} -> node {args.pod_ordinal + 1}"

    r.check("node id from the pod ordinal", node_identity)

    ports = {}

    def addresses():
        listeners = parse_listeners(explicit("SLUICE_LISTENERS"), "SLUICE_LISTENERS")
        rpc_host, rpc_port = host_port(explicit("SLUICE_RPC_LISTEN"), "SLUICE_RPC_LISTEN")
        http_host, http_port = host_port(explicit("SLUICE_HTTP_LISTEN"), "SLUICE_HTTP_LISTEN")
        for what, host in [("SLUICE_RPC_LISTEN", rpc_host), ("SLUICE_HTTP_LISTEN", http_host)] + [
            (f"listener {n}", h) for n, (h, _) in listeners.items()
        ]:
            need(host in ("0.0.0.0", "[::]"), f"{what} binds {host}: peers and the kubelet's probes need 0.0.0.0")
        ports.update(listeners={n: p for n, (_, p) in listeners.items()}, rpc=rpc_port, http=http_port)
        own = f"{pod_name}.{headless}.{args.namespace}.svc.{CLUSTER_DOMAIN}"
        advertised = parse_listeners(explicit("SLUICE_ADVERTISED_LISTENERS"), "SLUICE_ADVERTISED_LISTENERS")
        for n, (h, p) in advertised.items():
            need(n in listeners, f"advertised listener {n} is not among the listeners {sorted(listeners)}")
            need(h == own, f"advertised listener {n} host {h}, want the pod's stable name {own}")
            need(p == listeners[n][1], f"advertised listener {n} port {p} != its bind port {listeners[n][1]}")
        ibl = env.get("SLUICE_INTER_BROKER_LISTENER", next(iter(listeners))).upper()
        need(ibl in listeners, f"SLUICE_INTER_BROKER_LISTENER {ibl} is not a listener")
        return f"kafka {sorted(ports['listeners'].values())}, rpc {rpc_port}, http {http_port}, advertised {own}"

    r.check("listener / RPC / HTTP addresses", addresses)

    expected_voters = None

    def voters():
        nonlocal expected_voters
        need(ports.get("rpc"), "no RPC port (see above)")
        expected_voters = {
            i + 1: f"{name}-{i}.{headless}.{args.namespace}.svc.{CLUSTER_DOMAIN}:{ports['rpc']}"
            for i in range(spec["replicas"])
        }
        got = parse_voters(explicit("SLUICE_VOTERS"))
        need(got == expected_voters, f"SLUICE_VOTERS gives {got}, want {expected_voters}")
        return f"{len(got)} voters at the headless Service's pod names"

    r.check("voters", voters)

    def container_ports():
        need(ports.get("http"), "no ports (see above)")
        declared = container.get("ports") or []
        names = [p.get("name") for p in declared if p.get("name")]
        need(len(names) == len(set(names)), f"duplicate port names {names}")
        numbers = sorted(p["containerPort"] for p in declared)
        want = sorted(set(ports["listeners"].values()) | {ports["rpc"], ports["http"]})
        need(numbers == want, f"containerPorts {numbers}, but the env binds {want}")
        need(all(p.get("protocol", "TCP") == "TCP" for p in declared), "every port is TCP")
        return ", ".join(f"{p.get('name', '?')}={p['containerPort']}" for p in declared)

    r.check("container ports match the env", container_ports)

    def port_number(ref, where):
        for p in container.get("ports") or []:
            if ref == p.get("name") or ref == p["containerPort"]:
                return p["containerPort"]
        fail(f"{where}: port {ref!r} names no container port")

    def probes():
        want = {
            "startupProbe": paths["LIVE_PATH"],
            "livenessProbe": paths["LIVE_PATH"],
            "readinessProbe": paths["READY_PATH"],
        }
        for kind in ("livenessProbe", "readinessProbe"):
            need(kind in container, f"no {kind}")
        for kind, path in want.items():
            probe = container.get(kind)
            if probe is None:
                continue
            get = probe.get("httpGet")
            need(get, f"{kind} is not an httpGet probe")
            need(get.get("path") == path, f"{kind} asks {get.get('path')}, want {path} (http.rs)")
            need(get.get("scheme", "HTTP") == "HTTP", f"{kind} must use plain HTTP")
            need(port_number(get["port"], kind) == ports["http"], f"{kind} does not ask the HTTP port {ports['http']}")
        live = container["livenessProbe"]
        window = live.get("periodSeconds", 10) * live.get("failureThreshold", 3)
        need(window >= MIN_LIVENESS_WINDOW_S, f"livenessProbe gives up after {window}s, want >= {MIN_LIVENESS_WINDOW_S}s")
        return f"live {paths['LIVE_PATH']}, ready {paths['READY_PATH']} on port {ports['http']}"

    r.check("probes", probes)

    def service_ports():
        out = []
        for svc_name, svc in services.items():
            s = svc["spec"]
            need(s.get("selector"), f"Service {svc_name} has no selector")
            need(
                selector_matches({"matchLabels": s["selector"]}, labels),
                f"Service {svc_name} selector {s['selector']} does not match the pod labels {labels}",
            )
            for p in s.get("ports") or []:
                port_number(p.get("targetPort", p["port"]), f"Service {svc_name} port {p.get('name', p['port'])}")
            out.append(f"{svc_name}: {[p['port'] for p in s.get('ports') or []]}")
        clients = [n for n, s in services.items() if s["spec"].get("clusterIP") != "None"]
        need(clients, "no client (ClusterIP) Service")
        for n in clients:
            exposed = [p["port"] for p in services[n]["spec"]["ports"]]
            need(
                any(p in exposed for p in ports["listeners"].values()),
                f"client Service {n} does not expose a Kafka listener port",
            )
        return "; ".join(out)

    r.check("Services select the pods and name container ports", service_ports)

    def scraping():
        scraped = [n for n, s in services.items() if (s["metadata"].get("annotations") or {}).get("prometheus.io/scrape") == "true"]
        need(len(scraped) == 1, f"want exactly one Service with prometheus.io/scrape, got {scraped}")
        pod_ann = spec["template"]["metadata"].get("annotations") or {}
        need("prometheus.io/scrape" not in pod_ann, "the pods are annotated too: they would be scraped twice")
        ann = services[scraped[0]]["metadata"]["annotations"]
        need(ann.get("prometheus.io/port") == str(ports["http"]), f"prometheus.io/port {ann.get('prometheus.io/port')}, want {ports['http']}")
        need(ann.get("prometheus.io/path", "/metrics") == paths["METRICS_PATH"], f"prometheus.io/path must be {paths['METRICS_PATH']}")
        return f"Service {scraped[0]} -> :{ports['http']}{paths['METRICS_PATH']}"

    r.check("Prometheus scrape annotations", scraping)

    def pdb():
        pdbs = of_kind("PodDisruptionBudget")
        need(len(pdbs) == 1, f"{len(pdbs)} PodDisruptionBudgets, want 1")
        p = pdbs[0]
        need(p["apiVersion"] == "policy/v1", "PodDisruptionBudget must be policy/v1")
        need(p["spec"].get("maxUnavailable") == 1, "maxUnavailable must be 1")
        need("minAvailable" not in p["spec"], "minAvailable and maxUnavailable are exclusive")
        need(selector_matches(p["spec"]["selector"], labels), "the PDB's selector does not match the pod labels")
        need(p["spec"]["selector"] == spec["selector"], "the PDB's selector should be the StatefulSet's")
        return "maxUnavailable 1"

    r.check("PodDisruptionBudget", pdb)

    def grace():
        timeout_ms = env.get("SLUICE_CONTROLLED_SHUTDOWN_TIMEOUT_MS", flags.get("SLUICE_CONTROLLED_SHUTDOWN_TIMEOUT_MS"))
        need(timeout_ms is not None, "no controlled shutdown timeout in the env nor a default in --help")
        timeout_s = int(timeout_ms) / 1000
        g = pod.get("terminationGracePeriodSeconds", 30)
        need(
            g > timeout_s + SHUTDOWN_MARGIN_S,
            f"terminationGracePeriodSeconds {g} must exceed the controlled shutdown timeout "
            f"{timeout_s:g}s + {SHUTDOWN_MARGIN_S}s for the rest of the shutdown",
        )
        return f"{g}s > {timeout_s:g}s controlled shutdown + {SHUTDOWN_MARGIN_S}s"

    r.check("termination grace period", grace)

    run_as = {}

    def security():
        uid, _, gid = args.image_user.partition(":")
        need(uid.isdigit(), f"the image's USER {args.image_user!r} is not numeric (runAsNonRoot cannot verify it)")
        ps = pod.get("securityContext") or {}
        cs = container.get("securityContext") or {}
        merged = {**ps, **{k: v for k, v in cs.items() if k in ("runAsUser", "runAsGroup", "runAsNonRoot")}}
        need(merged.get("runAsNonRoot") is True, "runAsNonRoot must be true")
        need(merged.get("runAsUser") == int(uid), f"runAsUser {merged.get('runAsUser')}, the image runs as {uid}")
        if gid:
            need(merged.get("runAsGroup") == int(gid), f"runAsGroup {merged.get('runAsGroup')}, the image's group is {gid}")
        need(ps.get("fsGroup") == merged.get("runAsGroup"), "fsGroup must be the runAsGroup (the volume must be writable)")
        need(cs.get("readOnlyRootFilesystem") is True, "readOnlyRootFilesystem must be true")
        need(cs.get("allowPrivilegeEscalation") is False, "allowPrivilegeEscalation must be false")
        need(not cs.get("privileged"), "privileged")
        need("ALL" in ((cs.get("capabilities") or {}).get("drop") or []), "capabilities must drop ALL")
        need(not (cs.get("capabilities") or {}).get("add"), "no capabilities added")
        run_as.update(user=merged["runAsUser"], group=merged["runAsGroup"], fs_group=ps["fsGroup"])
        return f"uid {merged['runAsUser']}, gid {merged['runAsGroup']}, fsGroup {ps['fsGroup']}, read-only root, no capabilities"

    r.check("security context", security)

    def storage():
        data_dir = explicit("SLUICE_DATA_DIR")
        claims = {c["metadata"]["name"]: c for c in spec.get("volumeClaimTemplates") or []}
        volumes = {v["name"] for v in pod.get("volumes") or []}
        mounts = container.get("volumeMounts") or []
        for m in mounts:
            need(m["name"] in claims or m["name"] in volumes, f"volumeMount {m['name']} names no volume")
        data = [m for m in mounts if m["mountPath"] == data_dir]
        need(data, f"nothing is mounted at SLUICE_DATA_DIR {data_dir}")
        need(data[0]["name"] in claims, f"{data_dir} is not a volumeClaimTemplate (data would die with the pod)")
        claim = claims[data[0]["name"]]["spec"]
        need(claim.get("accessModes") == ["ReadWriteOnce"], "the data claim should be ReadWriteOnce")
        need(((claim.get("resources") or {}).get("requests") or {}).get("storage"), "the data claim requests no storage")
        res = (container.get("resources") or {}).get("requests") or {}
        need("cpu" in res and "memory" in res, "the container must request cpu and memory")
        return f"claim {data[0]['name']} ({claim['resources']['requests']['storage']}) at {data_dir}"

    r.check("data volume and resources", storage)

    if r.failed == 0:
        spec_out = {
            "pod": pod_name,
            "namespace": args.namespace,
            # A StatefulSet pod's host name is the pod name.
            "hostname": pod_name,
            "image": container["image"],
            "env": [[k, v] for k, v in env_list],
            "http_port": ports["http"],
            "data_dir": env["SLUICE_DATA_DIR"],
            "user": run_as["user"],
            "group": run_as["group"],
            "fs_group": run_as["fs_group"],
            "expected_node_id": args.pod_ordinal + 1,
            "expected_voters": [[i, a] for i, a in sorted(expected_voters.items())],
            "live_path": paths["LIVE_PATH"],
            "ready_path": paths["READY_PATH"],
            "metrics_path": paths["METRICS_PATH"],
        }
        with open(args.pod_json, "w") as f:
            json.dump(spec_out, f, indent=2)
    return finish(r)


def finish(r):
    print(f"{r.passed} passed, {r.failed} failed", flush=True)
    return 1 if r.failed else 0


if __name__ == "__main__":
    sys.exit(main())
