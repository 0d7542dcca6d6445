"""
Forge feedback: commit statuses to a stand-in forge (an HTTP server started
here that records every call), retried while it answers 500; the signed
notification webhook of a completed run; /metrics in the Prometheus text
format, moving as runs happen.
"""
import hashlib
import hmac
import http.server
import json
import os
import re
import sys
import threading
import urllib.parse

sys.path.insert(0, os.path.join(os.environ['KILN_SRC'], 'tests', 'harness'))
import kiln  # noqa: E402

R = kiln.Runner()

WORKFLOW = '''\
name: ci
on: push
jobs:
  lint:
    runs-on: linux
    steps:
      - run: echo lint; sleep 1
  test:
    needs: lint
    runs-on: linux
    steps:
      - run: echo test; exit 1
  never:
    needs: test
    runs-on: linux
    steps:
      - run: echo never
'''


class Forge:
    """A stand-in forge on 127.0.0.1: records (method, path, headers, body) of every request
    and answers `fail_first` requests with 500, then 201."""

    def __init__(self):
        self.calls = []
        self.lock = threading.Lock()
        self.fail_first = 0
        forge = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                n = int(self.headers.get('Content-Length') or 0)
                raw = self.rfile.read(n)
                with forge.lock:
                    failing = forge.fail_first > 0
                    if failing:
                        forge.fail_first -= 1
                    forge.calls.append({'path': self.path,
                                        'headers': {k.lower(): v for k, v in self.headers.items()},
                                        'raw': raw, 'status': 500 if failing else 201})
                self.send_response(500 if failing else 201)
                body = b'{"message":"boom"}' if failing else b'{}'
                self.send_header('Content-Type', 'application/json')
                self.send_header('Content-Length', str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a):
                pass

        self.server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Handler)
        self.url = 'http://127.0.0.1:%d' % self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def delivered(self, prefix=''):
        with self.lock:
            return [c for c in self.calls if c['status'] == 201 and c['path'].startswith(prefix)]

    def all(self):
        with self.lock:
            return list(self.calls)

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def setup(extra=()):
    coord = kiln.Coordinator(extra=list(extra)).start()
    R.watch(coord)
    agent = kiln.Agent(coord.bus, labels='linux').start()
    R.watch(agent)
    coord.wait_agents(1)
    return coord, agent


def add_repo(coord, name, path, forge_kind, api_url, **kw):
    body = dict(name=name, url=path, forge=forge_kind, webhook_secret='hook-secret',
                api_url=api_url, token='forge-token-123', **kw)
    status, v = coord.api('POST', '/api/v1/repos', body)
    assert status == 201, (status, v)


def statuses_by_context(calls, key='context'):
    """context -> list of states, in the order they were delivered."""
    out = {}
    for c in calls:
        body = json.loads(c['raw'])
        out.setdefault(body[key], []).append(body['state'])
    return out


def check_forge(kind, api_prefix, auth_header, auth_value, state_ok, state_fail, context_key):
    forge = Forge()
    coord, agent = setup(['--config', config_file(public_url='https://ci.example.test/')])
    try:
        repo, sha = kiln.make_repo({'.github/workflows/ci.yml': WORKFLOW})
        name = 'octo/%s-repo' % kind
        add_repo(coord, name, repo, kind, forge.url + api_prefix)
        run = coord.submit(repo, ref='refs/heads/main', sha=sha)
        run_id = run['id'] if 'id' in run else run['runs'][0]['id']
        done = coord.wait_run_done(run_id)
        assert done['conclusion'] == 'failure', done
        jobs = {j['name']: j for j in done['jobs']}

        def settled():
            got = statuses_by_context(forge.delivered(), context_key)
            return got if len(got.get('kiln / ci / test', [])) >= 1 and \
                got['kiln / ci / test'][-1] == state_fail and \
                got.get('kiln / ci / lint', [''])[-1] == state_ok else None
        got = kiln.wait_for(settled, 15, 'statuses of lint and test')
        calls = forge.delivered()
        if kind == 'gitlab':
            want_path = '%s/projects/%s/statuses/%s' % (api_prefix, urllib.parse.quote(name, safe=''),
                                                       sha)
        else:
            want_path = '%s/repos/%s/statuses/%s' % (api_prefix, name, sha)
        for c in calls:
            assert c['path'] == want_path, (c['path'], want_path)
            assert c['headers'].get(auth_header.lower()) == auth_value, c['headers']
            assert c['headers'].get('content-type') == 'application/json', c['headers']
        assert 'kiln / ci / never' not in got, got  # skipped without ever being queued
        # pending first, then the final state (a pending not yet delivered when the final
        # state comes is replaced by it: a quick job may show only its final state)
        assert got['kiln / ci / lint'][0] in ('pending', 'running'), got
        for ctx in ('kiln / ci / lint', 'kiln / ci / test'):
            states = got[ctx]
            assert all(s in ('pending', 'running') for s in states[:-1]), (ctx, states)
        last = {}
        for c in calls:
            b = json.loads(c['raw'])
            last[b[context_key]] = b
        lint = last['kiln / ci / lint']
        assert lint['target_url'] == 'https://ci.example.test/runs/%d/jobs/%d' % (
            run_id, jobs['lint']['id']), lint
        assert lint['description'].startswith('Succeeded in'), lint
        assert last['kiln / ci / test']['description'].startswith('Failed after'), last
        if kind == 'gitlab':
            assert lint['ref'] == 'main', lint
            assert 'running' in got['kiln / ci / lint'], got
        # the outbox is empty once all is delivered (the last delivery may still be on its
        # way when the calls above were read)
        kiln.wait_for(lambda: re.search(r'^kiln_forge_pending 0$', metrics(coord), re.M), 15,
                      'the forge outbox to empty')
    finally:
        forge.close()
        agent.stop()
        coord.stop()


def config_file(**settings):
    d = kiln.tempdir('kiln-forge-cfg-')
    path = os.path.join(d, 'config.yml')
    with open(path, 'w') as f:
        for k, v in settings.items():
            f.write('%s: "%s"\n' % (k, v))
    return path


def test_github_statuses():
    check_forge('github', '', 'Authorization', 'Bearer forge-token-123', 'success', 'failure',
                'context')


def test_gitea_statuses():
    check_forge('gitea', '/api/v1', 'Authorization', 'token forge-token-123', 'success',
                'failure', 'context')


def test_gitlab_statuses():
    check_forge('gitlab', '/api/v4', 'Private-Token', 'forge-token-123', 'success', 'failed',
                'name')


def test_retry_and_notification():
    """The forge answers 500 three times: the statuses still arrive, the last state last.
    The notification of the run is signed with the repository's notify secret."""
    forge = Forge()
    forge.fail_first = 3
    hook = Forge()
    coord, agent = setup(['--config', config_file(forge_retry='200ms')])
    try:
        wf = WORKFLOW.replace('exit 1', 'exit 0')
        repo, sha = kiln.make_repo({'.github/workflows/ci.yml': wf})
        add_repo(coord, 'octo/retry', repo, 'github', forge.url,
                 notify_url=hook.url + '/notify', notify_secret='shh-notify')
        run = coord.submit(repo, ref='refs/heads/main', sha=sha)
        run_id = run['id'] if 'id' in run else run['runs'][0]['id']
        done = coord.wait_run_done(run_id)
        assert done['conclusion'] == 'success', done

        def settled():
            got = statuses_by_context(forge.delivered())
            ok = all(got.get('kiln / ci / %s' % j, [''])[-1] == 'success'
                     for j in ('lint', 'test', 'never'))
            return got if ok else None
        kiln.wait_for(settled, 20, 'statuses delivered after the forge recovers')
        assert sum(1 for c in forge.all() if c['status'] == 500) == 3, forge.all()

        notes = kiln.wait_for(lambda: hook.delivered('/notify'), 15, 'the notification')
        assert len(notes) == 1, notes
        n = notes[0]
        sig = n['headers'].get('x-kiln-signature-256')
        want = 'sha256=' + hmac.new(b'shh-notify', n['raw'], hashlib.sha256).hexdigest()
        assert sig == want, (sig, want)
        body = json.loads(n['raw'])
        assert body['run_id'] == run_id and body['conclusion'] == 'success', body
        assert body['repository'] == 'octo/retry' and body['sha'] == sha, body
        assert body['workflow'] == 'ci' and body['ref'] == 'refs/heads/main', body
        assert body['url'].endswith('/runs/%d' % run_id), body
        assert {j['name']: j['conclusion'] for j in body['jobs']} == {
            'lint': 'success', 'test': 'success', 'never': 'success'}, body
        assert body['duration_ms'] is not None and body['duration_ms'] >= 0, body
        assert 'octo/retry' in body['text'] and 'succeeded' in body['text'], body['text']
        assert '<%s|' % body['url'] in body['text'], body['text']  # a Slack link
        text = metrics(coord)
        m = re.search(r'^kiln_forge_failures_total (\d+)$', text, re.M)
        assert m and int(m.group(1)) >= 3, text
    finally:
        forge.close()
        hook.close()
        agent.stop()
        coord.stop()


def test_outbox_survives_restart():
    """Statuses queued while the forge is down are delivered after a coordinator restart."""
    forge = Forge()
    forge.fail_first = 1000
    coord, agent = setup(['--config', config_file(forge_retry='30s')])
    try:
        wf = WORKFLOW.replace('exit 1', 'exit 0')
        repo, sha = kiln.make_repo({'.github/workflows/ci.yml': wf})
        add_repo(coord, 'octo/restart', repo, 'github', forge.url)
        run = coord.submit(repo, ref='refs/heads/main', sha=sha)
        run_id = run['id'] if 'id' in run else run['runs'][0]['id']
        coord.wait_run_done(run_id)
        kiln.wait_for(lambda: forge.all(), 10, 'a first (failing) attempt')
        coord.stop()
        with forge.lock:
            forge.fail_first = 0
        coord.restart()
        got = kiln.wait_for(
            lambda: (lambda g: g if g.get('kiln / ci / never', [''])[-1] == 'success' else None)(
                statuses_by_context(forge.delivered())), 15, 'statuses after the restart')
        assert got['kiln / ci / lint'][-1] == 'success', got
    finally:
        forge.close()
        agent.stop()
        coord.stop()


# ---------------------------------------------------------------- /metrics

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([a-zA-Z_][a-zA-Z0-9_]*="(\\.|[^"\\])*"'
                    r'(,[a-zA-Z_][a-zA-Z0-9_]*="(\\.|[^"\\])*")*)?\})? '
                    r'(-?[0-9.e+-]+|\+Inf|-Inf|NaN)$')


def metrics(coord):
    status, raw = coord.request('GET', '/metrics')
    assert status == 200, (status, raw)
    return raw.decode()


def parse_metrics(text):
    """Checks every line; returns {name{labels}: value} and {family: type}."""
    values, types, helps = {}, {}, set()
    for line in text.splitlines():
        if not line:
            continue
        if line.startswith('# HELP '):
            helps.add(line.split(' ', 3)[2])
            continue
        if line.startswith('# TYPE '):
            _, _, name, typ = line.split(' ')
            assert typ in ('counter', 'gauge', 'histogram', 'summary', 'untyped'), line
            assert name not in types, 'TYPE twice: ' + line
            types[name] = typ
            continue
        assert not line.startswith('#'), line
        m = SAMPLE.match(line)
        assert m, 'not exposition format: %r' % line
        name = m.group(1)
        family = re.sub(r'_(bucket|sum|count)$', '', name) if name not in types else name
        assert family in types, 'sample before its TYPE: %r' % line
        assert family in helps, 'no HELP for %r' % family
        assert name.startswith('kiln_'), line
        key = name + (m.group(2) or '')
        assert key not in values, 'sample twice: %r' % line
        values[key] = float(m.group(7))
    return values, types


def test_metrics():
    coord, agent = setup()
    try:
        status, raw = coord.request('GET', '/metrics')
        assert status == 200, status
        v0, types = parse_metrics(raw.decode())
        assert types['kiln_dispatch_latency_seconds'] == 'histogram', types
        assert types['kiln_cache_hits_total'] == 'counter', types
        assert v0['kiln_agents_online'] == 1, v0
        assert 'kiln_stored_bytes' in v0 and 'kiln_log_bytes' in v0, v0
        assert status == 200
        # the content type of the text format
        import urllib.request
        req = urllib.request.Request(coord.http + '/metrics',
                                     headers={'Authorization': 'Bearer ' + coord.token})
        with urllib.request.urlopen(req, timeout=10) as r:
            assert r.headers['Content-Type'].startswith('text/plain; version=0.0.4'), r.headers

        wf = WORKFLOW.replace('exit 1', 'exit 0')
        repo, sha = kiln.make_repo({'.github/workflows/ci.yml': wf})
        run = coord.submit(repo, ref='refs/heads/main', sha=sha)
        run_id = run['id'] if 'id' in run else run['runs'][0]['id']
        coord.wait_run_done(run_id)

        def moved():
            v, _ = parse_metrics(metrics(coord))
            return v if v.get('kiln_log_bytes', 0) > v0.get('kiln_log_bytes', 0) else None
        v1 = kiln.wait_for(moved, 10, 'log bytes to grow')
        key = 'kiln_runs{state="completed",conclusion="success"}'
        assert v1.get(key, 0) == v0.get(key, 0) + 1, (v0, v1)
        jkey = 'kiln_jobs{state="completed",conclusion="success"}'
        assert v1.get(jkey, 0) == v0.get(jkey, 0) + 3, v1
        assert v1['kiln_dispatch_latency_seconds_count'] == \
            v0['kiln_dispatch_latency_seconds_count'] + 3, v1
        assert v1['kiln_dispatch_latency_seconds_bucket{le="+Inf"}'] == \
            v1['kiln_dispatch_latency_seconds_count'], v1
        # buckets never decrease
        buckets = [(k, x) for k, x in v1.items() if k.startswith('kiln_dispatch_latency_seconds_bucket')]
        vals = [x for _, x in buckets]
        assert vals == sorted(vals), buckets

        # actions/cache: a miss, then a hit; the blobs it saved are counted as stored
        cache_wf = '''\
name: cached
on: push
jobs:
  c:
    runs-on: linux
    steps:
      - uses: actions/cache@v4
        with:
          path: deps
          key: deps-1
      - run: mkdir -p deps && head -c 100000 /dev/urandom > deps/blob
'''
        repo3, sha3 = kiln.make_repo({'.github/workflows/ci.yml': cache_wf})
        for i in range(2):
            rid = coord.submit(repo3, ref='refs/heads/main', sha=sha3)['runs'][0]['id']
            assert coord.wait_run_done(rid)['conclusion'] == 'success'
        v2 = kiln.wait_for(lambda: (lambda v: v if v['kiln_stored_bytes'] > 0 else None)(
            parse_metrics(metrics(coord))[0]), 10, 'stored bytes')
        assert v2['kiln_cache_misses_total'] == v1['kiln_cache_misses_total'] + 1, (v1, v2)
        assert v2['kiln_cache_hits_total'] == v1['kiln_cache_hits_total'] + 1, (v1, v2)
        assert v2['kiln_stored_bytes'] >= 100000 * 0.9, v2

        # a job no agent can take: the queue depth of its labels
        wf2 = WORKFLOW.replace('runs-on: linux', 'runs-on: [gpu, linux]', 1)
        repo2, sha2 = kiln.make_repo({'.github/workflows/ci.yml': wf2})
        coord.submit(repo2, ref='refs/heads/main', sha=sha2)
        kiln.wait_for(lambda: parse_metrics(metrics(coord))[0].get(
            'kiln_queue_depth{labels="gpu,linux"}') == 1, 10, 'queue depth of gpu,linux')
    finally:
        agent.stop()
        coord.stop()


R.run(test_metrics)
R.run(test_github_statuses)
R.run(test_gitea_statuses)
R.run(test_gitlab_statuses)
R.run(test_retry_and_notification)
R.run(test_outbox_survives_restart)
R.finish()
