"""Tests of the Kubernetes API emulator (tests/k8s/emulator.py), driven by the real kubectl.

Run with `python3 -m pytest tests/k8s` or `python3 -m unittest discover -s tests/k8s`.
Needs `pip install -r tests/k8s/requirements.txt` and kubectl on PATH (or /usr/bin/kubectl).
"""

import concurrent.futures
import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
EMULATOR = HERE / 'emulator.py'
KUBECTL = shutil.which('kubectl') or '/usr/bin/kubectl'
HAVE_KMOCK = importlib.util.find_spec('kmock') is not None
HAVE_KUBECTL = os.access(KUBECTL, os.X_OK)


def start_emulator(tmp: Path) -> tuple[subprocess.Popen, str, Path]:
    """Start the emulator on a free port; return the process, its URL and its kubeconfig."""
    kubeconfig = tmp / 'kubeconfig'
    stderr = open(tmp / 'emulator.stderr', 'wb')
    proc = subprocess.Popen([sys.executable, str(EMULATOR), '--port', '0', '--kubeconfig', str(kubeconfig)],
                            stdout=subprocess.PIPE, stderr=stderr, text=True)
    stderr.close()
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        try:
            line = pool.submit(proc.stdout.readline).result(timeout=30)
        except concurrent.futures.TimeoutError:
            proc.kill()
            raise RuntimeError('the emulator did not start in 30 s')
    if not line.startswith('listening on http://127.0.0.1:'):
        proc.kill()
        raise RuntimeError(f'unexpected first line {line!r}: {(tmp / "emulator.stderr").read_text()}')
    return proc, line.split()[-1], kubeconfig


def setUpModule() -> None:
    # Missing tools fail the run instead of skipping it silently.
    if not HAVE_KMOCK:
        raise RuntimeError('kmock is not installed: run scripts/test-deps (pip install -r tests/k8s/requirements.txt)')
    if not HAVE_KUBECTL:
        raise RuntimeError(f'kubectl is not installed ({KUBECTL}): run scripts/test-deps')


def stop_emulator(proc: subprocess.Popen) -> int:
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout and not proc.stdout.closed:
            proc.stdout.close()


class EmulatorTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls) -> None:
        cls.tmp = Path(tempfile.mkdtemp(prefix='k8s-emulator-'))
        cls.proc, cls.url, cls.kubeconfig = start_emulator(cls.tmp)
        cls.counter = 0

    @classmethod
    def tearDownClass(cls) -> None:
        rc = stop_emulator(cls.proc)
        shutil.rmtree(cls.tmp, ignore_errors=True)
        assert rc == 0, f'the emulator exited with {rc}'

    # ---- helpers ----------------------------------------------------------------------------------

    def unique(self, prefix: str) -> str:
        type(self).counter += 1
        return f'{prefix}-{type(self).counter}'

    def kubectl(self, *args: str, check: bool = True, input: str | None = None) -> subprocess.CompletedProcess:
        cmd = [KUBECTL, '--kubeconfig', str(self.kubeconfig), '--cache-dir', str(self.tmp / 'cache'), *args]
        result = subprocess.run(cmd, capture_output=True, text=True, input=input, timeout=60)
        if check and result.returncode != 0:
            self.fail(f'{" ".join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}')
        return result

    def api(self, method: str, path: str, body=None, ctype: str = 'application/json',
            accept: str | None = None) -> tuple[int, dict]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.url + path, method=method, data=data)
        if data is not None:
            request.add_header('Content-Type', ctype)
        if accept:
            request.add_header('Accept', accept)
        try:
            with urllib.request.urlopen(request, timeout=20) as response:
                return response.status, json.loads(response.read() or b'null')
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b'null')

    def watch(self, path: str, limit: float = 20) -> tuple[list[dict], float]:
        """Read a whole watch stream (the path sets timeoutSeconds); return events and seconds taken."""
        started = time.monotonic()
        with urllib.request.urlopen(self.url + path, timeout=limit) as response:
            self.assertEqual(response.headers.get_content_type(), 'application/json')
            events = [json.loads(line) for line in response if line.strip()]
        return events, time.monotonic() - started

    def watch_in_background(self, path: str) -> concurrent.futures.Future:
        pool = concurrent.futures.ThreadPoolExecutor(1)
        future = pool.submit(self.watch, path)
        pool.shutdown(wait=False)
        time.sleep(0.5)  # let the watch start
        return future

    def configmap(self, name: str, labels: dict | None = None, **extra) -> dict:
        body = {'apiVersion': 'v1', 'kind': 'ConfigMap', 'metadata': {'name': name, 'labels': labels or {}},
                'data': {'k': 'v'}, **extra}
        status, obj = self.api('POST', '/api/v1/namespaces/default/configmaps', body)
        self.assertEqual(status, 201, obj)
        return obj

    def apply_crd(self) -> None:
        self.kubectl('apply', '--validate=false', '-f', str(ROOT / 'crds' / 'connector.yaml'))

    # ---- discovery ----------------------------------------------------------------------------------

    def test_discovery_and_version(self) -> None:
        out = self.kubectl('api-resources').stdout
        for line in ['configmaps', 'secrets', 'pods', 'namespaces', 'deployments', 'customresourcedefinitions']:
            self.assertIn(line, out)
        self.assertRegex(out, r'events\s+ev\s+v1\s+true\s+Event')
        self.assertRegex(out, r'events\s+events.k8s.io/v1\s+true\s+Event')
        self.assertIn('Server Version', self.kubectl('version').stdout)
        status, apps = self.api('GET', '/apis/apps/v1')
        names = {r['name'] for r in apps['resources']}
        self.assertIn('deployments/status', names)
        deployments = next(r for r in apps['resources'] if r['name'] == 'deployments')
        self.assertEqual((deployments['kind'], deployments['namespaced'], deployments['shortNames']),
                         ('Deployment', True, ['deploy']))
        self.assertIn('watch', deployments['verbs'])

    # ---- the Connector CRD and kubectl ----------------------------------------------------------------

    def test_connector_crd_with_kubectl(self) -> None:
        # Plain `kubectl apply` (validation on): the emulator's OpenAPI v3 stub tells kubectl that
        # the server validates fields itself, so kubectl needs no schema.
        self.kubectl('apply', '-f', str(ROOT / 'crds' / 'connector.yaml'))
        self.kubectl('wait', '--for=condition=Established', 'crd/connectors.runnel.dev', '--timeout=10s')
        out = self.kubectl('apply', '-f', str(ROOT / 'examples' / 'kubernetes' / 'connector.yaml'))
        self.assertIn('connector.runnel.dev/cat-facts', out.stdout)
        try:
            lines = self.kubectl('get', 'conn').stdout.splitlines()
            self.assertEqual(lines[0].split(), ['NAME', 'TYPE', 'TOPIC', 'STATUS', 'AGE'])
            self.assertEqual(lines[1].split()[:3], ['cat-facts', 'http-source', 'cat-facts'])

            # The same apply again changes nothing.
            rv = self.kubectl('get', 'conn', 'cat-facts', '-o', 'jsonpath={.metadata.resourceVersion}').stdout
            out = self.kubectl('apply', '--validate=false', '-f', str(ROOT / 'examples' / 'kubernetes' / 'connector.yaml'))
            self.assertIn('unchanged', out.stdout)
            self.assertEqual(rv, self.kubectl('get', 'conn', 'cat-facts', '-o', 'jsonpath={.metadata.resourceVersion}').stdout)

            # Status through the subresource: shown in STATUS, generation unchanged.
            self.kubectl('patch', 'conn', 'cat-facts', '--subresource=status', '--type', 'merge',
                         '-p', '{"status":{"phase":"Running"}}')
            self.assertEqual(self.kubectl('get', 'conn').stdout.splitlines()[1].split()[:4],
                             ['cat-facts', 'http-source', 'cat-facts', 'Running'])
            got = self.kubectl('get', 'conn', 'cat-facts', '-o',
                               'jsonpath={.metadata.generation} {.spec.state} {.spec.createTopic}').stdout
            self.assertEqual(got, '1 running true')  # schema defaults filled in, as the API server does

            # A spec change bumps the generation and keeps the status.
            self.kubectl('patch', 'conn', 'cat-facts', '--type', 'merge', '-p', '{"spec":{"topic":"facts-2"}}')
            got = self.kubectl('get', 'conn', 'cat-facts', '-o',
                               'jsonpath={.metadata.generation} {.spec.topic} {.status.phase}').stdout
            self.assertEqual(got, '2 facts-2 Running')

            # The raw API: typed list with a numeric resourceVersion.
            status, conns = self.api('GET', '/apis/runnel.dev/v1alpha1/namespaces/default/connectors')
            self.assertEqual((status, conns['kind'], conns['apiVersion']), (200, 'ConnectorList', 'runnel.dev/v1alpha1'))
            self.assertTrue(conns['metadata']['resourceVersion'].isdigit())
            self.assertEqual([c['metadata']['name'] for c in conns['items']], ['cat-facts'])

            # Table output as kubectl asks for it.
            status, table = self.api('GET', '/apis/runnel.dev/v1alpha1/namespaces/default/connectors',
                                     accept='application/json;as=Table;v=v1;g=meta.k8s.io,application/json')
            self.assertEqual(table['kind'], 'Table')
            self.assertEqual([c['name'] for c in table['columnDefinitions']], ['Name', 'Type', 'Topic', 'Status', 'Age'])
        finally:
            out = self.kubectl('delete', 'conn', 'cat-facts')
        self.assertIn('deleted', out.stdout)
        result = self.kubectl('get', 'conn', 'cat-facts', check=False)
        self.assertNotEqual(result.returncode, 0)
        self.assertIn('NotFound', result.stderr)

    def test_server_side_apply_creates_and_updates(self) -> None:
        self.apply_crd()
        name = self.unique('ssa')
        manifest = {'apiVersion': 'runnel.dev/v1alpha1', 'kind': 'Connector', 'metadata': {'name': name},
                    'spec': {'type': 'test-source', 'topic': 't1', 'config': {'a': 1, 'b': 2}}}
        out = self.kubectl('apply', '--server-side', '--validate=false', '-f', '-', input=json.dumps(manifest))
        self.assertIn('serverside-applied', out.stdout)
        del manifest['spec']['config']['b']
        manifest['spec']['topic'] = 't2'
        self.kubectl('apply', '--server-side', '--validate=false', '-f', '-', input=json.dumps(manifest))
        obj = json.loads(self.kubectl('get', 'conn', name, '-o', 'json').stdout)
        self.assertEqual(obj['spec']['config'], {'a': 1})  # a field the manager no longer applies is gone
        self.assertEqual((obj['spec']['topic'], obj['metadata']['generation']), ('t2', 2))

        # The raw API: apply of a missing object creates it (201), with force and a field manager.
        path = f'/apis/runnel.dev/v1alpha1/namespaces/default/connectors/{name}-raw?fieldManager=tests&force=true'
        body = dict(manifest, metadata={'name': f'{name}-raw'})
        status, created = self.api('PATCH', path, body, ctype='application/apply-patch+yaml')
        self.assertEqual(status, 201, created)
        status, same = self.api('PATCH', path, body, ctype='application/apply-patch+yaml')
        self.assertEqual((status, same['metadata']['resourceVersion']), (200, created['metadata']['resourceVersion']))
        # Status apply through the subresource.
        status, applied = self.api('PATCH', path.replace('-raw?', '-raw/status?'),
                                   {'apiVersion': 'runnel.dev/v1alpha1', 'kind': 'Connector',
                                    'metadata': {'name': f'{name}-raw'}, 'status': {'phase': 'Pending'}},
                                   ctype='application/apply-patch+yaml')
        self.assertEqual((status, applied['status'], applied['metadata']['generation']), (200, {'phase': 'Pending', 'readyReplicas': 0}, 1))  # with the schema's default

    # ---- create, errors ---------------------------------------------------------------------------

    def test_create_fills_metadata(self) -> None:
        status, obj = self.api('POST', '/api/v1/namespaces/default/configmaps',
                               {'metadata': {'generateName': 'gen-'}, 'data': {'x': 'y'}})
        self.assertEqual(status, 201, obj)
        meta = obj['metadata']
        self.assertTrue(meta['name'].startswith('gen-') and len(meta['name']) > 4)
        self.assertEqual((meta['namespace'], meta['generation'], obj['kind'], obj['apiVersion']),
                         ('default', 1, 'ConfigMap', 'v1'))
        self.assertTrue(meta['uid'] and meta['creationTimestamp'].endswith('Z'))
        self.assertTrue(meta['resourceVersion'].isdigit())
        status, listed = self.api('GET', '/api/v1/namespaces/default/configmaps')
        self.assertEqual((listed['kind'], listed['apiVersion']), ('ConfigMapList', 'v1'))
        self.assertTrue(listed['metadata']['resourceVersion'].isdigit())
        self.assertGreaterEqual(int(listed['metadata']['resourceVersion']), int(meta['resourceVersion']))

    def test_already_exists_409(self) -> None:
        name = self.unique('dup')
        self.configmap(name)
        status, error = self.api('POST', '/api/v1/namespaces/default/configmaps', {'metadata': {'name': name}})
        self.assertEqual((status, error['kind'], error['reason']), (409, 'Status', 'AlreadyExists'))
        manifest = json.dumps({'apiVersion': 'v1', 'kind': 'ConfigMap', 'metadata': {'name': name}})
        result = self.kubectl('create', '--validate=false', '-f', '-', input=manifest, check=False)
        self.assertNotEqual(result.returncode, 0)
        self.assertIn('AlreadyExists', result.stderr)

    def test_not_found_404(self) -> None:
        for method in ('GET', 'DELETE'):
            status, error = self.api(method, '/api/v1/namespaces/default/configmaps/no-such-thing')
            self.assertEqual((status, error['kind'], error['reason'], error['code']), (404, 'Status', 'NotFound', 404))
            self.assertEqual(error['details']['name'], 'no-such-thing')
        result = self.kubectl('get', 'cm', 'no-such-thing', check=False)
        self.assertIn('(NotFound)', result.stderr)
        status, error = self.api('GET', '/apis/apps/v1/namespaces/default/deployments/nope')
        self.assertEqual((status, error['reason']), (404, 'NotFound'))

    def test_namespace_must_exist(self) -> None:
        status, error = self.api('POST', '/api/v1/namespaces/nowhere/configmaps', {'metadata': {'name': 'x'}})
        self.assertEqual((status, error['reason']), (404, 'NotFound'))
        ns = self.unique('ns')
        self.kubectl('create', '--validate=false', '-f', '-',
                     input=json.dumps({'apiVersion': 'v1', 'kind': 'Namespace', 'metadata': {'name': ns}}))
        status, _ = self.api('POST', f'/api/v1/namespaces/{ns}/configmaps', {'metadata': {'name': 'x'}})
        self.assertEqual(status, 201)
        self.kubectl('delete', 'ns', ns)  # takes its contents along
        status, _ = self.api('GET', f'/api/v1/namespaces/{ns}/configmaps/x')
        self.assertEqual(status, 404)

    # ---- patches and updates ------------------------------------------------------------------------

    def test_patch_types_and_generation(self) -> None:
        name = self.unique('web')
        deploy = {'apiVersion': 'apps/v1', 'kind': 'Deployment', 'metadata': {'name': name, 'labels': {'app': name}},
                  'spec': {'replicas': 1, 'selector': {'matchLabels': {'app': name}},
                           'template': {'metadata': {'labels': {'app': name}},
                                        'spec': {'containers': [{'name': 'app', 'image': 'a:1', 'ports': [{'containerPort': 80}]},
                                                                {'name': 'side', 'image': 'b:1'}]}}}}
        self.kubectl('apply', '--validate=false', '-f', '-', input=json.dumps(deploy))
        path = f'/apis/apps/v1/namespaces/default/deployments/{name}'
        _, obj = self.api('GET', path)
        rv, gen = int(obj['metadata']['resourceVersion']), obj['metadata']['generation']
        self.assertEqual(gen, 1)

        # Metadata-only change: resourceVersion moves, generation stays.
        status, obj = self.api('PATCH', path, {'metadata': {'labels': {'extra': 'yes'}}},
                               ctype='application/merge-patch+json')
        self.assertEqual((status, obj['metadata']['generation']), (200, 1))
        self.assertGreater(int(obj['metadata']['resourceVersion']), rv)
        rv = int(obj['metadata']['resourceVersion'])

        # A no-op patch keeps the resourceVersion.
        status, obj = self.api('PATCH', path, {'metadata': {'labels': {'extra': 'yes'}}},
                               ctype='application/merge-patch+json')
        self.assertEqual(int(obj['metadata']['resourceVersion']), rv)

        # JSON patch on the spec: generation goes up.
        status, obj = self.api('PATCH', path, [{'op': 'replace', 'path': '/spec/replicas', 'value': 3}],
                               ctype='application/json-patch+json')
        self.assertEqual((status, obj['spec']['replicas'], obj['metadata']['generation']), (200, 3, 2))

        # Strategic merge patch merges containers by name (kubectl set image).
        self.kubectl('set', 'image', f'deploy/{name}', 'app=a:2')
        _, obj = self.api('GET', path)
        containers = obj['spec']['template']['spec']['containers']
        self.assertEqual(containers, [{'name': 'app', 'image': 'a:2', 'ports': [{'containerPort': 80}]},
                                      {'name': 'side', 'image': 'b:1'}])
        self.assertEqual(obj['metadata']['generation'], 3)

        # kubectl patch --type merge, scale, plain get.
        self.kubectl('patch', 'deploy', name, '--type', 'merge', '-p', '{"spec":{"paused":true}}')
        self.kubectl('scale', 'deploy', name, '--replicas=5')
        _, obj = self.api('GET', path)
        self.assertEqual((obj['spec']['paused'], obj['spec']['replicas'], obj['metadata']['generation']), (True, 5, 5))
        out = self.kubectl('get', 'deploy').stdout
        self.assertRegex(out, r'NAME\s+READY\s+UP-TO-DATE\s+AVAILABLE\s+AGE')
        self.assertIn(name, out)

        # Client-side apply with a changed image goes through a strategic merge patch.
        deploy['spec']['template']['spec']['containers'][1]['image'] = 'b:2'
        self.assertIn('configured', self.kubectl('apply', '--validate=false', '-f', '-', input=json.dumps(deploy)).stdout)
        _, obj = self.api('GET', path)
        self.assertEqual([c['image'] for c in obj['spec']['template']['spec']['containers']], ['a:1', 'b:2'])

        # A bad JSON patch is a 422.
        status, error = self.api('PATCH', path, [{'op': 'remove', 'path': '/spec/nothing'}],
                                 ctype='application/json-patch+json')
        self.assertEqual((status, error['reason']), (422, 'Invalid'))

    def test_put_and_status_subresource(self) -> None:
        name = self.unique('put')
        self.kubectl('apply', '--validate=false', '-f', '-', input=json.dumps(
            {'apiVersion': 'apps/v1', 'kind': 'Deployment', 'metadata': {'name': name},
             'spec': {'replicas': 1, 'selector': {'matchLabels': {'a': 'b'}},
                      'template': {'metadata': {'labels': {'a': 'b'}}, 'spec': {'containers': [{'name': 'c', 'image': 'i'}]}}}}))
        path = f'/apis/apps/v1/namespaces/default/deployments/{name}'
        _, obj = self.api('GET', path)

        # PUT on /status changes only the status; the generation stays.
        changed = json.loads(json.dumps(obj))
        changed['status'] = {'readyReplicas': 1, 'replicas': 1}
        changed['spec']['replicas'] = 9  # ignored on /status
        status, after = self.api('PUT', path + '/status', changed)
        self.assertEqual((status, after['status'], after['spec']['replicas'], after['metadata']['generation']),
                         (200, {'readyReplicas': 1, 'replicas': 1}, 1, 1))
        self.assertIn('1/1', self.kubectl('get', 'deploy', name).stdout)

        # PUT of the whole object ignores the status and bumps the generation on a spec change.
        after['spec']['replicas'] = 2
        after['status'] = {}
        status, replaced = self.api('PUT', path, after)
        self.assertEqual((status, replaced['spec']['replicas'], replaced['metadata']['generation']), (200, 2, 2))
        self.assertEqual(replaced['status'], {'readyReplicas': 1, 'replicas': 1})

        # A stale resourceVersion is a 409 Conflict.
        status, error = self.api('PUT', path, after)
        self.assertEqual((status, error['reason']), (409, 'Conflict'))

        # Merge patch of the status through the subresource.
        status, patched = self.api('PATCH', path + '/status', {'status': {'availableReplicas': 1}},
                                   ctype='application/merge-patch+json')
        self.assertEqual((patched['status']['availableReplicas'], patched['metadata']['generation']), (1, 2))

    # ---- get -o yaml, delete, garbage collection, finalizers, logs -------------------------------------

    def test_get_yaml_and_jsonpath(self) -> None:
        name = self.unique('yaml')
        self.configmap(name, labels={'app': 'yaml'})
        out = self.kubectl('get', 'cm', name, '-o', 'yaml').stdout
        self.assertIn(f'name: {name}', out)
        self.assertIn('kind: ConfigMap', out)
        self.assertEqual(self.kubectl('get', 'cm', '-l', 'app=yaml', '-o', 'jsonpath={.items[*].metadata.name}').stdout, name)

    def test_owner_references_are_garbage_collected(self) -> None:
        parent = self.configmap(self.unique('parent'))
        owner = {'apiVersion': 'v1', 'kind': 'ConfigMap', 'name': parent['metadata']['name'],
                 'uid': parent['metadata']['uid']}
        status, child = self.api('POST', '/api/v1/namespaces/default/configmaps',
                                 {'metadata': {'name': self.unique('child'), 'ownerReferences': [owner]}})
        self.assertEqual(status, 201)
        status, deleted = self.api('DELETE', f'/api/v1/namespaces/default/configmaps/{parent["metadata"]["name"]}')
        self.assertEqual((status, deleted['metadata']['name']), (200, parent['metadata']['name']))
        status, _ = self.api('GET', f'/api/v1/namespaces/default/configmaps/{child["metadata"]["name"]}')
        self.assertEqual(status, 404)

    def test_finalizers_hold_deletion(self) -> None:
        name = self.unique('fin')
        self.configmap(name, metadata={'name': name, 'finalizers': ['tests/hold']})
        path = f'/api/v1/namespaces/default/configmaps/{name}'
        status, obj = self.api('DELETE', path)
        self.assertEqual(status, 200)
        self.assertIn('deletionTimestamp', obj['metadata'])
        status, obj = self.api('GET', path)
        self.assertEqual(status, 200)
        # kube-rs' finalizer helper removes its finalizer with a JSON patch guarded by a test.
        status, _ = self.api('PATCH', path, [{'op': 'test', 'path': '/metadata/finalizers', 'value': ['tests/hold']},
                                             {'op': 'remove', 'path': '/metadata/finalizers/0'}],
                             ctype='application/json-patch+json')
        self.assertEqual(status, 200)
        status, _ = self.api('GET', path)
        self.assertEqual(status, 404)

    def test_pod_log(self) -> None:
        name = self.unique('pod')
        self.kubectl('apply', '--validate=false', '-f', '-', input=json.dumps(
            {'apiVersion': 'v1', 'kind': 'Pod', 'metadata': {'name': name},
             'spec': {'containers': [{'name': 'c', 'image': 'i'}]}}))
        self.assertIn(name, self.kubectl('logs', name).stdout)
        self.assertRegex(self.kubectl('get', 'pods').stdout, rf'{name}\s+Pending')

    def test_events_both_groups(self) -> None:
        name = self.unique('ev')
        status, _ = self.api('POST', '/apis/events.k8s.io/v1/namespaces/default/events', {
            'metadata': {'name': name}, 'eventTime': '2025-01-01T00:00:00.000000Z', 'reason': 'Tested',
            'note': 'hello', 'type': 'Normal', 'action': 'Test', 'reportingController': 'tests',
            'reportingInstance': 'tests', 'regarding': {'kind': 'Connector', 'name': 'x'}})
        self.assertEqual(status, 201)
        status, _ = self.api('POST', '/api/v1/namespaces/default/events', {
            'metadata': {'name': name}, 'reason': 'Tested', 'message': 'hello', 'type': 'Normal',
            'involvedObject': {'kind': 'Connector', 'name': 'x'}})
        self.assertEqual(status, 201)
        self.assertRegex(self.kubectl('get', 'events').stdout, rf'{name}\s+Normal\s+Tested\s+connector/x\s+hello')

    # ---- list and watch ------------------------------------------------------------------------------

    def test_label_and_field_selectors(self) -> None:
        group = self.unique('sel')
        self.configmap(f'{group}-a', labels={'group': group, 'tier': 'front'})
        self.configmap(f'{group}-b', labels={'group': group, 'tier': 'back'})
        self.configmap(f'{group}-c', labels={'group': group})

        def names(selector: str) -> list[str]:
            out = self.kubectl('get', 'cm', '-l', f'group={group},{selector}',
                               '-o', 'jsonpath={.items[*].metadata.name}').stdout
            return [n.rsplit('-', 1)[1] for n in out.split()]

        self.assertEqual(names('tier=front'), ['a'])
        self.assertEqual(names('tier!=front'), ['b', 'c'])
        self.assertEqual(names('tier in (front,back)'), ['a', 'b'])
        self.assertEqual(names('tier notin (front)'), ['b', 'c'])
        self.assertEqual(names('tier'), ['a', 'b'])
        self.assertEqual(names('!tier'), ['c'])
        out = self.kubectl('get', 'cm', '--field-selector', f'metadata.name={group}-b',
                           '-o', 'jsonpath={.items[*].metadata.name}').stdout
        self.assertEqual(out, f'{group}-b')
        status, listed = self.api('GET', '/api/v1/configmaps?fieldSelector=' +
                                  urllib.parse.quote(f'metadata.namespace=default,metadata.name!={group}-b') +
                                  '&labelSelector=' + urllib.parse.quote(f'group={group}'))
        self.assertEqual([i['metadata']['name'] for i in listed['items']], [f'{group}-a', f'{group}-c'])

        # The same selectors on a watch.
        selector = urllib.parse.quote(f'group={group},tier in (front,back)')
        events, _ = self.watch(f'/api/v1/namespaces/default/configmaps?watch=1&timeoutSeconds=1&labelSelector={selector}')
        self.assertEqual(sorted(e['object']['metadata']['name'] for e in events), [f'{group}-a', f'{group}-b'])
        self.assertEqual({e['type'] for e in events}, {'ADDED'})

    def test_pagination(self) -> None:
        group = self.unique('page')
        for i in range(5):
            self.configmap(f'{group}-{i}', labels={'page': group})
        seen, token = [], ''
        while True:
            status, page = self.api('GET', f'/api/v1/namespaces/default/configmaps?labelSelector=page%3D{group}&limit=2'
                                           + (f'&continue={token}' if token else ''))
            seen += [i['metadata']['name'] for i in page['items']]
            token = page['metadata'].get('continue')
            if not token:
                break
        self.assertEqual(seen, [f'{group}-{i}' for i in range(5)])

    def test_watch_timeout_ends_on_time(self) -> None:
        events, took = self.watch('/api/v1/namespaces/default/configmaps?watch=1&timeoutSeconds=2&resourceVersion=999999999')
        self.assertEqual(events, [])
        self.assertGreaterEqual(took, 1.9)
        self.assertLess(took, 4.5)
        started = time.monotonic()
        result = self.kubectl('get', '--raw', '/api/v1/namespaces/default/configmaps?watch=true&timeoutSeconds=1')
        self.assertLess(time.monotonic() - started, 5)
        self.assertTrue(all(json.loads(l)['type'] == 'ADDED' for l in result.stdout.splitlines() if l.strip()))

    def test_watch_replays_from_resource_version(self) -> None:
        name = self.unique('replay')
        obj = self.configmap(name)
        path = f'/api/v1/namespaces/default/configmaps/{name}'
        self.api('PATCH', path, {'data': {'k': 'v2'}}, ctype='application/merge-patch+json')
        self.api('DELETE', path)
        since = obj['metadata']['resourceVersion']
        events, _ = self.watch(f'/api/v1/namespaces/default/configmaps?watch=1&timeoutSeconds=1&allowWatchBookmarks=true'
                               f'&resourceVersion={since}&fieldSelector=metadata.name%3D{name}')
        self.assertEqual([e['type'] for e in events], ['MODIFIED', 'DELETED'])
        self.assertEqual(events[0]['object']['data'], {'k': 'v2'})
        self.assertGreater(int(events[1]['object']['metadata']['resourceVersion']),
                           int(events[0]['object']['metadata']['resourceVersion']))

    def test_noop_patch_produces_no_watch_event(self) -> None:
        name = self.unique('noop')
        obj = self.configmap(name)
        rv = obj['metadata']['resourceVersion']
        future = self.watch_in_background(f'/api/v1/namespaces/default/configmaps?watch=1&timeoutSeconds=3'
                                          f'&resourceVersion={rv}&fieldSelector=metadata.name%3D{name}')
        path = f'/api/v1/namespaces/default/configmaps/{name}'
        for ctype, patch in [('application/merge-patch+json', {'data': {'k': 'v'}}),
                             ('application/strategic-merge-patch+json', {'data': {'k': 'v'}}),
                             ('application/json-patch+json', [{'op': 'replace', 'path': '/data/k', 'value': 'v'}])]:
            status, same = self.api('PATCH', path, patch, ctype=ctype)
            self.assertEqual((status, same['metadata']['resourceVersion']), (200, rv), ctype)
        self.kubectl('patch', 'cm', name, '--type', 'merge', '-p', '{"data":{"k":"v"}}')
        self.kubectl('patch', 'cm', name, '--type', 'merge', '-p', '{"data":{"k":"changed"}}')
        events, _ = future.result(timeout=15)
        self.assertEqual([(e['type'], e['object']['data']['k']) for e in events], [('MODIFIED', 'changed')])

    def test_watch_selector_transitions(self) -> None:
        name = self.unique('move')
        obj = self.configmap(name, labels={'phase': 'in'})
        future = self.watch_in_background(f'/api/v1/namespaces/default/configmaps?watch=1&timeoutSeconds=2'
                                          f'&resourceVersion={obj["metadata"]["resourceVersion"]}&labelSelector=phase%3Din')
        path = f'/api/v1/namespaces/default/configmaps/{name}'
        self.api('PATCH', path, {'metadata': {'labels': {'phase': 'out'}}}, ctype='application/merge-patch+json')
        self.api('PATCH', path, {'metadata': {'labels': {'phase': 'in'}}}, ctype='application/merge-patch+json')
        events, _ = future.result(timeout=15)
        self.assertEqual([e['type'] for e in events if e['object']['metadata']['name'] == name], ['DELETED', 'ADDED'])

    def test_kubectl_get_watch_prints_events(self) -> None:
        name = self.unique('kw')
        self.configmap(name, labels={'kw': name})
        proc = subprocess.Popen([KUBECTL, '--kubeconfig', str(self.kubeconfig), '--cache-dir', str(self.tmp / 'cache'),
                                 'get', 'cm', '-l', f'kw={name}', '-w', '--output-watch-events'],
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        lines: list[str] = []
        reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)
        reader.start()

        def wait_for(pattern: str) -> None:
            deadline = time.monotonic() + 20
            while not any(re.search(pattern, line) for line in list(lines)):
                self.assertLess(time.monotonic(), deadline, f'no {pattern!r} in {lines}')
                time.sleep(0.1)

        try:
            wait_for(rf'ADDED\s+{name}\s+1')  # the watch (with a Table per event) is running
            self.api('PATCH', f'/api/v1/namespaces/default/configmaps/{name}', {'data': {'n': '1'}},
                     ctype='application/merge-patch+json')
            wait_for(rf'MODIFIED\s+{name}\s+2')
        finally:
            proc.terminate()
            proc.wait(timeout=10)
            reader.join(timeout=10)
            proc.stdout.close()
        self.assertRegex(lines[0], r'EVENT\s+NAME\s+DATA\s+AGE')

    def test_watch_can_stream_initial_events(self) -> None:
        name = self.unique('initial')
        self.configmap(name)
        events, _ = self.watch(f'/api/v1/namespaces/default/configmaps?watch=1&timeoutSeconds=1&sendInitialEvents=true'
                               f'&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true&fieldSelector=metadata.name%3D{name}')
        self.assertEqual([e['type'] for e in events], ['ADDED', 'BOOKMARK'])
        self.assertEqual(events[1]['object']['metadata']['annotations'], {'k8s.io/initial-events-end': 'true'})


class LifecycleTest(unittest.TestCase):
    def test_sigterm_with_an_open_watch(self) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            proc, url, kubeconfig = start_emulator(Path(tmp))
            self.assertIn(url, kubeconfig.read_text())
            done = threading.Event()

            def hold_watch() -> None:
                try:
                    with urllib.request.urlopen(url + '/api/v1/namespaces/default/configmaps?watch=1', timeout=30) as r:
                        r.read()
                except Exception:
                    pass
                done.set()

            threading.Thread(target=hold_watch, daemon=True).start()
            time.sleep(0.5)
            started = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            self.assertEqual(proc.stdout.read(), '')  # exactly one line on stdout, then EOF at exit
            self.assertEqual(stop_emulator(proc), 0)
            self.assertLess(time.monotonic() - started, 5)
            self.assertTrue(done.wait(5))
            self.assertTrue(proc.stdout.closed)


if __name__ == '__main__':
    unittest.main()
