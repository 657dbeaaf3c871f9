"""deploy/ checked without a container engine or a cluster: the compose file against the
Compose Specification schema, the Kubernetes manifests against Kubernetes' own schemas (KEDA's
ScaledObject against deploy/schemas), the Prometheus config and alerting rules with promtool,
and every metric that a Grafana panel or an alerting rule names against what the worker
exports (worker.metrics.REGISTRY)."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

from worker.metrics import REGISTRY
from worker.settings import Settings

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
COMPOSE = DEPLOY / "docker-compose.yml"
K8S = DEPLOY / "k8s"
PROM = DEPLOY / "prometheus"
GRAFANA = DEPLOY / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "chat-sentiment.json"
SCHEMAS = DEPLOY / "schemas"
COMPOSE_SCHEMA_SHA256 = "d549057ebc2925f39f62799eab0db7b9e2c18b35b6c00595199116da3ed10e64"
# the oldest Kubernetes with every field used GA (PDB unhealthyPodEvictionPolicy: 1.31) and the
# newest whose schemas kubernetes-validate bundles
K8S_VERSIONS = ("1.31.0", "1.37.0")
# series Prometheus makes itself, not scraped from a target
PROMETHEUS_SERIES = {"up"}


def load_yaml(path: Path):  # type: ignore[no-untyped-def]
    return yaml.safe_load(path.read_text())


# ---------------------------------------------------------------- metric names

def worker_metric_names() -> set[str]:
    """Every series name the worker can expose, as prometheus_client names them. A labelled
    metric has no sample until its first child exists, so the names come from the family's type
    as well as from the samples present now."""
    suffixes = {"counter": ("_total", "_created"), "gauge": ("",),
                "histogram": ("_bucket", "_count", "_sum", "_created"),
                "summary": ("", "_count", "_sum", "_created"), "info": ("_info",)}
    names: set[str] = set()
    for family in REGISTRY.collect():
        names |= {family.name + s for s in suffixes[family.type]}
        names |= {s.name for s in family.samples}
    return names


def triton_metric_names() -> set[str]:
    lines = (PROM / "triton-metrics.txt").read_text().splitlines()
    return {ln.strip() for ln in lines if ln.strip() and not ln.startswith("#")}


_STRINGS = re.compile(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGES = re.compile(r"\[[^\[\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_OFFSET = re.compile(r"\boffset\s+-?\w+")
_IDENT = re.compile(r"(?<![\w$.])([A-Za-z_:][\w:]*)(\s*\()?")
_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and",
             "or", "unless", "offset", "inf", "nan", "sum", "min", "max", "avg", "group",
             "stddev", "stdvar", "count", "count_values", "bottomk", "topk", "quantile",
             "limitk", "limit_ratio"}


def promql_metric_names(expr: str) -> set[str]:
    """Metric names in a PromQL expression: identifiers that are not functions, keywords,
    label names or values, durations or Grafana variables."""
    for pattern in (_STRINGS, _MATCHERS, _RANGES, _GROUPING, _OFFSET):
        expr = pattern.sub(" ", expr)
    return {m.group(1) for m in _IDENT.finditer(expr)
            if not m.group(2) and m.group(1) not in _KEYWORDS}


def unknown_metrics(expr: str) -> set[str]:
    names = promql_metric_names(expr)
    assert names, f"no metric in {expr!r}"
    known = worker_metric_names() | PROMETHEUS_SERIES
    triton = triton_metric_names()
    return {n for n in names if n not in (triton if n.startswith("nv_") else known)}


def test_metric_names_follow_prometheus_client():
    names = worker_metric_names()
    assert {"chat_messages_in_total", "chat_dead_letters_total", "chat_consumer_lag",
            "chat_triton_call_seconds_bucket", "chat_turn_to_event_seconds_sum"} <= names
    assert "chat_messages_in" not in names and "chat_batch_messages" not in names


def test_promql_parser():
    expr = ('histogram_quantile(0.95, sum by (le, model) (rate(chat_triton_call_seconds_bucket'
            '{model=~"enc.*", job="x"}[$__rate_interval] offset 5m))) / ignoring (reason) '
            'group_left sum(chat_x_total) > 1e3 and on() up == bool 0 or vector(1)')
    assert promql_metric_names(expr) == {"chat_triton_call_seconds_bucket", "chat_x_total", "up"}
    assert unknown_metrics(expr) == {"chat_x_total"}
    assert unknown_metrics("rate(nv_inference_request_failure[5m]) + nv_madeup") == {"nv_madeup"}


# ---------------------------------------------------------------- compose

def compose_schema() -> dict:
    raw = (SCHEMAS / "compose-spec.json").read_bytes()
    assert hashlib.sha256(raw).hexdigest() == COMPOSE_SCHEMA_SHA256, "see deploy/schemas/README.md"
    return json.loads(raw)


def compose_errors(doc: dict) -> list[str]:
    schema = compose_schema()
    validator = jsonschema.validators.validator_for(schema)(schema)
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
            for e in validator.iter_errors(doc)]


def test_compose_file_follows_the_compose_specification():
    doc = load_yaml(COMPOSE)
    assert compose_errors(doc) == []
    bad = json.loads(json.dumps(doc))
    bad["services"]["grafana"]["imgae"] = "typo"
    assert compose_errors(bad), "the schema must reject an unknown service key"


def test_compose_wires_prometheus_and_grafana():
    services = load_yaml(COMPOSE)["services"]
    assert {"kafka", "topic-init", "models", "triton", "worker", "prometheus",
            "grafana"} <= set(services)
    for name, svc in services.items():
        for port in svc.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} beyond localhost"
        for volume in svc.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (DEPLOY / source).exists(), f"{name} mounts missing {source}"
    # Prometheus reaches every worker replica's web port, and Triton's metrics port
    assert services["worker"]["environment"]["CHAT_WEB_HOST"] == "0.0.0.0"
    jobs = {j["job_name"]: j for j in load_yaml(PROM / "prometheus.yml")["scrape_configs"]}
    dns = jobs["chat-worker"]["dns_sd_configs"][0]
    assert dns["names"] == ["worker"]
    assert dns["port"] == Settings.model_fields["web_port"].default
    assert jobs["chat-worker"]["metrics_path"] == "/metrics"
    assert jobs["triton"]["static_configs"][0]["targets"] == ["triton:8002"]
    assert any(str(p).endswith(":8002") for p in services["triton"]["ports"])
    # Grafana: provisioning and dashboards mounted where the provider looks
    mounts = dict(v.split(":")[:2] for v in services["grafana"]["volumes"])
    provider = load_yaml(GRAFANA / "provisioning/dashboards/chat-sentiment.yml")["providers"][0]
    assert mounts["./grafana/dashboards"] == provider["options"]["path"]
    assert mounts["./grafana/provisioning"] == "/etc/grafana/provisioning"
    home = services["grafana"]["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home == f"{provider['options']['path']}/{DASHBOARD.name}"
    assert dict(v.split(":")[:2] for v in services["prometheus"]["volumes"])[
        "./prometheus"] == "/etc/prometheus"


# ---------------------------------------------------------------- Kubernetes

def k8s_docs() -> list[tuple[Path, dict]]:
    return [(path, doc) for path in sorted(K8S.rglob("*.yaml"))
            for doc in yaml.safe_load_all(path.read_text()) if doc]


def keda_errors(doc: dict) -> list[str]:
    schema = json.loads((SCHEMAS / "keda-scaledobject.schema.json").read_text())
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
            for e in cls(schema).iter_errors(doc)]


def by_kind(kind: str) -> dict[str, dict]:
    return {doc["metadata"]["name"]: doc for _, doc in k8s_docs() if doc["kind"] == kind}


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_kubernetes_manifests_follow_the_kubernetes_schemas(version):
    seen = set()
    for path, doc in k8s_docs():
        seen.add(doc["kind"])
        if doc["kind"] == "Kustomization":
            for res in doc.get("resources", []):
                target = path.parent / res
                assert target.is_file() or (target / "kustomization.yaml").is_file(), res
        elif doc["kind"] == "ScaledObject":
            assert keda_errors(doc) == [], path
        else:
            kubernetes_validate.validate(doc, version, strict=True)
    assert {"Deployment", "Service", "ConfigMap", "ScaledObject"} <= seen
    deployment = by_kind("Deployment")["chat-worker"]
    deployment["spec"]["replicas"] = "2"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, version, strict=True)


def test_keda_schema_rejects_typos():
    doc = by_kind("ScaledObject")["chat-worker"]
    assert keda_errors(doc) == []
    doc["spec"]["maxReplicas"] = 12
    doc["spec"]["triggers"][0]["metadata"]["lagTreshold"] = "10"
    assert len(keda_errors(doc)) == 2


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_autoscaling_matches_the_worker_and_stays_within_the_partitions(version):
    scaled = by_kind("ScaledObject")["chat-worker"]
    config = by_kind("ConfigMap")["chat-worker-config"]["data"]
    worker = by_kind("Deployment")["chat-worker"]
    spec = scaled["spec"]
    # workers <= partitions: a replica beyond the partition count gets no partition
    assert spec["maxReplicaCount"] == int(config["CHAT_PARTITIONS"])
    assert 1 <= spec["minReplicaCount"] <= spec["maxReplicaCount"]
    assert spec["scaleTargetRef"]["name"] == worker["metadata"]["name"]
    assert scaled["metadata"]["namespace"] == worker["metadata"]["namespace"]
    (trigger,) = spec["triggers"]
    meta = trigger["metadata"]
    assert trigger["type"] == "kafka"
    assert meta["topic"] == config["CHAT_TOPIC_TURNS"]
    assert meta["consumerGroup"] == config["CHAT_APP_ID"]
    assert meta["bootstrapServers"] == (
        config["CHAT_BROKER"].removeprefix("kafka://").replace(";", ","))
    assert meta["allowIdleConsumers"] == "false"
    assert meta["offsetResetPolicy"] == "earliest"  # the worker's consumer_auto_offset_reset
    # the HPA that KEDA creates from it, against Kubernetes' own autoscaling/v2 schema
    hpa = {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
           "metadata": {"name": "keda-hpa-chat-worker", "namespace": "chat-sentiment"},
           "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment",
                                       "name": spec["scaleTargetRef"]["name"]},
                    "minReplicas": spec["minReplicaCount"],
                    "maxReplicas": spec["maxReplicaCount"],
                    "behavior": spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"],
                    "metrics": [{"type": "External", "external": {
                        "metric": {"name": "s0-kafka-chat.turns"},
                        "target": {"type": "AverageValue",
                                   "averageValue": meta["lagThreshold"]}}}]}}
    kubernetes_validate.validate(hpa, version, strict=True)


def test_the_autoscaling_overlay_is_separate_and_hands_replicas_to_keda():
    base = load_yaml(K8S / "kustomization.yaml")
    assert not any(r.startswith("keda") for r in base["resources"]), "KEDA CRDs stay optional"
    overlay = load_yaml(K8S / "keda" / "kustomization.yaml")
    assert ".." in overlay["resources"] and "scaledobject.yaml" in overlay["resources"]
    (patch,) = overlay["patches"]
    assert patch["target"] == {"kind": "Deployment", "name": "chat-worker"}
    assert yaml.safe_load(patch["patch"]) == [{"op": "remove", "path": "/spec/replicas"}]


# ---------------------------------------------------------------- Prometheus

@pytest.fixture(scope="module")
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        message = "promtool not found (Debian package 'prometheus')"
        if os.environ.get("CI") == "true":
            pytest.fail(message + ": CI must install it")
        pytest.skip(message)
    return path


def run_promtool(promtool: str, *args: str | Path) -> None:
    done = subprocess.run([promtool, *map(str, args)], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def test_prometheus_config_and_rules_pass_promtool(promtool):
    run_promtool(promtool, "check", "config", PROM / "prometheus.yml")
    run_promtool(promtool, "check", "rules", PROM / "alerts.yml")


def test_alerting_rules_unit_tests_pass(promtool):
    run_promtool(promtool, "test", "rules", PROM / "alerts_test.yml")
    tested = {t["alertname"] for case in load_yaml(PROM / "alerts_test.yml")["tests"]
              for t in case["alert_rule_test"] if t["exp_alerts"]}
    assert tested == set(alert_rules()), "every alert needs a firing unit test"


def test_dashboard_queries_are_valid_promql(promtool, tmp_path):
    """promtool parses each panel query, as a recording rule with Grafana's variables set."""
    rules = [{"record": f"dashboard:panel{p['id']}_{t['refId']}",
              "expr": re.sub(r"\$__(rate_interval|interval|range)", "5m", t["expr"])}
             for p in panels() for t in p["targets"]]
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    run_promtool(promtool, "check", "rules", path)


def alert_rules() -> dict[str, str]:
    groups = load_yaml(PROM / "alerts.yml")["groups"]
    return {r["alert"]: r["expr"] for g in groups for r in g["rules"] if "alert" in r}


def test_alerting_rules_name_only_exported_metrics():
    rules = alert_rules()
    assert {"ChatConsumerLagGrowing", "ChatDeadLetterRateHigh", "ChatTritonUnhealthy",
            "ChatNoOutput"} <= set(rules)
    for name, expr in rules.items():
        assert unknown_metrics(expr) == set(), name


# ---------------------------------------------------------------- Grafana

def panels() -> list[dict]:
    out = []
    for panel in json.loads(DASHBOARD.read_text())["panels"]:
        out += [panel, *panel.get("panels", [])] if panel["type"] == "row" else [panel]
    return [p for p in out if p["type"] != "row"]


def test_dashboard_panels_query_only_exported_metrics():
    datasource = load_yaml(GRAFANA / "provisioning/datasources/prometheus.yml")["datasources"][0]
    found = panels()
    assert len({p["id"] for p in found}) == len(found)
    titles = {p["title"] for p in found}
    assert {"Turns/s", "Consumer lag per partition", "Turn → event latency", "Batch size",
            "Triton call time by model", "Alerts by rule", "Dead letters by reason",
            "States held"} <= titles
    for panel in found:
        assert panel["datasource"]["uid"] == datasource["uid"], panel["title"]
        assert panel["targets"], f"{panel['title']} has no query"
        for target in panel["targets"]:
            assert target["expr"].strip(), panel["title"]
            unknown = unknown_metrics(target["expr"])
            assert unknown == set(), f"{panel['title']}: {unknown}"
            # a panel that reads Triton's own metrics says so in its title
            if any(n.startswith("nv_") for n in promql_metric_names(target["expr"])):
                assert "Triton" in panel["title"] and "nv_" in panel["title"]
