"""Validation of LINE API traffic against LINE's official OpenAPI specs (vendored in ``messaging.line.openapi``).

The specs are loaded once per process (``load_specs()``) and pre-processed so that ``discriminator``s are
enforced: LINE models polymorphism as "base schema with a ``discriminator`` + concrete schemas that
``allOf`` the base" (Message → TextMessage, Action → PostbackAction, ...). ``openapi-schema-validator`` only
honours discriminators next to ``oneOf``/``anyOf``/``allOf``, so on its own it would accept
``{"type": "bogus"}`` as a ``Message``. Pre-processing therefore, for every discriminated schema ``S``:

* copies ``S`` without its discriminator to ``S__discriminated_base``;
* makes ``S`` dispatch (custom keyword ``x-line-discriminator``) to the concrete schema selected by the
  discriminator's mapping (unknown or missing value → validation error; in lenient mode an unknown value is
  validated against the base only);
* points the concrete schemas' ``allOf: [$ref S]`` at ``S__discriminated_base`` (no infinite recursion).

Pure Python (no Django). Used by the fake LINE (messaging/line/fakeline/), which checks every request it
gets, and by the broadcast composer, which checks staff's raw Flex JSON before it is saved.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import json
import re
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any
from urllib.parse import unquote, urlsplit

import yaml
from jsonschema import FormatChecker, ValidationError
from jsonschema.validators import extend
from openapi_schema_validator import OAS30WriteValidator
from openapi_schema_validator._format import oas30_format_checker
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4

from messaging.line.openapi import spec_path

HOST_API = "A"  # https://api.line.me (the specs' default server)
HOST_DATA = "D"  # https://api-data.line.me (per-operation ``servers`` override)
HOST_NAMES = {HOST_API: "api.line.me", HOST_DATA: "api-data.line.me"}
DATA_SERVER_URL = "https://api-data.line.me"

#: Specs whose ``paths`` the fake server routes (webhook.yml only has a dummy ``/callback``).
ROUTED_SPECS = ("messaging-api", "insight", "manage-audience")
WEBHOOK_SPEC = "webhook"

BASE_SUFFIX = "__discriminated_base"
DISPATCH_KEYWORD = "x-line-discriminator"
_SCHEMA_PREFIX = "#/components/schemas/"
_URI_PREFIX = "urn:govtech:line-openapi:"


# --------------------------------------------------------------------------------------------------------------
# Errors


@dataclass(frozen=True)
class ErrorDetail:
    """One LINE-style error detail: ``{"message": ..., "property": ...}``."""

    message: str
    property: str = ""

    def as_dict(self) -> dict[str, str]:
        return {"message": self.message, "property": self.property}

    def __str__(self) -> str:
        return f"{self.property}: {self.message}" if self.property else self.message


def format_property_path(parts: Iterable[Any]) -> str:
    """``["messages", 0, "text"]`` → ``"messages[0].text"`` (LINE's notation in error details)."""
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


_REQUIRED_RE = re.compile(r"^'(?P<name>.+)' is a required property$")


def _details_from_errors(errors: Iterable[ValidationError], prefix: Iterable[Any] = ()) -> list[ErrorDetail]:
    details = []
    for error in errors:
        parts = [*prefix, *error.absolute_path]
        message = error.message
        match = _REQUIRED_RE.match(message) if error.validator == "required" else None
        if match:
            parts.append(match.group("name"))
        details.append(ErrorDetail(message=message, property=format_property_path(parts)))
    # Stable, readable order; duplicates (same error reached twice through allOf) removed.
    return sorted(set(details), key=lambda d: (d.property, d.message))


# --------------------------------------------------------------------------------------------------------------
# Schema validators with discriminator support


def _is_absolute_uri(value: object) -> bool:
    if not isinstance(value, str):
        return True
    if not value or any(ch.isspace() for ch in value):
        return False
    return bool(urlsplit(value).scheme)


def _make_format_checker() -> FormatChecker:
    checker = FormatChecker(formats=())
    checker.checkers = dict(oas30_format_checker.checkers)  # int32, int64, uuid, date-time, byte, ...
    # ``uri`` is otherwise unchecked (needs rfc3987). A permissive absolute-URI check still catches the
    # classic bug of sending a relative media URL such as "/media/menu.png".
    checker.checks("uri")(_is_absolute_uri)
    return checker


FORMAT_CHECKER = _make_format_checker()


def _make_dispatch_keyword(*, strict: bool):
    def dispatch(validator, spec, instance, schema):
        if not validator.is_type(instance, "object"):
            return  # the base schema's own ``type: object`` reports this
        prop = spec["propertyName"]
        if prop not in instance:
            yield ValidationError(f"{prop!r} is a required property (discriminator of {spec['name']})", path=[prop])
            return
        value = instance[prop]
        target = spec["mapping"].get(value) if isinstance(value, str) else None
        if target is None:
            if strict:
                known = ", ".join(sorted(spec["mapping"]))
                yield ValidationError(
                    f"{value!r} is not a known {spec['name']} {prop} (expected one of: {known})", path=[prop]
                )
                return
            target = spec["base"]
        yield from validator.descend(instance, {"$ref": target})

    return dispatch


StrictValidator = extend(OAS30WriteValidator, {DISPATCH_KEYWORD: _make_dispatch_keyword(strict=True)})
LenientValidator = extend(OAS30WriteValidator, {DISPATCH_KEYWORD: _make_dispatch_keyword(strict=False)})


#: Rules LINE's API reference (developers.line.biz) documents as "Required"/"Max" but the generated OpenAPI
#: spec leaves out (it marks almost every action field optional). LINE rejects such requests with 400, so
#: the fake does too. Merged into the named ``components/schemas`` (``required`` is extended, ``properties``
#: constraints are added next to the spec's own). Keep this list short and sourced from LINE's docs.
LINE_DOCUMENTED_RULES: dict[str, dict[str, dict[str, Any]]] = {
    "messaging-api": {
        # Action objects
        "PostbackAction": {"required": ["data"]},
        "MessageAction": {"required": ["text"]},
        "URIAction": {"required": ["uri"]},
        "DatetimePickerAction": {"required": ["data", "mode"]},
        "RichMenuSwitchAction": {"required": ["richMenuAliasId", "data"]},
        "CameraAction": {"required": ["label"]},
        "CameraRollAction": {"required": ["label"]},
        "LocationAction": {"required": ["label"]},
        "QuickReplyItem": {"required": ["type", "action"], "properties": {"type": {"enum": ["action"]}}},
        # Message objects
        "TextMessage": {"properties": {"text": {"maxLength": 5000}}},
        "TemplateMessage": {"properties": {"altText": {"maxLength": 1500}}},
        "FlexMessage": {"properties": {"altText": {"maxLength": 1500}}},
        "ImagemapMessage": {"properties": {"altText": {"maxLength": 1500}}},
        # Rich menu object
        "RichMenuRequest": {
            "required": ["size", "selected", "name", "chatBarText", "areas"],
            "properties": {"areas": {"maxItems": 20}},
        },
        "RichMenuSize": {"required": ["width", "height"]},
        "RichMenuArea": {"required": ["bounds", "action"]},
        "RichMenuBounds": {"required": ["x", "y", "width", "height"]},
        "CreateRichMenuAliasRequest": {"properties": {"richMenuAliasId": {"pattern": "^[a-z0-9_-]{1,32}$"}}},
    },
}


def apply_rules(doc: dict[str, Any], rules: Mapping[str, Mapping[str, Any]]) -> None:
    """Merge extra ``required``/``properties`` constraints into ``components/schemas`` (in place)."""
    schemas = doc["components"]["schemas"]
    for name, rule in rules.items():
        schema = schemas[name]
        if "required" in rule:
            schema["required"] = sorted({*schema.get("required", []), *rule["required"]})
        for prop, constraints in rule.get("properties", {}).items():
            schema.setdefault("properties", {}).setdefault(prop, {}).update(constraints)


def prepare_discriminators(doc: dict[str, Any], rules: Mapping[str, Mapping[str, Any]] | None = None) -> dict[str, Any]:
    """Return a deep copy of an OpenAPI document whose discriminated schemas dispatch to concrete schemas
    (after merging ``rules``, see ``LINE_DOCUMENTED_RULES``)."""
    doc = copy.deepcopy(doc)
    if rules:
        apply_rules(doc, rules)
    schemas: dict[str, Any] = doc.get("components", {}).get("schemas", {})
    for name in [n for n, s in schemas.items() if isinstance(s, dict) and "discriminator" in s]:
        original = schemas[name]
        disc = original["discriminator"]
        base_name = name + BASE_SUFFIX
        base_ref = _SCHEMA_PREFIX + base_name
        schemas[base_name] = {k: v for k, v in original.items() if k != "discriminator"}
        mapping: dict[str, str] = {}
        for value, target_ref in disc.get("mapping", {}).items():
            target_name = target_ref.removeprefix(_SCHEMA_PREFIX)
            target = schemas[target_name]
            inherits = False
            for item in target.get("allOf", []):
                if isinstance(item, dict) and item.get("$ref") == _SCHEMA_PREFIX + name:
                    item["$ref"] = base_ref
                    inherits = True
            if not inherits:  # concrete schema that does not restate the base: validate both
                combined = f"{target_name}__with_{name}"
                schemas[combined] = {"allOf": [{"$ref": base_ref}, {"$ref": target_ref}]}
                target_ref = _SCHEMA_PREFIX + combined
            mapping[value] = target_ref
        schemas[name] = {
            "description": original.get("description", ""),
            DISPATCH_KEYWORD: {
                "name": name,
                "propertyName": disc["propertyName"],
                "mapping": mapping,
                "base": base_ref,
            },
        }
    return doc


# --------------------------------------------------------------------------------------------------------------
# Operations and routing


@dataclass(frozen=True)
class Parameter:
    name: str
    location: str  # path | query | header
    required: bool
    schema_ref: str | None


@dataclass(frozen=True)
class Operation:
    spec: str
    operation_id: str
    method: str
    path_template: str
    host: str
    parameters: tuple[Parameter, ...]
    body_required: bool
    body_media: tuple[tuple[str, str | None], ...]  # (media type, schema ref) pairs
    success_status: int
    requires_auth: bool
    regex: re.Pattern[str] = field(repr=False, compare=False)
    literal_segments: int = 0

    @property
    def has_body(self) -> bool:
        return bool(self.body_media)


@dataclass(frozen=True)
class RouteMatch:
    operation: Operation | None
    path_params: dict[str, str]
    allowed_methods: tuple[str, ...] = ()  # non-empty when the path exists but not with this method

    @property
    def found(self) -> bool:
        return self.operation is not None


class LoadedSpec:
    """One pre-processed spec document plus the registry that resolves its ``$ref``s."""

    def __init__(self, name: str, raw: dict[str, Any]):
        self.name = name
        self.uri = _URI_PREFIX + name
        self.doc = prepare_discriminators(raw, LINE_DOCUMENTED_RULES.get(name))
        self.registry = Registry().with_resource(self.uri, Resource.from_contents(self.doc, DRAFT4))
        self._validators: dict[tuple[str, bool], Any] = {}
        self._lock = threading.RLock()

    def schema_ref(self, pointer: str) -> str:
        return self.uri + pointer

    def add_schema(self, name: str, schema: dict[str, Any]) -> str:
        self.doc["components"]["schemas"][name] = schema
        return _SCHEMA_PREFIX + name

    def finalize(self) -> None:
        """Rebuild the registry after synthetic schemas were added."""
        self.registry = Registry().with_resource(self.uri, Resource.from_contents(self.doc, DRAFT4))

    def errors(self, ref: str, instance: Any, *, strict: bool = True, prefix: Iterable[Any] = ()) -> list[ErrorDetail]:
        """Validate ``instance`` against the schema at local ``ref`` (``#/components/schemas/...``)."""
        key = (ref, strict)
        with self._lock:  # jsonschema validators are not documented as thread-safe
            validator = self._validators.get(key)
            if validator is None:
                cls = StrictValidator if strict else LenientValidator
                validator = cls({"$ref": self.uri + ref}, registry=self.registry, format_checker=FORMAT_CHECKER)
                self._validators[key] = validator
            return _details_from_errors(validator.iter_errors(instance), prefix)


def _template_regex(template: str) -> tuple[re.Pattern[str], int]:
    pattern = ""
    literals = 0
    for segment in template.strip("/").split("/"):
        match = re.fullmatch(r"\{([^}]+)\}", segment)
        if match:
            pattern += f"/(?P<{_group_name(match.group(1))}>[^/]+)"
        else:
            pattern += "/" + re.escape(segment)
            literals += 1
    return re.compile(f"^{pattern}$"), literals


def _group_name(param: str) -> str:
    return "p_" + re.sub(r"\W", "_", param)


def _resolve_local(doc: dict[str, Any], obj: Any) -> Any:
    while isinstance(obj, dict) and "$ref" in obj and obj["$ref"].startswith("#/"):
        node: Any = doc
        for part in obj["$ref"][2:].split("/"):
            node = node[part.replace("~1", "/").replace("~0", "~")]
        obj = node
    return obj


def _op_host(path_item: Mapping[str, Any], op: Mapping[str, Any]) -> str:
    servers = op.get("servers") or path_item.get("servers") or []
    urls = {s.get("url", "").rstrip("/") for s in servers}
    return HOST_DATA if DATA_SERVER_URL in urls else HOST_API


_METHODS = ("get", "put", "post", "delete", "patch", "head", "options", "trace")


def _build_operations(spec: LoadedSpec) -> list[Operation]:
    doc = spec.doc
    operations: list[Operation] = []
    default_security = doc.get("security", [])
    for template, path_item in doc.get("paths", {}).items():
        regex, literals = _template_regex(template)
        shared_params = path_item.get("parameters", [])
        for method in _METHODS:
            op = path_item.get(method)
            if not op:
                continue
            op_id = op.get("operationId") or f"{method}_{template}"
            params: dict[tuple[str, str], Parameter] = {}
            for raw in [*shared_params, *op.get("parameters", [])]:
                p = _resolve_local(doc, raw)
                schema_ref = None
                if "schema" in p:
                    schema_ref = spec.add_schema(f"__param_{op_id}_{p['in']}_{p['name']}", p["schema"])
                params[(p["name"], p["in"])] = Parameter(
                    name=p["name"],
                    location=p["in"],
                    required=bool(p.get("required")) or p["in"] == "path",
                    schema_ref=schema_ref,
                )
            body = _resolve_local(doc, op.get("requestBody") or {})
            media: list[tuple[str, str | None]] = []
            for index, (media_type, media_obj) in enumerate((body.get("content") or {}).items()):
                ref = None
                if media_obj and "schema" in media_obj:
                    ref = spec.add_schema(f"__body_{op_id}_{index}", media_obj["schema"])
                media.append((media_type.lower(), ref))
            statuses = sorted(int(s) for s in op.get("responses", {}) if str(s).isdigit() and str(s).startswith("2"))
            security = op.get("security", default_security)
            operations.append(
                Operation(
                    spec=spec.name,
                    operation_id=op_id,
                    method=method.upper(),
                    path_template=template,
                    host=_op_host(path_item, op),
                    parameters=tuple(params.values()),
                    body_required=bool(body.get("required")),
                    body_media=tuple(media),
                    success_status=statuses[0] if statuses else 200,
                    requires_auth=any(bool(req) for req in security),
                    regex=regex,
                    literal_segments=literals,
                )
            )
    return operations


class SpecSet:
    """All vendored specs, pre-processed, plus the operation router."""

    def __init__(self) -> None:
        self.specs: dict[str, LoadedSpec] = {}
        for name in (*ROUTED_SPECS, WEBHOOK_SPEC):
            with spec_path(f"{name}.yml").open("rb") as fh:
                raw = yaml.load(fh, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # noqa: S506 (safe loader)  # nosec B506
            self.specs[name] = LoadedSpec(name, raw)
        self.operations: list[Operation] = []
        for name in ROUTED_SPECS:
            self.operations.extend(_build_operations(self.specs[name]))
        for spec in self.specs.values():
            spec.finalize()
        # Most literal segments first, so /v2/bot/richmenu/list wins over /v2/bot/richmenu/{richMenuId}.
        self.operations.sort(key=lambda op: (-op.literal_segments, op.path_template))
        self.by_id = {(op.spec, op.operation_id): op for op in self.operations}

    def operation(self, operation_id: str, spec: str = "messaging-api") -> Operation:
        return self.by_id[(spec, operation_id)]

    def match(self, method: str, path: str) -> RouteMatch:
        method = method.upper()
        allowed: list[str] = []
        for op in self.operations:
            m = op.regex.match(path)
            if not m:
                continue
            if op.method != method:
                allowed.append(op.method)
                continue
            names = {_group_name(p.name): p.name for p in op.parameters if p.location == "path"}
            params = {names.get(k, k): unquote(v) for k, v in m.groupdict().items()}
            return RouteMatch(op, params)
        return RouteMatch(None, {}, tuple(sorted(set(allowed))))

    # -- request validation ----------------------------------------------------------------------------------

    def parameter_errors(
        self,
        op: Operation,
        path_params: Mapping[str, str],
        query: Mapping[str, list[str]],
        headers: Mapping[str, str],
    ) -> list[ErrorDetail]:
        spec = self.specs[op.spec]
        details: list[ErrorDetail] = []
        for param in op.parameters:
            if param.location == "path":
                raw: list[str] | None = [path_params[param.name]] if param.name in path_params else None
            elif param.location == "query":
                raw = query.get(param.name)
            elif param.location == "header":
                value = headers.get(param.name.lower())
                raw = None if value is None else [value]
            else:  # cookie parameters are not used by LINE
                continue
            if raw is None:
                if param.required:
                    details.append(ErrorDetail(f"{param.location} parameter is required", param.name))
                continue
            if param.schema_ref is None:
                continue
            schema = _resolve_local(spec.doc, {"$ref": param.schema_ref})
            value, problem = _coerce(raw, schema)
            if problem:
                details.append(ErrorDetail(problem, param.name))
                continue
            details.extend(spec.errors(param.schema_ref, value, prefix=[param.name]))
        return details

    def body_errors(self, op: Operation, content_type: str, body: bytes) -> tuple[Any, list[ErrorDetail], int]:
        """Validate a request body. Returns (parsed body, details, HTTP status to answer if details)."""
        if not op.has_body:
            return None, [], 400
        if not body:
            if op.body_required:
                return None, [ErrorDetail("The request body is required")], 400
            return None, [], 400
        media_type = content_type.split(";", 1)[0].strip().lower()
        ref = None
        matched = None
        for candidate, candidate_ref in op.body_media:
            if _media_matches(candidate, media_type):
                matched, ref = candidate, candidate_ref
                break
        if matched is None:
            expected = ", ".join(m for m, _ in op.body_media)
            return None, [ErrorDetail(f"Unsupported Content-Type {media_type or '(none)'!r}; expected {expected}")], 415
        spec = self.specs[op.spec]
        if media_type == "application/json" or media_type.endswith("+json"):
            try:
                parsed = json.loads(body)
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                return None, [ErrorDetail(f"The request body is not valid JSON: {exc}")], 400
            return parsed, (spec.errors(ref, parsed) if ref else []), 400
        if media_type == "multipart/form-data":
            parsed, problems = _parse_multipart(content_type, body)
            if problems:
                return parsed, problems, 400
            if ref:
                schema = _resolve_local(spec.doc, {"$ref": ref})
                instance = _coerce_form(parsed, schema)
                return parsed, spec.errors(ref, instance), 400
            return parsed, [], 400
        return None, [], 400  # binary upload, checked by the server's operation handler

    def response_errors(self, op: Operation, status: int, body: Any) -> list[ErrorDetail]:
        """Check a JSON response of the fake itself against the spec (used by the fake's own tests)."""
        spec = self.specs[op.spec]
        path_item = spec.doc["paths"][op.path_template]
        response = _resolve_local(spec.doc, path_item[op.method.lower()].get("responses", {}).get(str(status)))
        if not response:
            return [ErrorDetail(f"status {status} is not documented for {op.operation_id}")]
        schema = (response.get("content") or {}).get("application/json", {}).get("schema")
        if schema is None:
            return []
        name = f"__response_{op.operation_id}_{status}"
        with spec._lock:
            if name not in spec.doc["components"]["schemas"]:
                spec.add_schema(name, schema)
                spec.finalize()
                spec._validators.clear()
            return spec.errors(_SCHEMA_PREFIX + name, body)

    def schema_errors(self, spec: str, schema_name: str, instance: Any, *, strict: bool = True) -> list[ErrorDetail]:
        return self.specs[spec].errors(_SCHEMA_PREFIX + schema_name, instance, strict=strict)


def _media_matches(pattern: str, media_type: str) -> bool:
    if pattern in ("*/*", media_type):
        return True
    if pattern.endswith("/*"):
        return media_type.startswith(pattern[:-1])
    return False


def _schema_type(schema: Mapping[str, Any]) -> str | None:
    return schema.get("type")


def _coerce_scalar(value: str, schema: Mapping[str, Any]) -> tuple[Any, str | None]:
    kind = _schema_type(schema)
    if kind == "integer":
        if re.fullmatch(r"-?\d+", value):
            return int(value), None
        return value, f"must be an integer, got {value!r}"
    if kind == "number":
        try:
            return float(value), None
        except ValueError:
            return value, f"must be a number, got {value!r}"
    if kind == "boolean":
        if value in ("true", "false"):
            return value == "true", None
        return value, f"must be true or false, got {value!r}"
    return value, None


def _coerce(raw: list[str], schema: Mapping[str, Any]) -> tuple[Any, str | None]:
    if _schema_type(schema) == "array":
        items = schema.get("items", {})
        values = []
        for part in raw:
            for piece in part.split(",") if len(raw) == 1 else [part]:
                value, problem = _coerce_scalar(piece, items)
                if problem:
                    return None, problem
                values.append(value)
        return values, None
    if len(raw) > 1:
        return None, "must be given once"
    return _coerce_scalar(raw[0], schema)


@dataclass
class FormPart:
    name: str
    content_type: str
    filename: str | None
    data: bytes

    @property
    def text(self) -> str:
        return self.data.decode("utf-8", errors="replace")


def _parse_multipart(content_type: str, body: bytes) -> tuple[dict[str, FormPart], list[ErrorDetail]]:
    if "boundary=" not in content_type:
        return {}, [ErrorDetail("multipart/form-data without a boundary")]
    message = BytesParser(policy=HTTP).parsebytes(
        b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + body
    )
    if not message.is_multipart():
        return {}, [ErrorDetail("The multipart body could not be parsed")]
    parts: dict[str, FormPart] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not name:
            continue
        payload = part.get_payload(decode=True) or b""
        parts[str(name)] = FormPart(
            name=str(name),
            content_type=part.get_content_type() if part.get("content-type") else "text/plain",
            filename=part.get_filename(),
            data=payload,
        )
    return parts, []


def _coerce_form(parts: Mapping[str, FormPart], schema: Mapping[str, Any]) -> dict[str, Any]:
    props = schema.get("properties", {})
    out: dict[str, Any] = {}
    for name, part in parts.items():
        prop = props.get(name, {})
        if prop.get("format") == "binary":
            out[name] = part.data
        else:
            value, problem = _coerce_scalar(part.text, prop)
            out[name] = part.text if problem else value
    return out


# --------------------------------------------------------------------------------------------------------------
# Cached loading

_specs: SpecSet | None = None
_specs_lock = threading.Lock()


def load_specs() -> SpecSet:
    """The pre-processed specs, loaded once per process (thread-safe)."""
    global _specs
    if _specs is None:
        with _specs_lock:
            if _specs is None:
                _specs = SpecSet()
    return _specs


def schema_errors(spec: str, schema_name: str, instance: Any, *, strict: bool = True) -> list[str]:
    """Errors of ``instance`` against ``components/schemas/<schema_name>`` of a spec, e.g.
    ``schema_errors("messaging-api", "Message", {"type": "text", "text": "hi"}) == []``."""
    return [str(d) for d in load_specs().schema_errors(spec, schema_name, instance, strict=strict)]


# --------------------------------------------------------------------------------------------------------------
# Webhooks


def validate_webhook_body(payload: Any, *, allow_unknown_types: bool = False) -> list[str]:
    """Errors of a webhook request body against webhook.yml's ``CallbackRequest`` (empty list = valid).

    Discriminators (event ``type``, ``source.type``, ``message.type``, ...) select the concrete schema. An
    event type unknown to the spec is an error unless ``allow_unknown_types`` – then such objects are only
    checked against their base schema (``Event``), which is how a tolerant webhook handler should treat
    event types LINE adds in the future.
    """
    return schema_errors(WEBHOOK_SPEC, "CallbackRequest", payload, strict=not allow_unknown_types)


def sign_webhook(body: bytes, channel_secret: str) -> str:
    """The ``X-Line-Signature`` value LINE sends: base64(HMAC-SHA256(channel secret, raw body))."""
    digest = hmac.new(channel_secret.encode("utf-8"), body, hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")
