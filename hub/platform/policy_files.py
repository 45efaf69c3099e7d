"""Reading policy files: YAML that keeps dates as text and refuses duplicate keys, and
JSON Schema validation whose problems name the file and the field."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import referencing
import yaml

from hub.platform.policy_models import PolicyIssue

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "policies" / "schema"
#: names another folder of the schemas than the one beside the code
SCHEMA_DIR_ENV = "VISITING_SCHEMA_DIR"

# ---------------------------------------------------------------------------
# YAML that keeps dates as text and refuses duplicate keys


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that keeps timestamps as strings (validated by us) and rejects duplicate keys."""


_StrictLoader.yaml_implicit_resolvers = {
    key: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for key, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False):
    seen = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def read_yaml(path: Path, issues: list[PolicyIssue]) -> Any | None:
    """Parse one YAML file; a parse error becomes an issue and None."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        issues.append(PolicyIssue(str(path), "", "file not found"))
        return None
    except (OSError, UnicodeDecodeError) as e:
        issues.append(PolicyIssue(str(path), "", f"cannot be read: {e}"))
        return None
    try:
        return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e)
        issues.append(PolicyIssue(str(path), where, f"YAML does not parse: {problem}"))
        return None


# ---------------------------------------------------------------------------
# schemas


@cache
def _schemas() -> tuple[dict[str, Any], referencing.Registry]:
    schema_dir = Path(os.environ.get(SCHEMA_DIR_ENV, SCHEMA_DIR))
    schemas = {}
    resources = []
    for name in ("platform", "approval", "users", "catalogue"):
        doc = json.loads((schema_dir / f"{name}.schema.json").read_text())
        schemas[name] = doc
        resource = referencing.Resource.from_contents(doc)
        resources.append((f"{name}.schema.json", resource))
        resources.append((doc["$id"], resource))
    registry = referencing.Registry().with_resources(resources)
    return schemas, registry


def _field_path(parts: Iterable[Any]) -> str:
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "(top level)"


def check_schema(kind: str, doc: Any, file: str) -> list[PolicyIssue]:
    schemas, registry = _schemas()
    validator = jsonschema.Draft202012Validator(schemas[kind], registry=registry)
    issues = []
    for err in sorted(validator.iter_errors(doc), key=lambda e: list(map(str, e.absolute_path))):
        path = list(err.absolute_path)
        if err.validator == "required":
            missing = err.message.split("'")[1] if "'" in err.message else err.message
            issues.append(PolicyIssue(file, _field_path([*path, missing]), "missing field"))
        elif err.validator == "additionalProperties":
            issues.append(PolicyIssue(file, _field_path(path), err.message))
        else:
            issues.append(PolicyIssue(file, _field_path(path), _short_message(err)))
    return issues


def _short_message(err: jsonschema.ValidationError) -> str:
    if err.validator == "pattern":
        return f"{err.instance!r} does not have the expected form ({err.validator_value})"
    if err.validator == "enum":
        return f"{err.instance!r} is not one of {err.validator_value}"
    if err.validator == "oneOf" and isinstance(err.instance, str | int):
        return f"{err.instance!r} is not a size (bytes, or a number with K, M, G or T)"
    return err.message
