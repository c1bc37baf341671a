"""Checks deploy/ without Docker or a cluster: every file parses and holds
what operators rely on (ports, probes, volumes, non-root users, hardening).
Run from the repository root: python3 deploy/check.py"""
import configparser
import sys

import yaml

failures = []


def check(cond, what):
    if not cond:
        failures.append(what)


def docs(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d]


# Dockerfile: multi-stage, non-root, both binaries, health check.
dockerfile = open("deploy/docker/Dockerfile").read()
check(dockerfile.count("\nFROM ") + dockerfile.startswith("FROM ") >= 2, "Dockerfile: multi-stage")
check("\nUSER chatpay" in dockerfile, "Dockerfile: runs as user chatpay")
check("HEALTHCHECK" in dockerfile, "Dockerfile: health check")
check("chatpay-node" in dockerfile and "/chatpay " in dockerfile, "Dockerfile: both binaries")

# compose: init + 4 validators, each with a volume, health check, ports.
compose = docs("deploy/docker/compose.yml")[0]
services = compose["services"]
validators = [n for n in services if n.startswith("validator")]
check(len(validators) == 4, "compose: 4 validators")
check("init" in services, "compose: init service writes the network")
host_ports = set()
for name in validators:
    s = services[name]
    check(s.get("healthcheck", {}).get("test"), f"compose {name}: health check")
    check("net:/net" in s.get("volumes", []), f"compose {name}: volume")
    check(s.get("depends_on", {}).get("init", {}).get("condition") == "service_completed_successfully",
          f"compose {name}: waits for init")
    ports = s.get("ports", [])
    check(any(p.endswith(":26650") for p in ports), f"compose {name}: gRPC port")
    check(any(p.endswith(":26660") for p in ports), f"compose {name}: metrics port")
    host_ports.update(p.split(":")[0] for p in ports)
    home = s["command"][-1]
    check(home == f"/net/node{name[-1]}", f"compose {name}: its own home")
check(len(host_ports) == 8, "compose: distinct host ports")
check("--hosts validator0,validator1,validator2,validator3" in services["init"]["command"][0],
      "compose: genesis names the services")

# Kubernetes.
objs = []
for f in ["namespace", "services", "configmap", "statefulset"]:
    objs += docs(f"deploy/k8s/{f}.yaml")
by_kind = {}
for o in objs:
    check("apiVersion" in o and "kind" in o and "metadata" in o, f"k8s: object shape {o.get('kind')}")
    by_kind.setdefault(o["kind"], []).append(o)
sts = by_kind["StatefulSet"][0]
spec = sts["spec"]
labels = spec["template"]["metadata"]["labels"]
check(spec["selector"]["matchLabels"] == labels, "k8s: selector matches pod labels")
check(spec["replicas"] == 4, "k8s: 4 replicas")
services_k8s = {s["metadata"]["name"]: s for s in by_kind["Service"]}
headless = services_k8s.get(spec["serviceName"])
check(headless is not None and headless["spec"].get("clusterIP") == "None", "k8s: headless peer service")
for s in services_k8s.values():
    check(s["spec"]["selector"] == labels, f"k8s: service {s['metadata']['name']} selects the pods")
pod = spec["template"]["spec"]
check(pod.get("securityContext", {}).get("runAsNonRoot") is True, "k8s: non-root")
container = pod["containers"][0]
ports = {p["name"]: p["containerPort"] for p in container["ports"]}
check(ports == {"grpc": 26650, "metrics": 26660}, "k8s: container ports")
check(container["readinessProbe"].get("grpc", {}).get("port") == 26650, "k8s: gRPC readiness probe")
check("livenessProbe" in container, "k8s: liveness probe")
check(spec["volumeClaimTemplates"][0]["metadata"]["name"] == "data", "k8s: persistent volume per validator")
volumes = {v["name"]: v for v in pod["volumes"]}
check(volumes["all-keys"]["secret"]["secretName"] == "chatpay-validator-keys", "k8s: keys from a Secret")
check(volumes["genesis"]["configMap"]["name"] == "chatpay-genesis", "k8s: genesis from a ConfigMap")
config_toml = by_kind["ConfigMap"][0]["data"]["config.toml"]
check('listen = "0.0.0.0:26650"' in config_toml and 'metrics_listen = "0.0.0.0:26660"' in config_toml,
      "k8s: config listens on the container ports")

# systemd: hardening and restart policy.
unit = configparser.ConfigParser(strict=False, interpolation=None)
unit.optionxform = str
unit.read("deploy/systemd/chatpay-node.service")
svc = unit["Service"]
for key, value in [("User", "chatpay"), ("NoNewPrivileges", "true"), ("ProtectSystem", "strict"),
                   ("Restart", "on-failure"), ("KillSignal", "SIGTERM")]:
    check(svc.get(key) == value, f"systemd: {key}={value}")
check("start --home" in svc.get("ExecStart", ""), "systemd: starts a home")
check(unit["Install"].get("WantedBy") == "multi-user.target", "systemd: installable")

for f in failures:
    print("deploy check failed:", f)
print(f"deploy/: {len(objs)} Kubernetes objects, {len(services)} compose services, "
      f"1 systemd unit checked, {len(failures)} failures")
sys.exit(1 if failures else 0)
