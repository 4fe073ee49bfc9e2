"""A small evaluator of Kubernetes NetworkPolicy ingress rules for concrete pods (the tests'
stand-in for a CNI: no cluster runs here)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Pod:
    namespace: str
    labels: dict[str, str] = field(default_factory=dict)
    namespace_labels: dict[str, str] = field(default_factory=dict)  # besides kubernetes.io/metadata.name


def selects(selector: dict[str, Any] | None, labels: dict[str, str]) -> bool:
    """A Kubernetes label selector (matchLabels and matchExpressions); {} selects everything."""
    selector = selector or {}
    if any(labels.get(key) != value for key, value in selector.get("matchLabels", {}).items()):
        return False
    for expression in selector.get("matchExpressions", []):
        key, operator, values = expression["key"], expression["operator"], expression.get("values", [])
        present = key in labels
        if (
            (operator == "In" and not (present and labels[key] in values))
            or (operator == "NotIn" and present and labels[key] in values)
            or (operator == "Exists" and not present)
            or (operator == "DoesNotExist" and present)
        ):
            return False
    return True


def ingress_admits(policies: list[dict[str, Any]], target: Pod, source: Pod, port: int) -> bool:
    """NetworkPolicy ingress semantics for TCP to a numbered port: a pod no ingress policy selects
    admits everything; a selected pod admits a connection that some rule of some selecting policy
    admits. A peer without namespaceSelector means the policy's own namespace; namespaces are
    matched on their labels plus kubernetes.io/metadata.name, which Kubernetes sets on every one."""
    selecting = [
        policy
        for policy in policies
        if policy["metadata"]["namespace"] == target.namespace
        and "Ingress" in policy["spec"].get("policyTypes", ["Ingress"])
        and selects(policy["spec"]["podSelector"], target.labels)
    ]
    if not selecting:
        return True
    for policy in selecting:
        for rule in policy["spec"].get("ingress", []):
            ports = rule.get("ports", [])
            if ports and not any(p.get("port") == port and p.get("protocol", "TCP") == "TCP" for p in ports):
                continue
            if not rule.get("from"):
                return True
            for peer in rule["from"]:
                if "ipBlock" in peer:
                    continue
                if "namespaceSelector" in peer:
                    namespace_labels = {**source.namespace_labels, "kubernetes.io/metadata.name": source.namespace}
                    namespace_ok = selects(peer["namespaceSelector"], namespace_labels)
                else:
                    namespace_ok = source.namespace == policy["metadata"]["namespace"]
                if namespace_ok and selects(peer.get("podSelector"), source.labels):
                    return True
    return False
