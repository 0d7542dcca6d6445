"""
Bad inputs to the HTTP API get a clear error and change nothing.
"""
import os
import re
import sys

sys.path.insert(0, os.path.join(os.environ['KILN_SRC'], 'tests', 'harness'))
import kiln  # noqa: E402

R = kiln.Runner()
state = {}

GOOD = '''\
name: good
on: push
jobs:
  a:
    runs-on: linux
    steps:
      - run: echo a
'''

CYCLE = '''\
name: cycle
on: push
jobs:
  a:
    needs: c
    runs-on: linux
    steps:
      - run: echo a
  b:
    needs: a
    runs-on: linux
    steps:
      - run: echo b
  c:
    needs: [b]
    runs-on: linux
    steps:
      - run: echo c
'''

UNKNOWN_NEEDS = '''\
name: unknown
on: push
jobs:
  a:
    runs-on: linux
    steps:
      - run: echo a
  b:
    needs: ghost
    runs-on: linux
    steps:
      - run: echo b
'''


def positions(text, words):
    """Every 1-based (line, col) where one of `words` starts as a YAML key or a needs value."""
    out = set()
    for n, line in enumerate(text.splitlines(), 1):
        for w in words:
            for m in re.finditer(r'(?<![\w-])%s(?![\w-])' % re.escape(w), line):
                out.add((n, m.start() + 1))
    return out


def error_of(status, v, want_status, what):
    assert status == want_status, '%s: HTTP %s %r, expected %s' % (what, status, v, want_status)
    assert isinstance(v, dict) and isinstance(v.get('error'), str) and v['error'], \
        '%s: no error string in %r' % (what, v)
    return v['error']


def setup():
    coord = kiln.Coordinator().start()
    good, good_sha = kiln.make_repo({'.github/workflows/good.yml': GOOD})
    cycle, _ = kiln.make_repo({'.github/workflows/ci.yml': CYCLE})
    unknown, _ = kiln.make_repo({'.kiln/workflows/unknown.yml': UNKNOWN_NEEDS})
    syntax, _ = kiln.make_repo({'.github/workflows/ci.yml': 'jobs:\n  a: [\n'})
    empty, _ = kiln.make_repo({'README': 'no workflows\n'})
    state.update(coord=coord, good=good, good_sha=good_sha, cycle=cycle, unknown=unknown,
                 syntax=syntax, empty=empty)


def test_malformed_bodies():
    c = state['coord']
    R.watch(c)
    for body in (b'{"repo": ', b'not json at all', b'{"repo": "x",}', b'', b'\xff\xfe{}'):
        status, v = c.api('POST', '/api/v1/runs', body)
        error_of(status, v, 400, 'body %r' % body)
    for body in (b'[]', b'"repo"', b'42', b'null'):
        status, v = c.api('POST', '/api/v1/runs', body)
        error_of(status, v, 400, 'body %r' % body)


def test_missing_or_bad_repo():
    c = state['coord']
    R.watch(c)
    for body in ({}, {'ref': 'main'}, {'repo': ''}, {'repo': 42, 'ref': 'main'},
                 {'repo': None}, {'repo': ['x']}, {'repo': 'x' * 5000}):
        status, v = c.api('POST', '/api/v1/runs', body)
        err = error_of(status, v, 400, 'body %r' % (body,))
        assert 'repo' in err, err
    notrepo = kiln.tempdir('kiln-notrepo-')
    kiln.write_files(notrepo, {'.github/workflows/good.yml': GOOD})
    for repo in (notrepo, os.path.join(notrepo, 'missing')):
        status, v = c.api('POST', '/api/v1/runs', {'repo': repo, 'ref': 'main'})
        error_of(status, v, 422, 'repo %s' % repo)
    # a real repository, but nothing to run at what was asked for
    for body in ({'repo': state['good'], 'ref': 'no-such-branch'},
                 {'repo': state['good'], 'ref': 'main', 'sha': '0' * 40},
                 {'repo': state['good'], 'ref': 'main', 'workflow': 'other.yml'},
                 {'repo': state['empty'], 'ref': 'main'}):
        status, v = c.api('POST', '/api/v1/runs', body)
        error_of(status, v, 422, 'body %r' % (body,))


def test_bad_workflows():
    c = state['coord']
    R.watch(c)
    # a cycle in needs: the error names the file and a line:col inside the cycle
    status, v = c.api('POST', '/api/v1/runs', {'repo': state['cycle'], 'ref': 'main'})
    err = error_of(status, v, 422, 'cycle')
    m = re.match(r'\.github/workflows/ci\.yml:(\d+):(\d+): (.*)', err)
    assert m, err
    assert 'cycle' in m.group(3).lower(), err
    pos = (int(m.group(1)), int(m.group(2)))
    assert pos in positions(CYCLE, ['a', 'b', 'c']), (pos, err)
    # an unknown need: the position of the name
    status, v = c.api('POST', '/api/v1/runs', {'repo': state['unknown'], 'ref': 'main'})
    err = error_of(status, v, 422, 'unknown needs')
    want = '.kiln/workflows/unknown.yml:%d:%d: ' % min(positions(UNKNOWN_NEEDS, ['ghost']))
    assert err.startswith(want), (want, err)
    # YAML that does not parse
    status, v = c.api('POST', '/api/v1/runs', {'repo': state['syntax'], 'ref': 'main'})
    err = error_of(status, v, 422, 'yaml syntax')
    assert re.match(r'\.github/workflows/ci\.yml:\d+:\d+: ', err), err
    # the CLI reports it and fails
    r = kiln.run_cli('submit', '--repo', state['cycle'], '--ref', 'main', server=c.http)
    assert r.returncode == 1, kiln.describe(r)
    assert r.stdout == '', kiln.describe(r)
    assert re.search(r'^kiln: error: \.github/workflows/ci\.yml:\d+:\d+: .*\(HTTP 422\)$',
                     r.stderr, re.M), kiln.describe(r)


def test_not_found():
    c = state['coord']
    R.watch(c)
    for path in ('/api/v1/runs/999', '/api/v1/runs/999/log', '/api/v1/runs/999/log?wait=5',
                 '/api/v1/jobs/999', '/api/v1/jobs/999/log', '/api/v1/jobs/999/log?wait=5'):
        status, v = c.api('GET', path, timeout=10)
        error_of(status, v, 404, path)
    for path in ('/api/v1/nope', '/api/v1/runs/abc', '/api/v1/runs/0', '/api/v1/runs/1/nope',
                 '/api/v2/runs', '/nope', '/api/v1/agents/x/y'):
        status, v = c.api('GET', path)
        error_of(status, v, 404, path)
    for method, path in (('DELETE', '/api/v1/runs'), ('PUT', '/api/v1/runs/1'),
                         ('POST', '/api/v1/agents')):
        status, v = c.api(method, path, body={})
        assert status in (404, 405), (method, path, status, v)
        assert isinstance(v, dict) and v.get('error'), (method, path, v)
    r = kiln.run_cli('show', '999', server=c.http)
    assert r.returncode == 1 and 'HTTP 404' in r.stderr, kiln.describe(r)
    r = kiln.run_cli('logs', '-f', '999', server=c.http, timeout=20)
    assert r.returncode == 1 and r.stderr.startswith('kiln: error: '), kiln.describe(r)
    r = kiln.run_cli('show', 'abc', server=c.http)
    assert r.returncode == 2, kiln.describe(r)


def test_nothing_changed():
    c = state['coord']
    R.watch(c)
    assert c.get('/api/v1/runs')['runs'] == [] and c.get('/api/v1/runs')['total'] == 0
    assert c.get('/api/v1/agents') == {'agents': []}
    assert c.get('/healthz') == {'status': 'ok'}
    r = kiln.run_cli('runs', '--json', server=c.http, check=0)
    assert '"runs": []' in r.stdout, r.stdout
    # and the coordinator still takes a good run: the first one
    v = c.submit(state['good'])
    assert v['sha'] == state['good_sha'] and len(v['runs']) == 1, v
    assert v['runs'][0]['number'] == 1, v
    runs = c.runs()
    assert [x['id'] for x in runs] == [v['runs'][0]['id']], runs
    assert runs[0]['state'] == 'queued', runs  # no agent here


def teardown():
    c = state.get('coord')
    if c:
        assert c.stop() == 0, c.log()


def main():
    R.run(setup)
    if R.failed:
        R.finish()
    for t in (test_malformed_bodies, test_missing_or_bad_repo, test_bad_workflows, test_not_found,
              test_nothing_changed, teardown):
        R.run(t)
    R.finish()


if __name__ == '__main__':
    main()
