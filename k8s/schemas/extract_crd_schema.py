"""Extract one version's openAPIV3Schema from a published CRD into a JSON Schema data file.

    python k8s/schemas/extract_crd_schema.py CRD.yaml VERSION OUT.json --source URL@COMMIT

Prose descriptions are dropped (they are most of the bytes and carry no constraints); every
type, enum, pattern, required list and x-kubernetes-* marker is kept.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import yaml


def strip_descriptions(node: Any, in_properties: bool = False) -> Any:
    """Drop schema ``description`` strings; keys of a ``properties`` map are field names, kept."""
    if isinstance(node, dict):
        result = {}
        for key, value in node.items():
            if not in_properties and key == "description" and isinstance(value, str):
                continue
            result[key] = strip_descriptions(value, in_properties=key == "properties" and not in_properties)
        return result
    if isinstance(node, list):
        return [strip_descriptions(item) for item in node]
    return node


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("crd", type=Path)
    parser.add_argument("version")
    parser.add_argument("out", type=Path)
    parser.add_argument("--source", required=True)
    args = parser.parse_args()
    crd = next(
        doc for doc in yaml.safe_load_all(args.crd.read_text()) if doc and doc.get("kind") == "CustomResourceDefinition"
    )
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == args.version]
    schema = strip_descriptions(version["schema"]["openAPIV3Schema"])
    document = {
        "$comment": f"openAPIV3Schema of {crd['spec']['names']['kind']} {crd['spec']['group']}/{args.version} "
        f"from {args.source} (Apache-2.0), descriptions removed",
        "group": crd["spec"]["group"],
        "version": args.version,
        "kind": crd["spec"]["names"]["kind"],
        "schema": schema,
    }
    args.out.write_text(json.dumps(document, separators=(",", ":"), sort_keys=True) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
