"""deploy=kubernetes: each overlay builds with kustomize and every object validates against
the Kubernetes schemas shipped in kubernetes-validate (offline, strict: unknown fields fail),
and the objects agree with each other and with the service (probe routes, selectors, settings).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from conftest import PAIRWISE, TEMPLATE_PROJECT, Rendered, combination_id, render

# The oldest Kubernetes minor still in the main clouds' standard support, and the newest the
# validator ships: a field that exists in only one of them fails one of the two.
KUBERNETES_VERSIONS = ["1.32.0", kubernetes_validate.latest_version()]
OVERLAYS = ["dev", "production"]
KUBERNETES_COMBINATIONS = [c for c in PAIRWISE if c["deploy"] == "kubernetes"]
HEALTH_ROUTES = TEMPLATE_PROJECT / "src" / "{{cookiecutter.package_name}}" / "api" / "routes"

pytestmark = pytest.mark.skipif(
    shutil.which("kubectl") is None,
    reason="kubectl is not on PATH (its `kubectl kustomize` builds the overlays offline; "
    "Debian/Ubuntu: apt-get install kubectl)",
)


@pytest.fixture(scope="module", params=KUBERNETES_COMBINATIONS, ids=combination_id)
def project(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Rendered:
    return render(request.param, tmp_path_factory.mktemp("k8s"))


def build(project: Path, overlay: str) -> list[dict[str, Any]]:
    result = subprocess.run(
        ["kubectl", "kustomize", str(project / "deploy" / "kubernetes" / "overlays" / overlay)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def by_kind(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind and name in (None, d["metadata"]["name"])]
    assert len(found) == 1, f"{len(found)} {kind} objects named {name}"
    return found[0]


def test_kubernetes_combinations_are_rendered_by_the_pairwise_set() -> None:
    assert KUBERNETES_COMBINATIONS, "the pairwise set renders no kubernetes project"


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_object_validates_against_the_kubernetes_schema(
    project: Rendered, overlay: str, version: str
) -> None:
    docs = build(project.path, overlay)
    kinds = {d["kind"] for d in docs}
    assert {
        "Deployment",
        "Service",
        "ConfigMap",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "NetworkPolicy",
    } <= kinds
    assert ("StatefulSet" in kinds) == (overlay == "dev")
    for doc in docs:
        kubernetes_validate.validate(doc, version, strict=True)


def test_the_validator_rejects_a_misspelt_field(project: Rendered) -> None:
    deployment = by_kind(build(project.path, "dev"), "Deployment")
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbes"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSIONS[0], strict=True)


def _routes() -> set[str]:
    text = (HEALTH_ROUTES / "health.py").read_text(encoding="utf-8")
    return set(re.findall(r'@router\.get\("([^"]+)"', text))


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_probes_selectors_and_autoscaling_fit_together(project: Rendered, overlay: str) -> None:
    docs = build(project.path, overlay)
    deployment = by_kind(docs, "Deployment", "api")
    pod = deployment["spec"]["template"]
    labels = pod["metadata"]["labels"]
    (container,) = pod["spec"]["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert {"/readyz", "/healthz"} <= _routes()
    assert container["resources"]["requests"]["cpu"]
    assert container["resources"]["requests"]["memory"]
    for kind in ("Service", "PodDisruptionBudget", "NetworkPolicy"):
        selector = by_kind(docs, kind, "api")["spec"]
        selector = selector.get("selector", selector.get("podSelector"))
        selector = selector.get("matchLabels", selector)
        assert selector.items() <= labels.items(), kind
    hpa = by_kind(docs, "HorizontalPodAutoscaler", "api")
    assert hpa["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    assert hpa["spec"]["minReplicas"] == (1 if overlay == "dev" else 3)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_config_map_holds_known_settings_and_otel_and_secrets_are_references(
    project: Rendered, overlay: str
) -> None:
    docs = build(project.path, overlay)
    deployment = by_kind(docs, "Deployment", "api")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    config_name = container["envFrom"][0]["configMapRef"]["name"]
    config = by_kind(docs, "ConfigMap", config_name)["data"]
    env_example = (project.path / ".env.example").read_text(encoding="utf-8")
    known = set(re.findall(r"^#?\s*(RAG_[A-Z0-9_]+)=", env_example, flags=re.MULTILINE))
    assert {k for k in config if k.startswith("RAG_")} <= known
    assert {"OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_SERVICE_NAME"} <= set(config)
    assert config["RAG_QDRANT_URL"].startswith("http://qdrant:" if overlay == "dev" else "https://")
    provider = project.answers["llm_provider"]
    assert config["RAG_ANSWERER"] == ("extractive" if provider == "none" else "llm")
    assert config["RAG_MCP_ENABLED"] == (
        "true" if project.answers["mcp_server"] == "yes" else "false"
    )
    secret_env = {e["name"]: e for e in container["env"]}
    assert ("RAG_LLM_API_KEY" in secret_env) == (provider != "none")
    for entry in secret_env.values():
        assert "secretKeyRef" in entry["valueFrom"], entry["name"]
    assert not [d for d in docs if d["kind"] == "Secret"], "secrets are referenced, not shipped"
    if overlay == "dev":
        qdrant = by_kind(docs, "StatefulSet", "qdrant")
        service = by_kind(docs, "Service", "qdrant")
        assert service["spec"]["selector"].items() <= (
            qdrant["spec"]["template"]["metadata"]["labels"].items()
        )
