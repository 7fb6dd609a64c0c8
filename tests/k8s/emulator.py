#!/usr/bin/env python3
"""A small Kubernetes API emulator for tests, built on kmock 0.8.

    python3 tests/k8s/emulator.py --port 0 [--kubeconfig PATH] [--verbose]

Serves plain HTTP on 127.0.0.1, prints ``listening on http://127.0.0.1:PORT``
once ready, and stops on SIGTERM/SIGINT. Real ``kubectl`` and kube-rs clients
can talk to it.

What comes from kmock: the HTTP server (``kmock.Server``), request parsing and
routing (the DSL: ``self.fallback[...] << handler``), most of API discovery
(``/apis``, ``/apis/G``, Status errors: ``kmock.KubernetesScaffold``), the
resource catalogue (``kmock.ResourcesArray.load_bundled``, filtered) and the
object store with history (``kmock.ObjectsArray``, exposed as ``.objects``).

What this file adds, because kmock's own ``KubernetesEmulator`` is too loose
for real clients: resourceVersion/uid/generation bookkeeping, typed lists,
Kubernetes-style Status errors (NotFound, AlreadyExists, Conflict), PUT and
subresources, the four patch types, watch with resourceVersion replay,
timeouts and selectors, Table output for kubectl, CRDs that become served
resources, finalizers and owner-reference garbage collection, and a stub of
OpenAPI v3 so that kubectl's default validation leaves the checks to the server
(which accepts everything: plain `kubectl apply -f` works).

Bodies are JSON only: kubectl's typed generators (`kubectl create cm/deployment`,
which send protobuf) get a 415; use `kubectl create -f`/`apply -f` instead.
"""

import argparse
import asyncio
import base64
import copy
import datetime
import hashlib
import json
import random
import re
import signal
import string
import sys
import uuid
from typing import Any

import aiohttp.web
import attrs
import jsonpatch
import jsonpointer
import kmock
from kmock._internal import parsing as _kmock_parsing

try:  # Only needed for apply-patch bodies that are real YAML (kubectl and kube-rs send JSON).
    import yaml
except ImportError:  # pragma: no cover
    yaml = None

VERBS = ['create', 'delete', 'deletecollection', 'get', 'list', 'patch', 'update', 'watch']
SERVED_GROUP_VERSIONS = {
    'v1', 'apps/v1', 'batch/v1', 'events.k8s.io/v1', 'apiextensions.k8s.io/v1',
    'coordination.k8s.io/v1', 'rbac.authorization.k8s.io/v1', 'networking.k8s.io/v1', 'policy/v1',
}
# Kinds that exist in the catalogue but are not objects one stores.
NOT_STORED = {'bindings', 'componentstatuses'}
DEFAULT_NAMESPACES = ['default', 'kube-system', 'kube-public', 'kube-node-lease']
MAX_EVENTS = 20000  # watch history kept for resourceVersion replay; older => 410 Expired
INITIAL_EVENTS_END = 'k8s.io/initial-events-end'


# --------------------------------------------------------------------------------------------
# Fix for kmock's path parser: it crashes on /api/v1/namespaces and reads
# /api/v1/namespaces/NAME as "namespace NAME, no resource". The Request parser looks the
# function up at call time, so replacing it fixes every request kmock parses.
# --------------------------------------------------------------------------------------------

def parse_path(path: str) -> _kmock_parsing.ParsedPath:
    parts = [p for p in path.strip('/').split('/') if p]
    if len(parts) >= 2 and parts[0] == 'api':
        group, version, rest = '', parts[1], parts[2:]
    elif len(parts) >= 3 and parts[0] == 'apis':
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        return _kmock_parsing.ParsedPath()
    namespace = None
    if rest[:1] == ['namespaces'] and (len(rest) == 2 or (len(rest) == 3 and rest[2] in ('status', 'finalize'))):
        pass  # the Namespace object itself (or its subresource)
    elif rest[:1] == ['namespaces'] and len(rest) >= 3:
        namespace, rest = rest[1], rest[2:]
    plural = rest[0] if rest else None
    name = rest[1] if len(rest) > 1 else None
    subresource = '/'.join(rest[2:]) or None
    return _kmock_parsing.ParsedPath(group, version, plural, namespace, name, subresource)


_kmock_parsing.parse_path = parse_path


# --------------------------------------------------------------------------------------------
# Small helpers: time, selectors, JSONPath, patches.
# --------------------------------------------------------------------------------------------

def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%dT%H:%M:%SZ')


def human_age(timestamp: str | None) -> str:
    """The AGE column, as Kubernetes' HumanDuration prints it."""
    if not timestamp:
        return '<unknown>'
    try:
        then = datetime.datetime.fromisoformat(timestamp.replace('Z', '+00:00'))
    except ValueError:
        return '<invalid>'
    s = int((datetime.datetime.now(datetime.timezone.utc) - then).total_seconds())
    if s < 0:
        return '0s'
    m, h, d = s // 60, s // 3600, s // 86400
    if s < 120:
        return f'{s}s'
    if m < 10:
        return f'{m}m{s % 60}s' if s % 60 else f'{m}m'
    if m < 180:
        return f'{m}m'
    if h < 8:
        return f'{h}h{m % 60}m' if m % 60 else f'{h}h'
    if h < 48:
        return f'{h}h'
    if h < 24 * 8:
        return f'{d}d{h % 24}h' if h % 24 else f'{d}d'
    if d < 365 * 2:
        return f'{d}d'
    return f'{d // 365}y{d % 365}d' if d < 365 * 8 else f'{d // 365}y'


def _split_top(s: str) -> list[str]:
    """Split on commas outside parentheses: 'a in (x,y),b' -> ['a in (x,y)', 'b']."""
    out, depth, cur = [], 0, ''
    for ch in s:
        depth += ch == '('
        depth -= ch == ')'
        if ch == ',' and depth == 0:
            out.append(cur)
            cur = ''
        else:
            cur += ch
    out.append(cur)
    return [t.strip() for t in out if t.strip()]


def parse_label_selector(s: str | None) -> list[tuple[str, str, set[str]]]:
    terms = []
    for term in _split_top(s or ''):
        if m := re.fullmatch(r'(\S+)\s+(in|notin)\s*\((.*)\)', term):
            terms.append((m[1], m[2], {v.strip() for v in m[3].split(',') if v.strip()}))
        elif m := re.fullmatch(r'(\S+?)\s*(==|!=|=)\s*(\S*)', term):
            terms.append((m[1], '!=' if m[2] == '!=' else '=', {m[3]}))
        elif term.startswith('!'):
            terms.append((term[1:].strip(), '!', set()))
        else:
            terms.append((term, 'exists', set()))
    return terms


def labels_match(terms: list[tuple[str, str, set[str]]], labels: dict[str, str]) -> bool:
    for key, op, values in terms:
        present, value = key in labels, labels.get(key)
        ok = {
            '=': present and value in values,
            'in': present and value in values,
            '!=': not present or value not in values,
            'notin': not present or value not in values,
            'exists': present,
            '!': not present,
        }[op]
        if not ok:
            return False
    return True


def parse_field_selector(s: str | None) -> list[tuple[str, bool, str]]:
    terms = []
    for term in _split_top(s or ''):
        m = re.fullmatch(r'([^=!]+?)\s*(==|!=|=)\s*(.*)', term)
        if m:
            terms.append((m[1].strip(), m[2] != '!=', m[3].strip()))
    return terms


def field_value(obj: Any, path: str) -> str:
    for part in path.split('.'):
        obj = obj.get(part) if isinstance(obj, dict) else None
    if obj is None:
        return ''
    if isinstance(obj, bool):
        return 'true' if obj else 'false'
    return str(obj)


def fields_match(terms: list[tuple[str, bool, str]], obj: dict[str, Any]) -> bool:
    return all((field_value(obj, path) == value) == equal for path, equal, value in terms)


def jsonpath(obj: Any, path: str) -> Any:
    """The simple JSONPath of printer columns: .a.b, .a[0], .a[?(@.type=="Ready")].status."""
    for m in re.finditer(r'\.([^.\[]+)|\[(\d+)\]|\[\?\(@\.([^=!]+)\s*==\s*["\']?([^"\')]*)["\']?\)\]', path):
        if m[1] is not None:
            obj = obj.get(m[1]) if isinstance(obj, dict) else None
        elif m[2] is not None:
            obj = obj[int(m[2])] if isinstance(obj, list) and int(m[2]) < len(obj) else None
        else:
            found = [x for x in obj or [] if isinstance(x, dict) and str(x.get(m[3].strip())) == m[4]]
            obj = found[0] if found else None
        if obj is None:
            return None
    return obj


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def strategic_merge_patch(target: Any, patch: Any) -> Any:
    """A strategic merge patch, simplified: a JSON merge patch that also honours the
    directives kubectl sends ($patch, $setElementOrder, $retainKeys,
    $deleteFromPrimitiveList) and merges lists of dicts by their key ("name", or
    the key named in $setElementOrder) instead of replacing them."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    if patch.get('$patch') == 'replace':
        return {k: v for k, v in patch.items() if k != '$patch'}
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    orders = {k.split('/', 1)[1]: v for k, v in patch.items() if k.startswith('$setElementOrder/')}
    for key, value in patch.items():
        if key.startswith('$deleteFromPrimitiveList/'):
            field = key.split('/', 1)[1]
            result[field] = [x for x in result.get(field) or [] if x not in value]
        elif key.startswith('$'):
            continue
        elif value is None:
            result.pop(key, None)
        elif isinstance(value, dict):
            if value.get('$patch') == 'delete':
                result.pop(key, None)
            else:
                result[key] = strategic_merge_patch(result.get(key), value)
        elif isinstance(value, list) and _mergeable_list(result.get(key), value, orders.get(key)):
            result[key] = _merge_list(result.get(key) or [], value, orders.get(key))
        else:
            result[key] = copy.deepcopy(value)
    if isinstance(patch.get('$retainKeys'), list):
        result = {k: v for k, v in result.items() if k in patch['$retainKeys']}
    return result


def _merge_key(order: list[Any] | None) -> str:
    return next(iter(order[0])) if order and isinstance(order[0], dict) and order[0] else 'name'


def _mergeable_list(current: Any, value: list[Any], order: list[Any] | None) -> bool:
    key = _merge_key(order)
    items = list(value) + list(current or [])
    return bool(order) or (bool(items) and all(isinstance(x, dict) and key in x for x in items))


def _merge_list(current: list[Any], patch: list[Any], order: list[Any] | None) -> list[Any]:
    key = _merge_key(order)
    if order and not isinstance(order[0], dict):  # a primitive list with a merge strategy
        return list(dict.fromkeys(current + patch))
    by_key = {item.get(key): item for item in current if isinstance(item, dict)}
    for item in patch:
        if isinstance(item, dict) and item.get('$patch') == 'delete':
            by_key.pop(item.get(key), None)
        elif isinstance(item, dict):
            by_key[item.get(key)] = strategic_merge_patch(by_key.get(item.get(key)), item)
    ordered = [o.get(key) for o in order or [] if isinstance(o, dict)]
    keys = [k for k in ordered if k in by_key] + [k for k in by_key if k not in ordered]
    return [by_key[k] for k in keys]


def json_patch(target: Any, ops: Any) -> Any:
    """RFC 6902 JSON patch via kmock's own dependency `jsonpatch`. Like the real API server,
    a "test" of null against a missing path passes (kube-rs' finalizer helper relies on it)."""
    if not isinstance(ops, list):
        raise ValueError('a JSON patch must be a list of operations')
    doc = copy.deepcopy(target)
    for op in ops:
        if op.get('op') == 'test' and op.get('value') is None:
            try:
                if jsonpointer.resolve_pointer(doc, op['path']) is None:
                    continue
            except jsonpointer.JsonPointerException:
                continue
        doc = jsonpatch.apply_patch(doc, [op])
    return doc


def apply_patch(live: dict[str, Any], applied: dict[str, Any], previous: dict[str, Any]) -> dict[str, Any]:
    """Server-side apply, simplified: merge the applied config into the live object (lists
    replaced whole), then drop the fields this field manager applied last time but not now."""
    def merge(a: Any, b: Any) -> Any:
        if isinstance(a, dict) and isinstance(b, dict):
            out = dict(a)
            for k, v in b.items():
                out[k] = merge(a.get(k), v)
            return out
        return copy.deepcopy(b)

    def prune(obj: dict[str, Any], before: dict[str, Any], after: dict[str, Any]) -> None:
        for k, v in before.items():
            if k not in after:
                obj.pop(k, None)
            elif isinstance(v, dict) and isinstance(after[k], dict) and isinstance(obj.get(k), dict):
                prune(obj[k], v, after[k])

    result = merge(copy.deepcopy(live), applied)
    prune(result, previous, applied)
    return result


def apply_schema_defaults(schema: dict[str, Any] | None, obj: Any) -> None:
    """Fill `default:` values of a CRD's structural schema, as the API server does."""
    if not schema:
        return
    if isinstance(obj, dict):
        for key, sub in (schema.get('properties') or {}).items():
            if key not in obj and 'default' in sub:
                obj[key] = copy.deepcopy(sub['default'])
            if key in obj:
                apply_schema_defaults(sub, obj[key])
    elif isinstance(obj, list) and isinstance(schema.get('items'), dict):
        for item in obj:
            apply_schema_defaults(schema['items'], item)


def _without(obj: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {k: v for k, v in obj.items() if k not in keys}


# Extra printer columns for some built-in kinds (NAME comes first and AGE last for all).
def _col(name: str, fn: Any, type_: str = 'string', priority: int = 0) -> tuple[dict[str, Any], Any]:
    return {'name': name, 'type': type_, 'format': '', 'description': name, 'priority': priority}, fn


BUILTIN_COLUMNS = {
    'configmaps': [_col('Data', lambda o: len(o.get('data') or {}) + len(o.get('binaryData') or {}), 'integer')],
    'secrets': [_col('Type', lambda o: o.get('type', 'Opaque')),
                _col('Data', lambda o: len(o.get('data') or {}) + len(o.get('stringData') or {}), 'integer')],
    'pods': [_col('Status', lambda o: jsonpath(o, '.status.phase') or 'Pending')],
    'namespaces': [_col('Status', lambda o: jsonpath(o, '.status.phase') or 'Active')],
    'deployments': [
        _col('Ready', lambda o: f"{jsonpath(o, '.status.readyReplicas') or 0}/{jsonpath(o, '.spec.replicas') or 0}"),
        _col('Up-to-date', lambda o: jsonpath(o, '.status.updatedReplicas') or 0, 'integer'),
        _col('Available', lambda o: jsonpath(o, '.status.availableReplicas') or 0, 'integer'),
    ],
    'events': [
        _col('Type', lambda o: o.get('type')),
        _col('Reason', lambda o: o.get('reason')),
        _col('Object', lambda o: '{}/{}'.format(
            (o.get('involvedObject') or o.get('regarding') or {}).get('kind', '').lower(),
            (o.get('involvedObject') or o.get('regarding') or {}).get('name', ''))),
        _col('Message', lambda o: o.get('message') or o.get('note')),
    ],
}


# --------------------------------------------------------------------------------------------
# The emulator.
# --------------------------------------------------------------------------------------------

@attrs.define(kw_only=True)
class Emulator(kmock.KubernetesScaffold):
    """A stateful Kubernetes API on kmock's scaffold (discovery, errors, routing, server)."""

    _objects: kmock.ObjectsArray = attrs.field(factory=kmock.ObjectsArray, init=False)
    _rv: int = attrs.field(default=0, init=False)
    _events: list[tuple[int, kmock.resource, str, dict[str, Any], dict[str, Any] | None]] = \
        attrs.field(factory=list, init=False)
    _changed: asyncio.Event = attrs.field(factory=asyncio.Event, init=False)
    _stopping: asyncio.Event = attrs.field(factory=asyncio.Event, init=False)
    _applied: dict[tuple[Any, ...], dict[str, Any]] = attrs.field(factory=dict, init=False)
    _crds: dict[str, list[kmock.resource]] = attrs.field(factory=dict, init=False)  # CRD name -> served
    _crd_versions: dict[kmock.resource, dict[str, Any]] = attrs.field(factory=dict, init=False)
    _storage: dict[kmock.resource, kmock.resource] = attrs.field(factory=dict, init=False)
    verbose: bool = False

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()  # kmock: discovery endpoints and a 404 fallback
        catalogue = kmock.ResourcesArray()
        catalogue.load_bundled()
        for res, info in catalogue.items():
            gv = f'{res.group}/{res.version}' if res.group else res.version
            if gv in SERVED_GROUP_VERSIONS and res.plural not in NOT_STORED:
                self.resources[res] = info
                if res.group == 'events.k8s.io':  # "ev" means the core events, as in kubectl's eyes
                    info.shortnames = set()
        # Every resource request goes to one handler; discovery stays with kmock's scaffold.
        self.fallback[re.compile(r'/api/v1/.+')] << self._serve
        self.fallback['get /openapi/v3'] << self._serve_openapi_index
        self.fallback['get', re.compile(r'/openapi/v3/.+')] << self._serve_openapi
        self.fallback[re.compile(r'/apis/[^/]+/[^/]+/.+')] << self._serve
        for ns in DEFAULT_NAMESPACES:
            self._create(kmock.resource('', 'v1', 'namespaces'), None, {'metadata': {'name': ns}})

    @property
    def objects(self) -> kmock.ObjectsArray:
        return self._objects

    def stop_watches(self) -> None:
        self._stopping.set()
        self._notify()

    async def __call__(self, raw_request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        # kmock decodes every body as text and fails on binary ones with a 500. We speak JSON only:
        # refuse protobuf/CBOR bodies (kubectl's typed generators, e.g. `kubectl create cm`) clearly.
        if raw_request.content_type.endswith(('protobuf', 'cbor')):
            return aiohttp.web.json_response(status=415, data={
                'kind': 'Status', 'apiVersion': 'v1', 'metadata': {}, 'status': 'Failure', 'code': 415,
                'reason': 'UnsupportedMediaType',
                'message': f'the emulator only reads JSON bodies, not {raw_request.content_type}'})
        return await super().__call__(raw_request)

    # ---- discovery tweaks -------------------------------------------------------------------

    async def _serve_server_version(self, request: kmock.Request) -> Any:
        return {'major': '1', 'minor': '32', 'gitVersion': 'v1.32.0-kmock', 'gitCommit': '',
                'gitTreeState': 'clean', 'buildDate': '2025-01-01T00:00:00Z',
                'goVersion': 'go1.23', 'compiler': 'gc', 'platform': 'linux/amd64'}

    async def _serve_api(self, request: kmock.Request) -> Any:
        host = request.headers.get('Host', '127.0.0.1')
        return {'kind': 'APIVersions', 'versions': ['v1'],
                'serverAddressByClientCIDRs': [{'clientCIDR': '0.0.0.0/0', 'serverAddress': host}]}

    async def _serve_version(self, request: kmock.Request) -> Any:
        # kmock lists subresources with their parent's short names, categories and verbs,
        # which makes kubectl find "ns" ambiguous (namespaces vs. namespaces/status).
        gv = request.resource
        entries = []
        for res in sorted(self._get_resources(), key=lambda r: r.plural or ''):
            if res.group != gv.group or res.version != gv.version:
                continue
            info = self.resources[res]
            entries.append({'name': res.plural, 'singularName': info.singular or '', 'kind': info.kind,
                            'namespaced': bool(info.namespaced), 'verbs': sorted(info.verbs),
                            'shortNames': sorted(info.shortnames), 'categories': sorted(info.categories)})
            for sub in sorted(info.subresources):
                entries.append({'name': f'{res.plural}/{sub}', 'singularName': '',
                                'kind': 'Scale' if sub == 'scale' else info.kind, 'namespaced': bool(info.namespaced),
                                'verbs': ['get'] if sub == 'log' else ['get', 'patch', 'update']})
        if not entries and gv.group != '':
            return self._error(404, 'NotFound', 'the server could not find the requested resource')
        return {'kind': 'APIResourceList', 'apiVersion': 'v1',
                'groupVersion': self._api_version(gv), 'resources': entries}

    # OpenAPI v3, only as much as kubectl needs to see that the server validates fields itself
    # (the fieldValidation parameter of PATCH), so that plain `kubectl apply -f` works without
    # --validate=false. There are no schemas: kubectl then uses its built-in types for patches.
    def _openapi_doc(self, group_version: str) -> dict[str, Any] | None:
        paths = {}
        for res in self._get_resources():
            if self._api_version(res) != group_version or res not in self.resources:
                continue
            info = self.resources[res]
            base = f'/apis/{res.group}/{res.version}' if res.group else f'/api/{res.version}'
            scope = '/namespaces/{namespace}' if info.namespaced else ''
            paths[f'{base}{scope}/{res.plural}/{{name}}'] = {'patch': {
                'x-kubernetes-group-version-kind': {'group': res.group, 'version': res.version, 'kind': info.kind},
                'parameters': [{'name': 'fieldValidation', 'in': 'query', 'schema': {'type': 'string'}}],
                'responses': {'200': {'description': 'OK'}}}}
        if not paths:
            return None
        return {'openapi': '3.0.0', 'info': {'title': 'Kubernetes', 'version': 'v1.32.0'},
                'paths': dict(sorted(paths.items())), 'components': {'schemas': {}}}

    async def _serve_openapi_index(self, request: kmock.Request) -> Any:
        index = {}
        for gv in sorted({self._api_version(res) for res in self._get_resources()}):
            doc = json.dumps(self._openapi_doc(gv), sort_keys=True).encode()
            prefix = 'api' if '/' not in gv else 'apis'
            index[f'{prefix}/{gv}'] = {'serverRelativeURL': f'/openapi/v3/{prefix}/{gv}?hash={hashlib.sha256(doc).hexdigest()[:32]}'}
        return {'paths': index}

    async def _serve_openapi(self, request: kmock.Request) -> Any:
        gv = request.url.path.split('/', 4)[-1] if request.url.path.startswith('/openapi/v3/apis/') else \
            request.url.path.rsplit('/', 1)[-1]
        doc = self._openapi_doc(gv)
        return self._json(200, doc) if doc else self._error(404, 'NotFound', f'no OpenAPI for {gv}')

    # ---- responses ----------------------------------------------------------------------------

    @staticmethod
    def _json(status: int, body: Any) -> kmock.Response:
        # Always set Content-Type: kmock merges a reaction's headers across responses.
        return kmock.Response(status=status, headers={'Content-Type': 'application/json'}, payload=body)

    def _error(self, code: int, reason: str, message: str, **details: Any) -> kmock.Response:
        body = {'kind': 'Status', 'apiVersion': 'v1', 'metadata': {}, 'status': 'Failure',
                'message': message, 'reason': reason, 'code': code}
        if details:
            body['details'] = details
        return self._json(code, body)

    def _not_found(self, res: kmock.resource, name: str) -> kmock.Response:
        what = f'{res.plural}.{res.group}' if res.group else res.plural
        return self._error(404, 'NotFound', f'{what} "{name}" not found',
                           name=name, group=res.group, kind=res.plural)

    # ---- bookkeeping ----------------------------------------------------------------------------

    def _info(self, res: kmock.resource) -> kmock.ResourceInfo | None:
        return self.resources[res] if res in self.resources else None

    def _api_version(self, res: kmock.resource) -> str:
        return f'{res.group}/{res.version}' if res.group else res.version

    def _store_key(self, res: kmock.resource, ns: str | None, name: str) -> tuple[Any, ...]:
        return (self._storage.get(res, res), ns, name)

    def _get(self, res: kmock.resource, ns: str | None, name: str) -> dict[str, Any] | None:
        key = self._store_key(res, ns, name)
        if key not in self._objects or self._objects[key].deleted:
            return None
        return self._as_version(res, copy.deepcopy(self._objects[key].raw))

    def _as_version(self, res: kmock.resource, obj: dict[str, Any]) -> dict[str, Any]:
        if self._storage.get(res, res) != res:  # another served version of a multi-version CRD
            obj['apiVersion'] = self._api_version(res)
        return obj

    def _all(self, res: kmock.resource, ns: str | None) -> list[dict[str, Any]]:
        store = self._storage.get(res, res)
        found = [(k[1] or '', k[2], obj.raw) for k, obj in self._objects.items()
                 if k[0] == store and not obj.deleted and (ns is None or k[1] == ns)]
        return [self._as_version(res, copy.deepcopy(o)) for _, _, o in sorted(found, key=lambda t: t[:2])]

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def _record(self, res: kmock.resource, type_: str, obj: dict[str, Any], old: dict[str, Any] | None) -> None:
        self._events.append((self._rv, self._storage.get(res, res), type_, copy.deepcopy(obj), old))
        del self._events[:-MAX_EVENTS]
        self._notify()

    def _bump(self, obj: dict[str, Any]) -> None:
        self._rv += 1
        obj['metadata']['resourceVersion'] = str(self._rv)

    def _write(self, res: kmock.resource, ns: str | None, obj: dict[str, Any]) -> None:
        key = self._store_key(res, ns, obj['metadata']['name'])
        stored = copy.deepcopy(obj)
        stored['apiVersion'] = self._api_version(key[0])
        if key in self._objects:
            self._objects[key].history.append(stored)  # kmock keeps every version for assertions
        else:
            self._objects[key] = stored

    # ---- create / update / delete --------------------------------------------------------------

    def _create(self, res: kmock.resource, ns: str | None, body: dict[str, Any], dry_run: bool = False) -> kmock.Response:
        info = self._info(res)
        obj = copy.deepcopy(body)
        meta = obj.setdefault('metadata', {})
        if not isinstance(meta, dict):
            return self._error(400, 'BadRequest', 'metadata must be an object')
        if info.namespaced:
            if ns and meta.get('namespace') and meta['namespace'] != ns:
                return self._error(400, 'BadRequest', 'the namespace of the provided object does not match '
                                                      'the namespace sent on the request')
            ns = ns or meta.get('namespace') or 'default'
            meta['namespace'] = ns
            if self._get(kmock.resource('', 'v1', 'namespaces'), None, ns) is None:
                return self._not_found(kmock.resource('', 'v1', 'namespaces'), ns)
        else:
            ns = None
            meta.pop('namespace', None)
        if not meta.get('name'):
            if not meta.get('generateName'):
                return self._error(422, 'Invalid', 'metadata.name or metadata.generateName is required')
            while True:
                meta['name'] = meta['generateName'] + ''.join(random.choices(string.ascii_lowercase + string.digits, k=5))
                if self._get(res, ns, meta['name']) is None:
                    break
        if self._get(res, ns, meta['name']) is not None:
            what = f'{res.plural}.{res.group}' if res.group else res.plural
            return self._error(409, 'AlreadyExists', f'{what} "{meta["name"]}" already exists',
                               name=meta['name'], group=res.group, kind=res.plural)
        obj['apiVersion'] = self._api_version(res)
        obj['kind'] = info.kind
        for key in ('resourceVersion', 'deletionTimestamp', 'deletionGracePeriodSeconds', 'managedFields'):
            meta.pop(key, None)
        meta.update(uid=str(uuid.uuid4()), creationTimestamp=now(), generation=1)
        if 'status' in info.subresources:  # the status is written through /status only
            obj.pop('status', None)
        self._default(res, obj, None)
        if dry_run:
            return self._json(201, obj)
        self._bump(obj)
        self._write(res, ns, obj)
        self._record(res, 'ADDED', obj, None)
        self._after_write(res, obj)
        return self._json(201, obj)

    def _default(self, res: kmock.resource, obj: dict[str, Any], old: dict[str, Any] | None) -> None:
        """What the API server would fill in for some kinds."""
        if res.plural == 'namespaces':
            obj.setdefault('status', {})['phase'] = (old or {}).get('status', {}).get('phase', 'Active')
        if res.plural == 'pods' and not obj.get('status'):
            obj['status'] = {'phase': 'Pending'}
        if res.plural == 'customresourcedefinitions':
            names = obj.get('spec', {}).get('names', {})
            status = copy.deepcopy((old or {}).get('status')) or {}
            if status.get('acceptedNames') != names:
                t = now()
                status = {'acceptedNames': names,
                          'storedVersions': [v['name'] for v in obj.get('spec', {}).get('versions', [])
                                             if v.get('storage')],
                          'conditions': [
                              {'type': 'NamesAccepted', 'status': 'True', 'reason': 'NoConflicts',
                               'message': 'no conflicts found', 'lastTransitionTime': t},
                              {'type': 'Established', 'status': 'True', 'reason': 'InitialNamesAccepted',
                               'message': 'the initial names have been accepted', 'lastTransitionTime': t}]}
            obj['status'] = status
        if res in self._crd_versions:
            apply_schema_defaults((self._crd_versions[res].get('schema') or {}).get('openAPIV3Schema'), obj)

    def _update(self, res: kmock.resource, ns: str | None, old: dict[str, Any], new: Any,
                subresource: str | None, dry_run: bool = False, status_code: int = 200) -> kmock.Response:
        """Commit a new state of an existing object (from PUT, any PATCH, or apply)."""
        info = self._info(res)
        if not isinstance(new, dict) or not isinstance(new.get('metadata', {}), dict):
            return self._error(422, 'Invalid', 'the object must be a JSON object with metadata')
        if subresource == 'status':
            result = copy.deepcopy(old)
            if 'status' in new:
                result['status'] = new['status']
            else:
                result.pop('status', None)
        else:
            result = copy.deepcopy(new)
            if 'status' in info.subresources:
                if 'status' in old:
                    result['status'] = copy.deepcopy(old['status'])
                else:
                    result.pop('status', None)
        meta, old_meta = result.setdefault('metadata', {}), old['metadata']
        for key in ('name', 'namespace', 'uid', 'creationTimestamp', 'generation', 'resourceVersion',
                    'deletionTimestamp', 'deletionGracePeriodSeconds'):
            if key in old_meta:
                meta[key] = old_meta[key]
            else:
                meta.pop(key, None)
        meta.pop('managedFields', None)
        if old_meta.get('deletionTimestamp'):  # no new finalizers on an object being deleted
            meta['finalizers'] = [f for f in meta.get('finalizers') or [] if f in (old_meta.get('finalizers') or [])]
            if not meta['finalizers']:
                del meta['finalizers']
        result['apiVersion'], result['kind'] = self._api_version(res), info.kind
        self._default(res, result, old)
        if result == old:  # a no-op: same resourceVersion, no watch event
            return self._json(status_code, old)
        if _without(result, 'metadata', 'status') != _without(old, 'metadata', 'status'):
            meta['generation'] = old_meta.get('generation', 1) + 1
        if dry_run:
            return self._json(status_code, result)
        self._bump(result)
        if meta.get('deletionTimestamp') and not meta.get('finalizers'):
            self._remove(res, ns, result)
            return self._json(status_code, result)
        self._write(res, ns, result)
        self._record(res, 'MODIFIED', result, old)
        self._after_write(res, result)
        return self._json(status_code, result)

    def _delete(self, res: kmock.resource, ns: str | None, obj: dict[str, Any], orphan: bool = False) -> dict[str, Any]:
        meta = obj['metadata']
        if meta.get('finalizers'):
            if not meta.get('deletionTimestamp'):
                old = copy.deepcopy(obj)
                meta['deletionTimestamp'], meta['deletionGracePeriodSeconds'] = now(), 0
                self._bump(obj)
                self._write(res, ns, obj)
                self._record(res, 'MODIFIED', obj, old)
            return obj
        self._rv += 1
        meta['resourceVersion'] = str(self._rv)
        self._remove(res, ns, obj, orphan)
        return obj

    def _remove(self, res: kmock.resource, ns: str | None, obj: dict[str, Any], orphan: bool = False) -> None:
        self._objects[self._store_key(res, ns, obj['metadata']['name'])].delete()  # kmock soft-delete
        self._record(res, 'DELETED', obj, None)
        uid = obj['metadata'].get('uid')
        if res == kmock.resource('apiextensions.k8s.io', 'v1', 'customresourcedefinitions'):
            for served in self._crds.pop(obj['metadata']['name'], []):
                for item in self._all(served, None):
                    self._delete(served, item['metadata'].get('namespace'), item, orphan=True)
                self._forget(served)
        if res == kmock.resource('', 'v1', 'namespaces'):  # a namespace takes its contents along
            for key, stored in list(self._objects.items()):
                if key[1] == obj['metadata']['name'] and not stored.deleted:
                    self._delete(key[0], key[1], copy.deepcopy(stored.raw))
        elif not orphan:  # garbage collection of dependents (background propagation)
            for key, stored in list(self._objects.items()):
                if stored.deleted:
                    continue
                owners = stored.raw.get('metadata', {}).get('ownerReferences') or []
                if any(o.get('uid') == uid for o in owners):
                    self._delete(key[0], key[1], copy.deepcopy(stored.raw))

    def _after_write(self, res: kmock.resource, obj: dict[str, Any]) -> None:
        if res == kmock.resource('apiextensions.k8s.io', 'v1', 'customresourcedefinitions'):
            self._register_crd(obj)

    # ---- CRDs --------------------------------------------------------------------------------

    def _forget(self, res: kmock.resource) -> None:
        if res in self.resources:
            del self.resources[res]
        self._crd_versions.pop(res, None)
        self._storage.pop(res, None)

    def _register_crd(self, crd: dict[str, Any]) -> None:
        spec, name = crd.get('spec', {}), crd['metadata']['name']
        names = spec.get('names', {})
        for res in self._crds.pop(name, []):
            self._forget(res)
        versions = [v for v in spec.get('versions', []) if v.get('served', True)]
        storage = next((v['name'] for v in spec.get('versions', []) if v.get('storage')), None)
        served = []
        for v in versions:
            res = kmock.resource(spec['group'], v['name'], names['plural'])
            subresources = {s for s in ('status', 'scale') if (v.get('subresources') or {}).get(s) is not None}
            self.resources[res] = kmock.ResourceInfo(
                kind=names['kind'], singular=names.get('singular') or names['kind'].lower(),
                namespaced=spec.get('scope', 'Namespaced') == 'Namespaced', verbs=VERBS,
                shortnames=names.get('shortNames') or [], categories=names.get('categories') or [],
                subresources=subresources)
            self._crd_versions[res] = v
            self._storage[res] = kmock.resource(spec['group'], storage or v['name'], names['plural'])
            served.append(res)
        self._crds[name] = served

    # ---- tables and metadata views ---------------------------------------------------------------

    def _columns(self, res: kmock.resource) -> list[tuple[dict[str, Any], Any]]:
        name_col = _col('Name', lambda o: o['metadata']['name'])
        name_col[0].update(format='name', description='Name must be unique within a namespace.')
        age = _col('Age', lambda o: human_age(o['metadata'].get('creationTimestamp')))
        if res in self._crd_versions:
            extra = self._crd_versions[res].get('additionalPrinterColumns')
            if extra is None:
                return [name_col, age]
            cols = [name_col]
            for c in extra:
                def cell(o: dict[str, Any], c: dict[str, Any] = c) -> Any:
                    value = jsonpath(o, c['jsonPath'])
                    if value is None:
                        return None
                    if c.get('type') == 'date':
                        return human_age(value)
                    if c.get('type') == 'string' and not isinstance(value, str):
                        return json.dumps(value)
                    return value
                cols.append(({'name': c['name'], 'type': c.get('type', 'string'), 'format': c.get('format', ''),
                              'description': c.get('description', ''), 'priority': c.get('priority', 0)}, cell))
            return cols
        return [name_col] + BUILTIN_COLUMNS.get(res.plural, []) + [age]

    def _table(self, res: kmock.resource, objs: list[dict[str, Any]], params: dict[str, str],
               headers: bool = True, meta: dict[str, Any] | None = None) -> dict[str, Any]:
        cols = self._columns(res)
        include = params.get('includeObject', 'Metadata')
        rows = []
        for obj in objs:
            row: dict[str, Any] = {'cells': [fn(obj) for _, fn in cols]}
            if include == 'Object':
                row['object'] = obj
            elif include != 'None':
                row['object'] = self._partial(obj)
            rows.append(row)
        return {'kind': 'Table', 'apiVersion': 'meta.k8s.io/v1',
                'metadata': meta or {'resourceVersion': str(self._rv)},
                'columnDefinitions': [c for c, _ in cols] if headers else [], 'rows': rows}

    @staticmethod
    def _partial(obj: dict[str, Any]) -> dict[str, Any]:
        return {'kind': 'PartialObjectMetadata', 'apiVersion': 'meta.k8s.io/v1', 'metadata': obj['metadata']}

    @staticmethod
    def _wanted_view(request: kmock.Request) -> str:
        """Which representation the Accept header asks for: '', 'Table' or 'PartialObjectMetadata'."""
        for media in request.headers.get('Accept', '').split(','):
            kind, *params = [p.strip() for p in media.split(';')]
            args = dict(p.split('=', 1) for p in params if '=' in p)
            if args.get('as') == 'Table' and args.get('g', 'meta.k8s.io') == 'meta.k8s.io':
                return 'Table'
            if args.get('as', '').startswith('PartialObjectMetadata'):
                return 'PartialObjectMetadata'
            if kind in ('application/json', '*/*', 'application/*') and 'as' not in args:
                return ''
        return ''

    # ---- the request handler --------------------------------------------------------------------

    async def _serve(self, request: kmock.Request) -> Any:
        if self.verbose:
            print(f'{request.method.value} {request.url.path_qs} {request.headers.get("Content-Type", "")}',
                  file=sys.stderr, flush=True)
        res = request.resource
        info = self._info(res) if res is not None else None
        if res is None or info is None or not res.plural:
            return self._error(404, 'NotFound', 'the server could not find the requested resource')
        method, params = request.method.value, request.params
        ns = request.namespace if info.namespaced else None
        name, sub = request.name, request.subresource
        dry_run = params.get('dryRun') == 'All'
        if sub and sub not in info.subresources:
            return self._error(404, 'NotFound', 'the server could not find the requested resource')
        ctype = request.headers.get('Content-Type', '').split(';')[0].strip()
        try:
            body = self._body(request)
        except ValueError as e:
            return self._error(400, 'BadRequest', f'cannot parse the request body: {e}')

        if method == 'GET' and params.get('watch') in ('1', 'true', 'True'):
            return self._watch(request, res, ns, name)
        if name is None:
            if method == 'GET':
                return self._list(request, res, ns)
            if method == 'POST':
                if not isinstance(body, dict):
                    return self._error(400, 'BadRequest', 'the body must be a JSON object')
                return self._create(res, ns, body, dry_run)
            if method == 'DELETE':
                items = self._select(self._all(res, ns), params)
                deleted = [self._delete(res, o['metadata'].get('namespace'), o) for o in items]
                return self._json(200, {'apiVersion': self._api_version(res), 'kind': f'{info.kind}List',
                                        'metadata': {'resourceVersion': str(self._rv)}, 'items': deleted})
            return self._error(405, 'MethodNotAllowed', f'{method} is not supported on a collection')

        if info.namespaced and ns is None:
            return self._error(404, 'NotFound', 'the server could not find the requested resource')
        old = self._get(res, ns, name)
        if sub == 'log':
            if old is None:
                return self._not_found(res, name)
            text = f'emulated log of pod {ns}/{name} container {params.get("container", "")}\n'
            return kmock.Response(status=200, headers={'Content-Type': 'text/plain'}, payload=text.encode())
        if sub == 'scale':
            return self._scale(request, res, ns, name, old, body, dry_run)

        if method == 'GET':
            if old is None:
                return self._not_found(res, name)
            view = self._wanted_view(request)
            if view == 'Table':
                return self._json(200, self._table(res, [old], params))
            return self._json(200, self._partial(old) if view else old)

        if method == 'DELETE':
            if old is None:
                return self._not_found(res, name)
            options = body if isinstance(body, dict) else {}
            pre = options.get('preconditions') or {}
            if pre.get('uid') and pre['uid'] != old['metadata'].get('uid') or \
                    pre.get('resourceVersion') and pre['resourceVersion'] != old['metadata'].get('resourceVersion'):
                return self._error(409, 'Conflict', 'the precondition of the deletion does not hold')
            if dry_run or 'All' in (options.get('dryRun') or []):
                return self._json(200, old)
            policy = options.get('propagationPolicy') or params.get('propagationPolicy')
            orphan = policy == 'Orphan' or options.get('orphanDependents') is True
            return self._json(200, self._delete(res, ns, old, orphan=orphan))

        if method == 'PUT':
            if old is None:
                return self._not_found(res, name)
            if not isinstance(body, dict):
                return self._error(400, 'BadRequest', 'the body must be a JSON object')
            rv = (body.get('metadata') or {}).get('resourceVersion')
            if rv and rv != old['metadata']['resourceVersion']:
                return self._conflict(res, name)
            if (body.get('metadata') or {}).get('name', name) != name:
                return self._error(400, 'BadRequest', 'the name of the object does not match the name on the URL')
            return self._update(res, ns, old, body, sub, dry_run)

        if method == 'PATCH':
            if ctype == 'application/apply-patch+yaml':
                return self._apply(request, res, ns, name, old, body, sub, dry_run)
            if old is None:
                return self._not_found(res, name)
            try:
                if ctype == 'application/json-patch+json':
                    new = json_patch(old, body)
                elif ctype == 'application/merge-patch+json':
                    new = merge_patch(old, body)
                elif ctype == 'application/strategic-merge-patch+json':
                    new = strategic_merge_patch(old, body)
                else:
                    return self._error(415, 'UnsupportedMediaType', f'the patch type {ctype!r} is not supported')
            except (jsonpatch.JsonPatchException, jsonpointer.JsonPointerException, ValueError,
                    TypeError, KeyError, AttributeError) as e:
                return self._error(422, 'Invalid', f'the patch cannot be applied: {e}')
            rv = (new.get('metadata') or {}).get('resourceVersion') if isinstance(new, dict) else None
            if ctype != 'application/json-patch+json' and isinstance(body, dict) and \
                    (body.get('metadata') or {}).get('resourceVersion') and rv != old['metadata']['resourceVersion']:
                return self._conflict(res, name)
            return self._update(res, ns, old, new, sub, dry_run)

        return self._error(405, 'MethodNotAllowed', f'{method} is not supported')

    def _conflict(self, res: kmock.resource, name: str) -> kmock.Response:
        what = f'{res.plural}.{res.group}' if res.group else res.plural
        return self._error(409, 'Conflict', f'Operation cannot be fulfilled on {what} "{name}": the object has been '
                                            'modified; please apply your changes to the latest version and try again',
                           name=name, group=res.group, kind=res.plural)

    @staticmethod
    def _body(request: kmock.Request) -> Any:
        if isinstance(request.data, (dict, list)):
            return request.data
        text = request.body.decode('utf-8', 'replace').strip() if request.body else ''
        if not text:
            return None
        try:
            return json.loads(text)
        except ValueError:
            if yaml is None:
                raise ValueError('the body is not JSON (install PyYAML for YAML bodies)')
            try:
                return yaml.safe_load(text)
            except yaml.YAMLError as e:
                raise ValueError(str(e))

    def _apply(self, request: kmock.Request, res: kmock.resource, ns: str | None, name: str,
               old: dict[str, Any] | None, body: Any, sub: str | None, dry_run: bool) -> kmock.Response:
        if not isinstance(body, dict):
            return self._error(400, 'BadRequest', 'an apply patch must be an object')
        manager = request.params.get('fieldManager')
        if not manager:
            return self._error(422, 'Invalid', 'fieldManager is required for apply requests')
        if (body.get('metadata') or {}).get('name', name) != name:
            return self._error(400, 'BadRequest', 'the name of the object does not match the name on the URL')
        key = (self._storage.get(res, res), ns, name, manager, sub)
        if old is None:
            if sub:
                return self._not_found(res, name)
            created = copy.deepcopy(body)
            created.setdefault('metadata', {})['name'] = name
            response = self._create(res, ns, created, dry_run)
            if response.status == 201 and not dry_run:
                self._applied[key] = copy.deepcopy(body)
            return response
        new = apply_patch(old, body, self._applied.get(key, {}))
        response = self._update(res, ns, old, new, sub, dry_run)
        if response.status == 200 and not dry_run:
            self._applied[key] = copy.deepcopy(body)
        return response

    def _scale(self, request: kmock.Request, res: kmock.resource, ns: str | None, name: str,
               old: dict[str, Any] | None, body: Any, dry_run: bool) -> kmock.Response:
        if old is None:
            return self._not_found(res, name)
        meta = {k: old['metadata'][k] for k in ('name', 'namespace', 'uid', 'resourceVersion', 'creationTimestamp')
                if k in old['metadata']}
        scale = {'apiVersion': 'autoscaling/v1', 'kind': 'Scale', 'metadata': meta,
                 'spec': {'replicas': jsonpath(old, '.spec.replicas') or 0},
                 'status': {'replicas': jsonpath(old, '.status.replicas') or 0}}
        method = request.method.value
        if method == 'GET':
            return self._json(200, scale)
        if method == 'PUT':
            new_scale = body
        elif method == 'PATCH':
            ctype = request.headers.get('Content-Type', '').split(';')[0].strip()
            new_scale = json_patch(scale, body) if ctype == 'application/json-patch+json' else merge_patch(scale, body)
        else:
            return self._error(405, 'MethodNotAllowed', f'{method} is not supported on scale')
        replicas = jsonpath(new_scale, '.spec.replicas')
        response = self._update(res, ns, old, merge_patch(old, {'spec': {'replicas': replicas}}), None, dry_run)
        if response.status != 200:
            return response
        updated = response.payload
        scale['spec']['replicas'] = replicas
        scale['metadata']['resourceVersion'] = updated['metadata']['resourceVersion']
        return self._json(200, scale)

    # ---- list and watch ---------------------------------------------------------------------------

    def _select(self, objs: list[dict[str, Any]], params: dict[str, str]) -> list[dict[str, Any]]:
        labels = parse_label_selector(params.get('labelSelector'))
        fields = parse_field_selector(params.get('fieldSelector'))
        return [o for o in objs if labels_match(labels, o['metadata'].get('labels') or {})
                and fields_match(fields, o)]

    def _list(self, request: kmock.Request, res: kmock.resource, ns: str | None) -> kmock.Response:
        params = request.params
        items = self._select(self._all(res, ns), params)
        meta: dict[str, Any] = {'resourceVersion': str(self._rv)}
        if params.get('continue'):
            try:
                after = json.loads(base64.urlsafe_b64decode(params['continue'].encode()))
            except ValueError:
                return self._error(400, 'BadRequest', 'invalid continue token')
            items = [o for o in items if [o['metadata'].get('namespace') or '', o['metadata']['name']] > after]
        limit = int(params.get('limit') or 0)
        if limit and len(items) > limit:
            last = items[limit - 1]['metadata']
            token = json.dumps([last.get('namespace') or '', last['name']]).encode()
            meta['continue'] = base64.urlsafe_b64encode(token).decode()
            meta['remainingItemCount'] = len(items) - limit
            items = items[:limit]
        view = self._wanted_view(request)
        if view == 'Table':
            return self._json(200, self._table(res, items, params, meta=meta))
        if view:
            return self._json(200, {'apiVersion': 'meta.k8s.io/v1', 'kind': 'PartialObjectMetadataList',
                                    'metadata': meta, 'items': [self._partial(o) for o in items]})
        return self._json(200, {'apiVersion': self._api_version(res), 'kind': f'{self._info(res).kind}List',
                                'metadata': meta, 'items': items})

    def _watch(self, request: kmock.Request, res: kmock.resource, ns: str | None, name: str | None) -> kmock.Response:
        params = request.params
        labels = parse_label_selector(params.get('labelSelector'))
        fields = parse_field_selector(params.get('fieldSelector'))
        if name:
            fields.append(('metadata.name', True, name))
        timeout = float(params['timeoutSeconds']) if params.get('timeoutSeconds') else None
        since = params.get('resourceVersion') or '0'
        initial = params.get('sendInitialEvents') == 'true'
        view = self._wanted_view(request)
        store = self._storage.get(res, res)

        def matches(obj: dict[str, Any] | None) -> bool:
            return obj is not None and (ns is None or obj['metadata'].get('namespace') == ns) and \
                labels_match(labels, obj['metadata'].get('labels') or {}) and fields_match(fields, obj)

        # Snapshot synchronously, so that no change slips between the state and the stream.
        start_rv = self._rv
        snapshot = [o for o in self._all(res, ns) if matches(o)] if since == '0' or initial else []

        first = True

        def encode(type_: str, obj: dict[str, Any]) -> bytes:
            nonlocal first
            obj = self._as_version(res, copy.deepcopy(obj))
            if view == 'Table' and type_ != 'BOOKMARK' and type_ != 'ERROR':
                obj = self._table(res, [obj], params, headers=first)
                first = False
            elif view == 'PartialObjectMetadata' and type_ != 'ERROR':
                obj = self._partial(obj)
            return json.dumps({'type': type_, 'object': obj}).encode() + b'\n'

        async def stream() -> Any:
            yield b''  # send the headers now (kmock starts the response on the first chunk)
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout if timeout is not None else None
            if since != '0' and not initial:
                try:
                    position = int(since)
                except ValueError:
                    position = -1
                oldest = self._events[0][0] if self._events else self._rv + 1
                if position < oldest - 1 and position != start_rv:
                    yield json.dumps({'type': 'ERROR', 'object': {
                        'kind': 'Status', 'apiVersion': 'v1', 'metadata': {}, 'status': 'Failure', 'code': 410,
                        'reason': 'Expired', 'message': f'too old resource version: {since} ({oldest - 1})'}}).encode() + b'\n'
                    return
            else:
                position = start_rv
                for obj in snapshot:
                    yield encode('ADDED', obj)
                if initial:
                    mark = {'kind': self._info(res).kind, 'apiVersion': self._api_version(res),
                            'metadata': {'resourceVersion': str(start_rv),
                                         'annotations': {INITIAL_EVENTS_END: 'true'}}}
                    yield json.dumps({'type': 'BOOKMARK', 'object': mark}).encode() + b'\n'
            transport = request._raw_request.transport if request._raw_request is not None else None
            while not self._stopping.is_set():
                changed = self._changed
                pending = [e for e in self._events if e[0] > position and e[1] == store]
                position = max(position, self._events[-1][0] if self._events else position)
                for rv, _, type_, obj, old in pending:
                    if type_ == 'MODIFIED' and not matches(obj):
                        if matches(old):
                            yield encode('DELETED', obj)
                    elif type_ == 'MODIFIED' and not matches(old):
                        yield encode('ADDED', obj)
                    elif matches(obj):
                        yield encode(type_, obj)
                wait = 2.0 if deadline is None else min(2.0, deadline - loop.time())
                if wait <= 0:
                    return
                try:
                    await asyncio.wait_for(changed.wait(), wait)
                except asyncio.TimeoutError:
                    if transport is None or transport.is_closing():
                        return  # the client went away

        return kmock.Response(status=200, headers={'Content-Type': 'application/json'}, payload=stream())


# --------------------------------------------------------------------------------------------
# The command line.
# --------------------------------------------------------------------------------------------

def kubeconfig(url: str) -> str:
    return json.dumps({
        'apiVersion': 'v1', 'kind': 'Config', 'preferences': {}, 'current-context': 'emulator',
        'clusters': [{'name': 'emulator', 'cluster': {'server': url}}],
        'users': [{'name': 'emulator', 'user': {}}],
        'contexts': [{'name': 'emulator', 'context': {'cluster': 'emulator', 'user': 'emulator',
                                                      'namespace': 'default'}}],
    }, indent=2) + '\n'


async def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--port', type=int, default=0, help='the port on 127.0.0.1; 0 picks a free one')
    parser.add_argument('--kubeconfig', help='write a kubeconfig for this server to this path')
    parser.add_argument('--verbose', action='store_true', help='log every resource request to stderr')
    args = parser.parse_args(argv)

    emulator = Emulator(verbose=args.verbose)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with emulator, kmock.Server(emulator, host='127.0.0.1', port=args.port or None) as server:
        url = f'http://127.0.0.1:{server.port}'
        if args.kubeconfig:
            with open(args.kubeconfig, 'w', encoding='utf-8') as f:
                f.write(kubeconfig(url))
        print(f'listening on {url}', flush=True)
        await stop.wait()
        emulator.stop_watches()
        await asyncio.sleep(0.1)  # let the watch streams end before the server closes


if __name__ == '__main__':
    asyncio.run(main())
