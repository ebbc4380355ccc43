#!/usr/bin/env python3
"""Validates examples/kubernetes strictly, as `kubectl apply -k` would see it; a kind
without a schema is an error, never a warning.

`kubernetes-validate --strict` checks the built-in kinds with additionalProperties:
false, but for a kind it has no schema for (the PodMonitor) it prints a WARN and exits
0, and a kustomization.yaml is no resource at all. So here:
  - the kustomization is rendered the way kustomize does for the keys it uses
    (resources, a configMapGenerator from files, generatorOptions, images), refusing
    any other key, a missing file, or a ConfigMap name with a hash suffix (which would
    roll the pods on every edit instead of hot-reloading);
  - every rendered document of a built-in kind goes through kubernetes-validate's own
    validate(strict=True);
  - the PodMonitor goes through the Prometheus Operator's schema (the PyPI package
    cloudcoil-models-prometheus-operator, pydantic models generated from the CRDs),
    made strict the same way, with metadata checked as Kubernetes' ObjectMeta.

Usage: validate_kubernetes.py DIR   (exit 1 on any error)
"""

import os
import sys

import jsonschema
import yaml
from kubernetes_validate import utils as kv
from referencing import Registry, Resource

K8S_VERSION = "1.37.0"
KUSTOMIZATION_KEYS = {"apiVersion", "kind", "resources", "configMapGenerator",
                      "generatorOptions", "images", "namespace", "labels"}
OBJECT_META = {
    "$ref": "https://kubernetes.io/api/_definitions.json"
            "#/$defs/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
}


def strictify(node):
    """additionalProperties: false wherever an object lists its properties and says
    nothing of other keys, as kubernetes-validate's strict schemas do."""
    if not isinstance(node, dict):
        return node
    out = dict(node)
    for k in ("properties", "patternProperties", "$defs", "definitions"):
        if isinstance(out.get(k), dict):
            out[k] = {name: strictify(s) for name, s in out[k].items()}
    for k in ("allOf", "anyOf", "oneOf", "prefixItems"):
        if isinstance(out.get(k), list):
            out[k] = [strictify(s) for s in out[k]]
    for k in ("items", "additionalProperties", "not", "if", "then", "else"):
        if isinstance(out.get(k), dict):
            out[k] = strictify(out[k])
    if "properties" in out and "additionalProperties" not in out:
        out["additionalProperties"] = False
    return out


def operator_schemas():
    from cloudcoil.models.prometheus_operator import v1

    schemas = {}
    for kind in ("PodMonitor", "ServiceMonitor", "PrometheusRule"):
        model = getattr(v1, kind)
        schema = strictify(model.model_json_schema(by_alias=True, mode="validation"))
        schema["properties"]["metadata"] = OBJECT_META
        schemas[("monitoring.coreos.com/v1", kind)] = schema
    return schemas


def leaves(error):
    """The errors under an anyOf, without the branch that only allows null (pydantic
    writes every optional field as anyOf [X, null])."""
    subs = [e for e in error.context or ()
            if not (e.validator == "type" and e.validator_value == "null")]
    if not subs:
        yield error
        return
    for sub in subs:
        yield from leaves(sub)


def where(path):
    return ".".join(str(p) for p in path) or "(root)"


def render(directory):
    """The documents `kubectl apply -k DIR` would send, and the errors on the way."""
    errors = []
    with open(os.path.join(directory, "kustomization.yaml")) as f:
        kustomization = yaml.safe_load(f)
    unknown = set(kustomization) - KUSTOMIZATION_KEYS
    if unknown:
        errors.append(f"kustomization.yaml: keys this check does not render: {sorted(unknown)}")
    docs = []
    for name in kustomization.get("resources", []):
        with open(os.path.join(directory, name)) as f:
            docs += [(name, d) for d in yaml.safe_load_all(f) if d]
    if not kustomization.get("generatorOptions", {}).get("disableNameSuffixHash"):
        errors.append("kustomization.yaml: a hash-suffixed ConfigMap rolls the pods on every "
                      "edit instead of hot-reloading: set generatorOptions.disableNameSuffixHash")
    for generator in kustomization.get("configMapGenerator", []):
        data = {}
        for file in generator["files"]:
            with open(os.path.join(directory, file)) as f:
                data[os.path.basename(file)] = f.read()
        docs.append(("kustomization.yaml", {
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": generator["name"]}, "data": data,
        }))
    images = {i["name"]: i for i in kustomization.get("images", [])}
    used = set()
    for _, doc in docs:
        pod = doc.get("spec", {}).get("template", {}).get("spec", {})
        for container in pod.get("containers", []):
            image = container["image"].split(":")[0]
            if image in images:
                used.add(image)
                override = images[image]
                container["image"] = f"{override.get('newName', image)}:{override['newTag']}"
    for name in set(images) - used:
        errors.append(f"kustomization.yaml: images names {name}, which no container uses")
    return docs, errors


def main():
    directory = sys.argv[1]
    docs, errors = render(directory)
    custom = operator_schemas()
    definitions = kv.schema_contents(
        f"kubernetes-json-schema/v{K8S_VERSION}-local-strict/_definitions.json", K8S_VERSION)
    registry = Resource.from_contents(definitions) @ Registry()
    for origin, doc in docs:
        key = (doc.get("apiVersion"), doc.get("kind"))
        name = f"{origin} {str(key[1]).lower()}/{(doc.get('metadata') or {}).get('name')}"
        found = []
        if key in custom:
            validator = jsonschema.Draft202012Validator(custom[key], registry=registry)
            found = [f"{where(leaf.absolute_path)}: {leaf.message}"
                     for e in validator.iter_errors(doc) for leaf in leaves(e)]
        else:
            try:
                kv.validate(doc, K8S_VERSION, strict=True)
            except kv.ValidationError as e:
                found = [f"{where(e.path)}: {e.message}"]
            except kv.SchemaNotFoundError as e:
                found = [f"no schema: {e.message}"]
        errors += [f"{name}: {e}" for e in found]
        if not found:
            print(f"OK    {name} ({key[0]})")
    for error in errors:
        print(f"ERROR {error}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
