"""The Helm chart lints, renders valid Kubernetes objects, and is safe by default.

Safe by default: nothing exposed outside the cluster, data stores on persistent volumes,
every credential from a Secret, probes and resource requests on every container, non-root
pods, one worker Deployment per queue.
"""

from __future__ import annotations

from typing import Any

import kubernetes_validate
import pytest

from flywheel.workflow.options import WorkflowOptions
from tests.deploy.conftest import Helm, HelmFailed, settings_from_env

KUBE_VERSION = "1.30.0"
CREDENTIALS = {"MONGODB_URL", "ELASTICSEARCH_URL", "REDIS_URL", "NMP_TOKEN"}
STORES = {"redis", "mongodb", "elasticsearch"}
EVERYTHING_ON = {
    "ingress": {"enabled": True, "className": "nginx"},
    "mlflow": {"enabled": True},
    "secrets": {"existingSecret": "flywheel-prod"},
    "caBundle": {"secretName": "flywheel-ca"},
    "config": {
        "jobConfig": "llm_judge_config:\n  type: remote\n",
        "corsOrigins": ["https://console.example.com"],
        "workflowQueuePrefix": "prod.",
        "nmp": {
            "baseUrl": "https://nmp.example.com",
            "datastoreUrl": "https://datastore.example.com",
            "nimUrl": "https://nim.example.com",
        },
    },
    "extraEnv": [
        {"name": "JUDGE_API_KEY", "valueFrom": {"secretKeyRef": {"name": "j", "key": "k"}}}
    ],
}


def by_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


def workloads(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] in {"Deployment", "StatefulSet"}]


def containers(workload: dict[str, Any]) -> list[dict[str, Any]]:
    spec = workload["spec"]["template"]["spec"]
    return list(spec.get("initContainers", [])) + list(spec["containers"])


def component(obj: dict[str, Any]) -> str:
    return str(obj["metadata"]["labels"]["app.kubernetes.io/component"])


def flywheel_workloads(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """API, workers and beat: the workloads that run the Flywheel image."""
    return [w for w in workloads(objects) if component(w) not in STORES | {"mlflow"}]


@pytest.fixture(scope="module")
def default(helm: Helm) -> list[dict[str, Any]]:
    return helm.template()


@pytest.fixture(scope="module")
def everything(helm: Helm) -> list[dict[str, Any]]:
    return helm.template(EVERYTHING_ON)


def test_helm_lint_passes_strict(helm: Helm) -> None:
    assert helm.lint() == [], helm.description
    assert helm.lint(EVERYTHING_ON) == [], helm.description


@pytest.mark.parametrize("values", ["default", "everything"])
def test_rendered_objects_match_the_kubernetes_schema(
    values: str, request: pytest.FixtureRequest
) -> None:
    objects = request.getfixturevalue(values)
    assert objects
    for obj in objects:
        kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)


def test_nothing_is_exposed_outside_the_cluster_by_default(default: list[dict[str, Any]]) -> None:
    services = by_kind(default, "Service")
    assert {component(s) for s in services} == {"api"} | STORES
    for service in services:
        assert service["spec"].get("type", "ClusterIP") == "ClusterIP", service["metadata"]
        assert all("nodePort" not in port for port in service["spec"]["ports"])
    assert by_kind(default, "Ingress") == []
    for workload in workloads(default):
        pod = workload["spec"]["template"]["spec"]
        assert not pod.get("hostNetwork")
        for container in containers(workload):
            assert all("hostPort" not in p for p in container.get("ports", []))


def test_ingress_only_when_enabled(everything: list[dict[str, Any]]) -> None:
    (ingress,) = by_kind(everything, "Ingress")
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend["name"].endswith("-api")


def test_data_stores_keep_their_data_on_persistent_volumes(
    default: list[dict[str, Any]], everything: list[dict[str, Any]]
) -> None:
    for objects, stores in ((default, STORES), (everything, STORES | {"mlflow"})):
        sets = {component(s): s for s in by_kind(objects, "StatefulSet")}
        assert set(sets) == stores
        for name, sts in sets.items():
            claims = sts["spec"]["volumeClaimTemplates"]
            assert [c["metadata"]["name"] for c in claims] == ["data"], name
            assert claims[0]["spec"]["resources"]["requests"]["storage"]
            mounts = [m["name"] for c in containers(sts) for m in c.get("volumeMounts", [])]
            assert "data" in mounts, name


def test_data_stores_are_reachable_only_from_flywheel_pods(default: list[dict[str, Any]]) -> None:
    policies = {component_of_policy(p): p for p in by_kind(default, "NetworkPolicy")}
    assert set(policies) == STORES
    client_labels = {
        k: v
        for w in flywheel_workloads(default)
        for k, v in w["spec"]["template"]["metadata"]["labels"].items()
        if k == "flywheel.io/client"
    }
    assert client_labels == {"flywheel.io/client": "true"}
    for policy in policies.values():
        (rule,) = policy["spec"]["ingress"]
        (source,) = rule["from"]
        assert source["podSelector"]["matchLabels"]["flywheel.io/client"] == "true"


def component_of_policy(policy: dict[str, Any]) -> str:
    return str(policy["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/component"])


@pytest.mark.parametrize("values", ["default", "everything"])
def test_credentials_come_from_secrets(values: str, request: pytest.FixtureRequest) -> None:
    objects = request.getfixturevalue(values)
    secret = "flywheel-prod" if values == "everything" else "fw-flywheel-credentials"
    for workload in workloads(objects):
        for container in containers(workload):
            for env in container.get("env", []):
                name = env["name"]
                is_credential = name in CREDENTIALS or "PASSWORD" in name or "KEY" in name
                if not is_credential:
                    assert "valueFrom" in env or "@" not in env.get("value", ""), name
                    continue
                assert "value" not in env, f"{name} is inline in {workload['metadata']['name']}"
                ref = env["valueFrom"]["secretKeyRef"]
                if name in CREDENTIALS:
                    assert ref == {"name": secret, "key": name, **_optional(name)}


def _optional(name: str) -> dict[str, bool]:
    return {"optional": True} if name == "NMP_TOKEN" else {}


def test_the_generated_secret_points_at_the_in_cluster_stores(
    default: list[dict[str, Any]],
) -> None:
    (secret,) = by_kind(default, "Secret")
    data = secret["stringData"]
    assert secret["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert data["REDIS_URL"].startswith("redis://:")
    assert "@fw-flywheel-redis:" in data["REDIS_URL"]
    assert data["MONGODB_URL"].startswith("mongodb://flywheel:")
    assert data["ELASTICSEARCH_URL"].startswith("http://elastic:")
    for key in ("redis-password", "mongodb-password", "elasticsearch-password"):
        assert len(data[key]) == 32


def test_an_existing_secret_replaces_the_generated_one(everything: list[dict[str, Any]]) -> None:
    assert by_kind(everything, "Secret") == []


def test_external_stores_need_an_existing_secret(helm: Helm) -> None:
    with pytest.raises(HelmFailed, match="existingSecret"):
        helm.template({"redis": {"enabled": False}})
    objects = helm.template(
        {
            "secrets": {"existingSecret": "managed"},
            "redis": {"enabled": False},
            "mongodb": {"enabled": False},
            "elasticsearch": {"enabled": False},
        }
    )
    assert by_kind(objects, "StatefulSet") == []
    assert by_kind(objects, "NetworkPolicy") == []


@pytest.mark.parametrize("values", ["default", "everything"])
def test_every_container_has_probes_requests_and_runs_unprivileged(
    values: str, request: pytest.FixtureRequest
) -> None:
    for workload in workloads(request.getfixturevalue(values)):
        pod = workload["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["automountServiceAccountToken"] is False
        for container in containers(workload):
            where = f"{workload['metadata']['name']}/{container['name']}"
            assert container.get("readinessProbe"), where
            assert container.get("livenessProbe"), where
            requests = container["resources"]["requests"]
            assert requests.get("cpu"), where
            assert requests.get("memory"), where
            assert container["securityContext"]["allowPrivilegeEscalation"] is False, where
            assert container["securityContext"]["capabilities"]["drop"] == ["ALL"], where


def test_api_binds_all_interfaces_with_auth_on_and_probes_health(
    default: list[dict[str, Any]],
) -> None:
    (api,) = [w for w in workloads(default) if component(w) == "api"]
    (container,) = containers(api)
    args = container["args"]
    assert args[:3] == ["serve", "--host", "0.0.0.0"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    # `flywheel serve` refuses a non-loopback host when auth is disabled.
    assert env["FLYWHEEL_AUTH_ENABLED"] == "true"
    assert container["readinessProbe"]["httpGet"]["path"] == "/api/health"
    assert container["readinessProbe"]["httpGet"]["port"] == "http"
    assert container["ports"][0]["containerPort"] == int(args[args.index("--port") + 1])
    assert container["securityContext"]["readOnlyRootFilesystem"] is True


def test_one_worker_deployment_per_queue_scaled_by_replicas(helm: Helm) -> None:
    options = WorkflowOptions()
    objects = helm.template({"workers": {"queues": {"steps": {"replicas": 5}}}})
    workers = {
        w["metadata"]["labels"]["flywheel.io/queue"]: w
        for w in by_kind(objects, "Deployment")
        if component(w).startswith("worker-")
    }
    assert set(workers) == {options.steps_queue, options.long_queue}
    assert workers[options.steps_queue]["spec"]["replicas"] == 5
    assert workers[options.long_queue]["spec"]["replicas"] == 1
    for queue, worker in workers.items():
        (container,) = containers(worker)
        assert f"--queues={queue}" in container["args"]
        (node,) = [a.split("=", 1)[1] for a in container["args"] if a.startswith("--hostname=")]
        ping = " ".join(container["livenessProbe"]["exec"]["command"])
        assert "inspect ping" in ping
        assert node.replace("%h", "${HOSTNAME}") in ping


def test_queue_prefix_reaches_queue_names(everything: list[dict[str, Any]]) -> None:
    queues = {
        w["metadata"]["labels"]["flywheel.io/queue"]
        for w in by_kind(everything, "Deployment")
        if component(w).startswith("worker-")
    }
    assert queues == {"prod.flywheel.steps", "prod.flywheel.long"}


def test_beat_is_a_single_replica(default: list[dict[str, Any]]) -> None:
    (beat,) = [w for w in workloads(default) if component(w) == "beat"]
    assert beat["spec"]["replicas"] == 1
    assert beat["spec"]["strategy"]["type"] == "Recreate"


@pytest.mark.parametrize("values", ["default", "everything"])
def test_flywheel_env_is_exactly_what_settings_read(
    values: str, request: pytest.FixtureRequest, env_names: set[str]
) -> None:
    objects = request.getfixturevalue(values)
    extra = {e["name"] for e in EVERYTHING_ON["extraEnv"]} if values == "everything" else set()
    for workload in flywheel_workloads(objects):
        for container in containers(workload):
            env = {e["name"]: e for e in container["env"]}
            unknown = set(env) - env_names - extra
            assert not unknown, f"{workload['metadata']['name']}: settings.py reads no {unknown}"
            assert {"MONGODB_URL", "ELASTICSEARCH_URL", "REDIS_URL"} <= set(env)
            # The literal values are valid settings (secrets stand in as placeholders).
            literal = {n: e.get("value", "placeholder") for n, e in env.items() if n not in extra}
            literal.update(MONGODB_URL="mongodb://u:p@h/db", ELASTICSEARCH_URL="https://h:9200")
            literal.update(REDIS_URL="rediss://:p@h:6380/0")
            settings = settings_from_env(literal)
            assert settings.auth_enabled is True
            assert settings.es_verify_certs is True
            if values == "everything":
                assert settings.platform_kind == "nemo"
                assert settings.config_path is not None


def test_values_schema_rejects_bad_values(helm: Helm) -> None:
    bad: list[dict[str, Any]] = [
        {"api": {"replicas": -1}},
        {"config": {"logFormat": "xml"}},
        {"config": {"esCollectionName": "Flywheel"}},
        {"workers": {"queues": {"steps": {"concurrency": 0}}}},
        {"api": {"service": {"type": "ExternalName"}}},
    ]
    for values in bad:
        with pytest.raises(HelmFailed):
            helm.template(values)
