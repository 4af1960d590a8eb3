#!/usr/bin/python3
"""The manifests of deploy/, checked without a cluster.

    validate.py check DIR...          render each kustomization and check every object; exit 1 on a problem
    validate.py mutations DIR         the checks must catch each broken copy of DIR (a mount, a setting
                                      removed, an unknown field, a wrong type); PASS/FAIL lines
    validate.py runspec DIR NAME      what DaemonSet NAME gives its container, as JSON, for
                                      scripts/image-test.sh to run the image with under ctr

Rendering: `resources`, `configMapGenerator` (files; the name gets a hash of the content, and the
DaemonSets' references follow), `namespace` and `images` of a kustomization.yaml, the part of
kustomize deploy/ uses; any other key is refused rather than ignored. Where `kubectl kustomize` is
installed, its output is checked too (`check` says which renderer it used).

Schema: each object is read against the Kubernetes API's own types, the models python3-kubernetes
generates from the API's OpenAPI document (apps/v1 DaemonSet, v1 ConfigMap): a field the type does
not have, a value of the wrong type (a string for a bool, a map for a list) and a required field
left out are refused, with the path. Then the settings the agent needs (`agent_problems`,
`remove_problems`): hostNetwork, the mounts and whether each is read-only, the config's
hosts_dir, priorityClassName, tolerations for every taint, the readiness probe running check, the
security context and resources. Uses Debian's python3 with python3-kubernetes and python3-yaml.
"""
import copy
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib

import yaml
from kubernetes import client

AGENT = "configure-containerd-registries"
REMOVER = "configure-containerd-registries-remove"
BINARY = "/usr/bin/configure-containerd-registries"
CONFIG_DIR = "/etc/configure-containerd-registries"
KINDS = {("apps/v1", "DaemonSet"): "V1DaemonSet", ("v1", "ConfigMap"): "V1ConfigMap"}
KUSTOMIZATION_KEYS = {"apiVersion", "kind", "namespace", "resources", "configMapGenerator", "images"}


class Invalid(Exception):
    pass


# --- rendering -----------------------------------------------------------------------------------

def load_yaml_documents(path):
    with open(path, encoding="utf-8") as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def render(directory):
    """The objects `kubectl apply -k DIRECTORY` would send, by the subset of kustomize deploy/ uses."""
    path = os.path.join(directory, "kustomization.yaml")
    docs = load_yaml_documents(path)
    if len(docs) != 1 or not isinstance(docs[0], dict):
        raise Invalid(f"{path}: one mapping expected")
    k = docs[0]
    unknown = set(k) - KUSTOMIZATION_KEYS
    if unknown:
        raise Invalid(f"{path}: keys this check does not render: {sorted(unknown)}")
    if (k.get("apiVersion"), k.get("kind")) != ("kustomize.config.k8s.io/v1beta1", "Kustomization"):
        raise Invalid(f"{path}: not a kustomize.config.k8s.io/v1beta1 Kustomization")
    objects = []
    for resource in k.get("resources", []):
        file = os.path.join(directory, resource)
        if os.path.isdir(file):
            objects += render(file)
        else:
            objects += [(f"{file}", d) for d in load_yaml_documents(file)]
    renames = {}
    for gen in k.get("configMapGenerator", []):
        extra = set(gen) - {"name", "files"}
        if extra:
            raise Invalid(f"{path}: configMapGenerator keys this check does not render: {sorted(extra)}")
        data = {}
        for entry in gen.get("files", []):
            key, _, source = entry.partition("=")
            source = source or key
            key = os.path.basename(key)
            with open(os.path.join(directory, source), encoding="utf-8") as f:
                data[key] = f.read()
        cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": gen["name"]}, "data": data}
        digest = hashlib.sha256(json.dumps(cm, sort_keys=True).encode()).hexdigest()[:10]
        renames[gen["name"]] = f"{gen['name']}-{digest}"
        cm["metadata"]["name"] = renames[gen["name"]]
        objects.append((f"{path} (configMapGenerator {gen['name']})", cm))
    images = {i["name"]: i for i in k.get("images", [])}
    for _, obj in objects:
        if "namespace" in k and isinstance(obj.get("metadata"), dict):
            obj["metadata"]["namespace"] = k["namespace"]
        spec = pod_spec(obj)
        if spec is None:
            continue
        for volume in spec.get("volumes") or []:
            cm = volume.get("configMap") if isinstance(volume, dict) else None
            if isinstance(cm, dict) and cm.get("name") in renames:
                cm["name"] = renames[cm["name"]]
        for container in (spec.get("containers") or []) + (spec.get("initContainers") or []):
            image = container.get("image", "") if isinstance(container, dict) else ""
            name, tag = (image.rsplit(":", 1) + [None])[:2] if ":" in image.rsplit("/", 1)[-1] else (image, None)
            if name in images:
                rule = images[name]
                container["image"] = f"{rule.get('newName', name)}:{rule.get('newTag', tag or 'latest')}"
    return objects


def kubectl_kustomize(directory):
    """The objects of `kubectl kustomize DIRECTORY`, or None where kubectl is not installed."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        return None
    out = subprocess.run([kubectl, "kustomize", directory], capture_output=True, text=True, timeout=120)
    if out.returncode != 0:
        raise Invalid(f"kubectl kustomize {directory}: {out.stderr.strip()}")
    return [(f"kubectl kustomize {directory}", d) for d in yaml.safe_load_all(out.stdout) if d is not None]


# --- the API's schema ----------------------------------------------------------------------------

LIST = re.compile(r"^list\[(.*)\]$")
DICT = re.compile(r"^dict\(([^,]*), (.*)\)$")


def strict(value, type_name, path, problems):
    """Checks VALUE against the python3-kubernetes type TYPE_NAME: no unknown field, no wrong type."""
    m = LIST.match(type_name)
    if m:
        if not isinstance(value, list):
            problems.append(f"{path}: a list expected, got {type(value).__name__}")
            return
        for i, item in enumerate(value):
            strict(item, m.group(1), f"{path}[{i}]", problems)
        return
    m = DICT.match(type_name)
    if m:
        if not isinstance(value, dict):
            problems.append(f"{path}: a map expected, got {type(value).__name__}")
            return
        for key, item in value.items():
            if not isinstance(key, str):
                problems.append(f"{path}: key {key!r} is not a string")
            # a resource quantity may be written as a number (the API's int-or-string)
            quantity = re.search(r"\.(limits|requests|capacity|allocatable|overhead|hard)$", path) \
                and isinstance(item, (int, float)) and not isinstance(item, bool)
            if not quantity:
                strict(item, m.group(2), f"{path}.{key}", problems)
        return
    if type_name == "str":
        if not isinstance(value, str):
            problems.append(f"{path}: a string expected, got {type(value).__name__} {value!r}")
        return
    if type_name == "int":
        if not isinstance(value, int) or isinstance(value, bool):
            problems.append(f"{path}: an integer expected, got {type(value).__name__} {value!r}")
        return
    if type_name == "bool":
        if not isinstance(value, bool):
            problems.append(f"{path}: true or false expected, got {type(value).__name__} {value!r}")
        return
    if type_name == "float":
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            problems.append(f"{path}: a number expected, got {type(value).__name__} {value!r}")
        return
    if type_name == "datetime":
        if not isinstance(value, str):
            problems.append(f"{path}: a time (string) expected")
        return
    if type_name == "object":
        # IntOrString (maxUnavailable, probe ports) and free-form fields
        return
    model = getattr(client, type_name, None)
    if model is None:
        problems.append(f"{path}: no model {type_name} in python3-kubernetes")
        return
    if not isinstance(value, dict):
        problems.append(f"{path}: an object ({type_name}) expected, got {type(value).__name__} {value!r}")
        return
    by_json = {json_key: attr for attr, json_key in model.attribute_map.items()}
    for key, item in value.items():
        if key not in by_json:
            near = [k for k in by_json if k.lower() == str(key).lower()]
            hint = f" (did you mean {near[0]!r}?)" if near else ""
            problems.append(f"{path}.{key}: unknown field of {type_name}{hint}")
            continue
        strict(item, model.openapi_types[by_json[key]], f"{path}.{key}", problems)


def schema_problems(source, obj):
    if not isinstance(obj, dict):
        return [f"{source}: not a mapping"]
    kind = KINDS.get((obj.get("apiVersion"), obj.get("kind")))
    where = f"{source}: {obj.get('kind')}/{(obj.get('metadata') or {}).get('name')}"
    if kind is None:
        return [f"{where}: apiVersion {obj.get('apiVersion')} kind {obj.get('kind')} is not one this check knows"]
    problems = []
    strict(obj, kind, where, problems)
    if problems:
        return problems
    # The models' own checks: required fields (a container's name, a DaemonSet's selector, ...)
    try:
        client.ApiClient()._ApiClient__deserialize(copy.deepcopy(obj), kind)
    except (ValueError, TypeError) as error:
        problems.append(f"{where}: {error}")
    return problems


# --- what the agent needs ------------------------------------------------------------------------

def pod_spec(obj):
    try:
        spec = obj["spec"]["template"]["spec"]
    except (KeyError, TypeError):
        return None
    return spec if isinstance(spec, dict) else None


def mounts_of(spec, container):
    """Each mount of CONTAINER as (mountPath, volume, readOnly)."""
    volumes = {v.get("name"): v for v in spec.get("volumes") or []}
    return [(m.get("mountPath"), volumes.get(m.get("name")), bool(m.get("readOnly", False)))
            for m in container.get("volumeMounts") or []]


def host_mount(spec, container, host_path):
    for mount_path, volume, read_only in mounts_of(spec, container):
        if volume and (volume.get("hostPath") or {}).get("path") == host_path:
            return mount_path, read_only, volume["hostPath"].get("type", "")
    return None


def common_problems(obj, where, container_name):
    problems = []
    meta = obj.get("metadata") or {}
    if meta.get("namespace") != "kube-system":
        problems.append(f"{where}: namespace {meta.get('namespace')!r}, not kube-system")
    spec = pod_spec(obj) or {}
    if spec.get("priorityClassName") != "system-node-critical":
        problems.append(f"{where}: priorityClassName {spec.get('priorityClassName')!r}, not system-node-critical")
    if not any(t == {"operator": "Exists"} for t in spec.get("tolerations") or []):
        problems.append(f"{where}: no toleration {{operator: Exists}} (without key or effect): "
                        "some tainted nodes would get no pod")
    if spec.get("automountServiceAccountToken") is not False:
        problems.append(f"{where}: automountServiceAccountToken is not false (the agent uses no API token)")
    if spec.get("hostPID") or spec.get("hostIPC"):
        problems.append(f"{where}: hostPID/hostIPC set: the agent needs neither")
    containers = [c for c in spec.get("containers") or [] if c.get("name") == container_name]
    if len(containers) != 1:
        problems.append(f"{where}: no container named {container_name}")
        return problems, spec, None
    c = containers[0]
    if not str(c.get("image", "")).split("/")[-1].startswith(AGENT + ":"):
        problems.append(f"{where}: image {c.get('image')!r} is not the agent's image with a tag")
    sc = c.get("securityContext") or {}
    want = {"runAsUser": 0, "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True}
    for key, value in want.items():
        if sc.get(key) != value:
            problems.append(f"{where}: securityContext.{key} is {sc.get(key)!r}, not {value!r}")
    if sc.get("privileged"):
        problems.append(f"{where}: securityContext.privileged is true")
    caps = sc.get("capabilities") or {}
    if "ALL" not in (caps.get("drop") or []):
        problems.append(f"{where}: securityContext.capabilities.drop does not hold ALL")
    if caps.get("add"):
        problems.append(f"{where}: securityContext.capabilities.add {caps['add']}: the agent needs none")
    if (sc.get("seccompProfile") or {}).get("type") != "RuntimeDefault":
        problems.append(f"{where}: securityContext.seccompProfile.type is not RuntimeDefault")
    resources = c.get("resources") or {}
    for part, key in (("requests", "cpu"), ("requests", "memory"), ("limits", "memory")):
        if key not in (resources.get(part) or {}):
            problems.append(f"{where}: resources.{part}.{key} is not set")
    return problems, spec, c


def agent_problems(obj, where, configmaps):
    problems, spec, c = common_problems(obj, where, "agent")
    if c is None:
        return problems
    if spec.get("hostNetwork") is not True:
        problems.append(f"{where}: hostNetwork is not true (probes must take the node's own path to the cluster IPs)")
    args = c.get("args") or []
    if args[:1] != ["watch"]:
        problems.append(f"{where}: args {args}: watch expected first")
    config_path = args[args.index("--config") + 1] if "--config" in args[:-1] else f"{CONFIG_DIR}/config.toml"
    # the mounts, each with the access the agent needs
    need = [
        ("/etc/containerd/certs.d", False, "the hosts directory the agent writes (and its lock)"),
        ("/etc/containerd", True, "containerd's config"),
        ("/run/containerd", True, "containerd's socket"),
        ("/var/log", True, "the persistent journal (/var/log/journal)"),
        ("/run/log", True, "the volatile journal (/run/log/journal)"),
        ("/etc/machine-id", True, "the machine id (which journal files are this node's)"),
    ]
    found = {}
    for host_path, read_only, what in need:
        mount = host_mount(spec, c, host_path)
        if mount is None:
            problems.append(f"{where}: no hostPath mount of {host_path} ({what})")
            continue
        mount_path, ro, _ = mount
        found[host_path] = mount_path
        if mount_path != host_path:
            problems.append(f"{where}: {host_path} is mounted at {mount_path}, not at the node's own path "
                            "(config_path and the socket's address name the node's paths)")
        if ro != read_only:
            problems.append(f"{where}: {host_path} ({what}) is mounted {'read-only' if ro else 'read-write'}, "
                            f"must be {'read-only' if read_only else 'read-write'}")
    # the config: a ConfigMap mounted read-only where --config points, with a valid hosts_dir
    config_mount = None
    for mount_path, volume, ro in mounts_of(spec, c):
        if volume and volume.get("configMap") and config_path.startswith(mount_path.rstrip("/") + "/"):
            config_mount = (mount_path, volume["configMap"].get("name"), ro)
    if config_mount is None:
        problems.append(f"{where}: {config_path} (--config) is on no ConfigMap mount")
    else:
        mount_path, cm_name, ro = config_mount
        if not ro:
            problems.append(f"{where}: the config's ConfigMap is mounted read-write")
        key = config_path[len(mount_path.rstrip("/")) + 1:]
        text = (configmaps.get(cm_name) or {}).get(key)
        if text is None:
            problems.append(f"{where}: ConfigMap {cm_name} with key {key} is not among the manifests")
        else:
            try:
                config = tomllib.loads(text)
            except tomllib.TOMLDecodeError as error:
                problems.append(f"{where}: ConfigMap {cm_name} {key}: not TOML: {error}")
                config = {}
            hosts_dir = config.get("hosts_dir", "/etc/containerd/certs.d")
            if found.get("/etc/containerd/certs.d") and hosts_dir != found["/etc/containerd/certs.d"]:
                problems.append(f"{where}: the config's hosts_dir {hosts_dir} is not the hosts directory's mount")
            if not config.get("registry"):
                problems.append(f"{where}: ConfigMap {cm_name} {key} names no [[registry]]")
    probe = c.get("readinessProbe") or {}
    command = (probe.get("exec") or {}).get("command") or []
    if command[:2] != [BINARY, "check"]:
        problems.append(f"{where}: readinessProbe is not an exec of `{BINARY} check` (got {command})")
    elif "--config" in args and config_path not in command:
        problems.append(f"{where}: readinessProbe's check does not read {config_path}")
    if probe and probe.get("timeoutSeconds", 1) < 5:
        problems.append(f"{where}: readinessProbe.timeoutSeconds {probe.get('timeoutSeconds', 1)}: check may take "
                        "about 2.5 s plus the probe timeout")
    return problems


def remove_problems(obj, where):
    problems, spec, c = common_problems(obj, where, "remove")
    if c is None:
        return problems
    args = c.get("args") or []
    if args[:2] != ["remove", "--keep-running"] or "--hosts-dir" not in args[:-1]:
        problems.append(f"{where}: args {args}: remove --keep-running --hosts-dir DIR expected")
        return problems
    hosts_dir = args[args.index("--hosts-dir") + 1]
    mount = host_mount(spec, c, "/etc/containerd/certs.d")
    if mount is None or mount[0] != hosts_dir:
        problems.append(f"{where}: the hosts directory is not mounted at {hosts_dir}")
    elif mount[1]:
        problems.append(f"{where}: the hosts directory is mounted read-only: remove cannot delete")
    command = ((c.get("readinessProbe") or {}).get("exec") or {}).get("command") or []
    if command[:2] != [BINARY, "remove"] or hosts_dir not in command:
        problems.append(f"{where}: readinessProbe is not an exec of `{BINARY} remove --hosts-dir {hosts_dir}`")
    return problems


def check_objects(objects):
    """Every problem of the rendered OBJECTS: the schema first, then the settings."""
    problems = []
    for source, obj in objects:
        problems += schema_problems(source, obj)
    if problems:
        return problems
    configmaps = {o["metadata"]["name"]: o.get("data") or {} for _, o in objects if o.get("kind") == "ConfigMap"}
    names = set()
    for source, obj in objects:
        where = f"{source}: {obj['kind']}/{obj['metadata'].get('name')}"
        if obj["kind"] != "DaemonSet":
            continue
        names.add(obj["metadata"]["name"])
        if obj["metadata"]["name"] == AGENT:
            problems += agent_problems(obj, where, configmaps)
        elif obj["metadata"]["name"] == REMOVER:
            problems += remove_problems(obj, where)
        else:
            problems.append(f"{where}: a DaemonSet this check does not know")
    if not names:
        problems.append("no DaemonSet among the manifests")
    return problems


def check(directories):
    ok = True
    for directory in directories:
        renders = [("own renderer", render(directory))]
        real = kubectl_kustomize(directory)
        if real is None:
            print(f"SKIP {directory}: kubectl kustomize not installed: only the own renderer's output checked")
        else:
            renders.append(("kubectl kustomize", real))
        for renderer, objects in renders:
            problems = check_objects(objects)
            kinds = ", ".join(f"{o['kind']}/{o['metadata']['name']}" for _, o in objects)
            if problems:
                ok = False
                for problem in problems:
                    print(f"FAIL {directory} ({renderer}): {problem}")
            else:
                print(f"PASS {directory} ({renderer}): {kinds}: the API's schema and the agent's settings")
    return ok


# --- the checks must fail on broken manifests ------------------------------------------------------

def mutations():
    """(name, file, function editing the DaemonSet document, text the failure must contain)."""
    def agent(spec):
        return spec["spec"]["template"]["spec"]

    def container(spec):
        return agent(spec)["containers"][0]

    def drop_mount(volume):
        def edit(doc):
            c = container(doc)
            c["volumeMounts"] = [m for m in c["volumeMounts"] if m["name"] != volume]
        return edit

    def set_ro(volume, value):
        def edit(doc):
            for m in container(doc)["volumeMounts"]:
                if m["name"] == volume:
                    m["readOnly"] = value
        return edit

    def pop(getter, key):
        return lambda doc: getter(doc).pop(key)

    def put(getter, key, value):
        return lambda doc: getter(doc).__setitem__(key, value)

    sc = lambda doc: container(doc)["securityContext"]
    d = "daemonset.yaml"
    u = "uninstall/daemonset.yaml"
    return [
        ("hosts directory mount removed", d, drop_mount("hosts-dir"), "no hostPath mount of /etc/containerd/certs.d"),
        ("hosts directory mounted read-only", d, set_ro("hosts-dir", True), "must be read-write"),
        ("containerd's config mount removed", d, drop_mount("containerd-config"), "no hostPath mount of /etc/containerd "),
        ("containerd's config mounted read-write", d, set_ro("containerd-config", False), "must be read-only"),
        ("containerd's socket mount removed", d, drop_mount("containerd-run"), "no hostPath mount of /run/containerd"),
        ("the journal mount removed", d, drop_mount("var-log"), "no hostPath mount of /var/log"),
        ("the volatile journal mount removed", d, drop_mount("run-log"), "no hostPath mount of /run/log"),
        ("the machine id mount removed", d, drop_mount("machine-id"), "no hostPath mount of /etc/machine-id"),
        ("the config mount removed", d, drop_mount("config"), "is on no ConfigMap mount"),
        ("hostNetwork removed", d, pop(agent, "hostNetwork"), "hostNetwork is not true"),
        ("priorityClassName removed", d, pop(agent, "priorityClassName"), "priorityClassName"),
        ("tolerations removed", d, pop(agent, "tolerations"), "no toleration"),
        ("tolerations narrowed to NoSchedule", d, put(agent, "tolerations", [{"operator": "Exists", "effect": "NoSchedule"}]), "no toleration"),
        ("readinessProbe removed", d, pop(container, "readinessProbe"), "readinessProbe is not an exec"),
        ("readinessProbe runs plan", d, lambda doc: container(doc)["readinessProbe"]["exec"]["command"].__setitem__(1, "plan"), "readinessProbe is not an exec"),
        ("readOnlyRootFilesystem false", d, put(sc, "readOnlyRootFilesystem", False), "readOnlyRootFilesystem"),
        ("allowPrivilegeEscalation removed", d, pop(sc, "allowPrivilegeEscalation"), "allowPrivilegeEscalation"),
        ("capabilities not dropped", d, pop(sc, "capabilities"), "capabilities.drop"),
        ("a capability added", d, lambda doc: sc(doc)["capabilities"].__setitem__("add", ["NET_ADMIN"]), "capabilities.add"),
        ("privileged", d, put(sc, "privileged", True), "privileged is true"),
        ("seccomp profile removed", d, pop(sc, "seccompProfile"), "seccompProfile"),
        ("memory limit removed", d, lambda doc: container(doc)["resources"]["limits"].pop("memory"), "resources.limits.memory"),
        ("service account token mounted", d, pop(agent, "automountServiceAccountToken"), "automountServiceAccountToken"),
        ("args not watch", d, put(container, "args", ["apply"]), "watch expected first"),
        ("unknown field (typo hostNetwrok)", d, lambda doc: agent(doc).__setitem__("hostNetwrok", agent(doc).pop("hostNetwork")), "unknown field"),
        ("unknown field in a mount", d, lambda doc: container(doc)["volumeMounts"][0].__setitem__("readonly", True), "unknown field"),
        ("wrong type: hostNetwork \"yes\"", d, put(agent, "hostNetwork", "yes"), "true or false expected"),
        ("wrong type: tolerations a map", d, put(agent, "tolerations", {"operator": "Exists"}), "a list expected"),
        ("wrong type: runAsUser \"0\"", d, put(sc, "runAsUser", "0"), "an integer expected"),
        ("required field removed: container name", d, pop(container, "name"), "must not be `None`"),
        ("remove: hosts directory mount removed", u, drop_mount("hosts-dir"), "not mounted at"),
        ("remove: hosts directory read-only", u, set_ro("hosts-dir", True), "mounted read-only"),
        ("remove: --keep-running dropped", u, put(container, "args", ["remove", "--hosts-dir", "/etc/containerd/certs.d"]), "remove --keep-running"),
        ("remove: readinessProbe removed", u, pop(container, "readinessProbe"), "readinessProbe is not an exec"),
        ("remove: tolerations removed", u, pop(agent, "tolerations"), "no toleration"),
    ]


def mutation_test(directory):
    ok = True
    base = check_objects(render(directory)) + check_objects(render(os.path.join(directory, "uninstall")))
    if base:
        print(f"FAIL mutations: {directory} itself does not pass: {base[0]}")
        return False
    for name, file, edit, expect in mutations():
        with tempfile.TemporaryDirectory() as tmp:
            copy_dir = os.path.join(tmp, "deploy")
            shutil.copytree(directory, copy_dir)
            target = os.path.join(copy_dir, file)
            docs = load_yaml_documents(target)
            edit(docs[0])
            with open(target, "w", encoding="utf-8") as f:
                yaml.safe_dump_all(docs, f, sort_keys=False)
            where = copy_dir if not file.startswith("uninstall/") else os.path.join(copy_dir, "uninstall")
            try:
                problems = check_objects(render(where))
            except Invalid as error:
                problems = [str(error)]
            hits = [p for p in problems if expect in p]
            if hits:
                print(f"PASS mutation caught: {name}: {hits[0].split(': ', 2)[-1]}")
            else:
                ok = False
                print(f"FAIL mutation not caught: {name} (wanted a problem with {expect!r}; got {problems or 'none'})")
    return ok


# --- what the DaemonSet gives its container, for the ctr run ---------------------------------------

def runspec(directory, name):
    objects = render(directory)
    problems = check_objects(objects)
    if problems:
        raise Invalid("; ".join(problems))
    obj = next(o for _, o in objects if o["kind"] == "DaemonSet" and o["metadata"]["name"] == name)
    spec = pod_spec(obj)
    c = spec["containers"][0]
    sc = c["securityContext"]
    mounts = []
    for mount_path, volume, ro in mounts_of(spec, c):
        if "hostPath" in volume:
            mounts.append({"kind": "hostPath", "host": volume["hostPath"]["path"],
                           "type": volume["hostPath"].get("type", ""), "path": mount_path, "readOnly": ro})
        elif "configMap" in volume:
            mounts.append({"kind": "configMap", "name": volume["configMap"]["name"], "path": mount_path, "readOnly": ro})
    limits = (c.get("resources") or {}).get("limits") or {}
    print(json.dumps({
        "image": c["image"],
        "args": c.get("args") or [],
        "hostNetwork": bool(spec.get("hostNetwork")),
        "readOnlyRootFilesystem": bool(sc.get("readOnlyRootFilesystem")),
        "noNewPrivileges": sc.get("allowPrivilegeEscalation") is False,
        "capabilitiesDrop": sc["capabilities"].get("drop") or [],
        "capabilitiesAdd": sc["capabilities"].get("add") or [],
        "seccomp": sc["seccompProfile"]["type"],
        "runAsUser": sc.get("runAsUser"),
        "memoryLimit": quantity_bytes(limits["memory"]) if "memory" in limits else 0,
        "readiness": c["readinessProbe"]["exec"]["command"],
        "mounts": mounts,
    }, indent=1))


def quantity_bytes(text):
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "K": 10**3, "M": 10**6, "G": 10**9}
    m = re.fullmatch(r"(\d+)([KMG]i?)?", str(text))
    if not m:
        raise Invalid(f"quantity {text!r}: not one this check reads")
    return int(m.group(1)) * units.get(m.group(2) or "", 1)


def main(argv):
    if len(argv) >= 2 and argv[0] == "check":
        return 0 if check(argv[1:]) else 1
    if len(argv) == 2 and argv[0] == "mutations":
        return 0 if mutation_test(argv[1]) else 1
    if len(argv) == 3 and argv[0] == "runspec":
        runspec(argv[1], argv[2])
        return 0
    print(__doc__, file=sys.stderr)
    return 64


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except Invalid as error:
        print(f"FAIL {error}")
        sys.exit(1)
