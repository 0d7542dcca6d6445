"""
Repositories, webhooks and triggers, over real HTTP against a real coordinator:
`kiln repo add|list|remove`, signed GitHub/Gitea/GitLab deliveries shaped like
the forges' own, what is refused (401/404/413, nothing enqueued), duplicates,
[skip ci], branch/tag/paths filters, pull_request types, workflow_dispatch
inputs (`kiln dispatch`), schedules, workflow_run, repository_dispatch, the
github.event payload a job sees, and a coordinator killed between a webhook
and the dispatch of its run.
"""
import hashlib
import hmac
import http.client
import json
import os
import shutil
import sys
import time
import uuid

sys.path.insert(0, os.path.join(os.environ['KILN_SRC'], 'tests', 'harness'))
import kiln  # noqa: E402

R = kiln.Runner()
SECRET = 'It\'s a Secret to Everybody'
ZERO = '0' * 40

CI = '''\
name: ci
on:
  push:
    branches: [main, 'release/**', '!release/**-beta']
  pull_request:
jobs:
  build:
    runs-on: linux
    steps:
      - run: echo build
'''

TAGS = '''\
name: release
on:
  push:
    tags: ['v*']
jobs:
  publish:
    runs-on: linux
    steps:
      - run: echo publish
'''

PATHS = '''\
name: docs
on:
  push:
    paths: ['docs/**', '!docs/draft/**']
jobs:
  docs:
    runs-on: linux
    steps:
      - run: echo docs
'''

CLOSED = '''\
name: cleanup
on:
  pull_request:
    types: [closed]
jobs:
  clean:
    runs-on: linux
    steps:
      - run: echo clean
'''

DISPATCH = '''\
name: deploy
on:
  workflow_dispatch:
    inputs:
      target:
        type: choice
        options: [staging, production]
        required: true
      dry_run:
        type: boolean
        default: true
      replicas:
        type: number
        default: 2
      note:
        type: string
jobs:
  deploy:
    runs-on: linux
    steps:
      - run: echo "deploy ${{ inputs.target }} ${{ inputs.replicas }} ${{ github.event.inputs.dry_run }}"
'''

NIGHTLY = '''\
name: nightly
on:
  schedule:
    - cron: '30 5 * * 1'
jobs:
  nightly:
    runs-on: linux
    steps:
      - run: echo nightly
'''

SHOW_EVENT = '''\
name: show
on: push
jobs:
  show:
    runs-on: linux
    steps:
      - run: |
          echo "msg=${{ github.event.head_commit.message }}"
          echo "repo=$GITHUB_REPOSITORY actor=${{ github.actor }} ref=${{ github.ref }}"
          python3 -c "import json,os; print('pusher=' + json.load(open(os.environ['GITHUB_EVENT_PATH']))['pusher']['name'])"
'''


# ---------------------------------------------------------------- helpers

def sign(body, secret=SECRET):
    return 'sha256=' + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def deliver(coord, forge, event, payload, secret=SECRET, delivery=None, signature=None,
            raw=None):
    """POSTs a webhook as the forge would; returns (status, JSON or None)."""
    body = raw if raw is not None else json.dumps(payload).encode()
    delivery = delivery or str(uuid.uuid4())
    headers = {'Content-Type': 'application/json', 'User-Agent': 'test-forge'}
    if forge == 'github':
        headers.update({'X-GitHub-Event': event, 'X-GitHub-Delivery': delivery,
                        'X-Hub-Signature-256': signature or sign(body, secret)})
    elif forge == 'gitea':
        headers.update({'X-Gitea-Event': event, 'X-GitHub-Event': event,
                        'X-Gitea-Delivery': delivery,
                        'X-Gitea-Signature': signature or sign(body, secret)[7:]})
    else:
        headers.update({'X-Gitlab-Event': event, 'X-Gitlab-Event-UUID': delivery,
                        'X-Gitlab-Token': signature or secret})
    status, raw_out = coord.request('POST', '/hooks/' + forge, body, headers, token=None)
    try:
        return status, json.loads(raw_out.decode()) if raw_out else None
    except ValueError:
        return status, None


def repo_json(name, url):
    owner, short = name.split('/', 1)
    return {'id': 4242, 'name': short, 'full_name': name, 'private': False,
            'owner': {'login': owner, 'id': 1}, 'html_url': 'https://github.com/' + name,
            'clone_url': url, 'default_branch': 'main'}


def push_payload(name, url, ref, before, after, message='change', created=False,
                 deleted=False):
    commit = {'id': after, 'message': message, 'timestamp': '2024-05-01T12:00:00Z',
              'author': {'name': 'Mona', 'email': 'mona@example.com', 'username': 'mona'},
              'added': [], 'removed': [], 'modified': []}
    return {'ref': ref, 'before': before, 'after': after, 'created': created,
            'deleted': deleted, 'forced': False, 'base_ref': None,
            'compare': 'https://github.com/%s/compare/%s...%s' % (name, before[:12], after[:12]),
            'commits': [] if deleted else [commit],
            'head_commit': None if deleted else commit,
            'repository': repo_json(name, url),
            'pusher': {'name': 'mona', 'email': 'mona@example.com'},
            'sender': {'login': 'mona', 'id': 2, 'type': 'User'}}


def pr_payload(name, url, action, number, head_ref, head_sha, base_ref, base_sha, fork=None):
    head_repo = repo_json(fork or name, url)
    return {'action': action, 'number': number,
            'pull_request': {'id': 9000 + number, 'number': number, 'state': 'open',
                             'title': 'a change', 'user': {'login': 'mona'},
                             'head': {'label': 'mona:' + head_ref, 'ref': head_ref,
                                      'sha': head_sha, 'repo': head_repo},
                             'base': {'label': 'o:' + base_ref, 'ref': base_ref,
                                      'sha': base_sha, 'repo': repo_json(name, url)},
                             'merged': False},
            'repository': repo_json(name, url), 'sender': {'login': 'mona', 'id': 2}}


def cli(coord, *args, check=0):
    return kiln.run_cli('--token', coord.token, *args, server=coord.http, check=check)


def add_repo(coord, name, url, forge='github', *extra, check=0):
    return cli(coord, 'repo', 'add', name, '--url', url, '--forge', forge,
               '--webhook-secret', SECRET, '--default-branch', 'main', *extra, check=check)


def runs_of(coord, name):
    r = cli(coord, 'runs', '--json')
    return [x for x in json.loads(r.stdout)['runs'] if x['repository'] == name]


def deliveries(coord, name):
    return coord.get('/api/v1/deliveries?repo=' + name.replace('/', '%2F'))['deliveries']


def settled(coord, name, n=None):
    """Waits until no delivery of the repository is pending (and, with n, until there are n);
    returns the deliveries."""
    def ok():
        d = deliveries(coord, name)
        if any(x['state'] == 'pending' for x in d):
            return None
        return d if n is None or len(d) >= n else None
    return kiln.wait_for(ok, what='deliveries of %s to settle' % name)


def new_repo(files, name):
    path, sha = kiln.make_repo(files)
    return path, sha


_coord = None


def coordinator():
    global _coord
    if _coord is None:
        _coord = kiln.Coordinator().start()
        R.watch(_coord)
    return _coord


# ---------------------------------------------------------------- tests

def test_repo_cli():
    c = coordinator()
    path, _ = new_repo({'.github/workflows/ci.yml': CI}, 'acme/cli')
    r = add_repo(c, 'acme/cli', path, 'github', '--forge-token', 'ghp_supersecret',
                 '--notify-url', 'http://127.0.0.1:9/hook', '--notify-secret', 'n0tify')
    assert 'acme/cli' in r.stdout, kiln.describe(r)
    r = cli(c, 'repo', 'list', '--json')
    assert 'ghp_supersecret' not in r.stdout and SECRET not in r.stdout and 'n0tify' not in r.stdout
    repo = [x for x in json.loads(r.stdout)['repos'] if x['name'] == 'acme/cli'][0]
    assert repo['forge'] == 'github' and repo['url'] == path and repo['default_branch'] == 'main'
    assert repo['api_url'] == 'https://api.github.com', repo
    assert repo['token_set'] and repo['webhook_secret_set'] and repo['notify_secret_set'], repo
    # the database holds them sealed too
    db = open(os.path.join(c.data, 'kiln.db'), 'rb').read()
    wal = os.path.join(c.data, 'kiln.db-wal')
    if os.path.exists(wal):
        db += open(wal, 'rb').read()
    assert b'ghp_supersecret' not in db and SECRET.encode() not in db
    # plain listing
    r = cli(c, 'repo', 'list')
    assert 'acme/cli' in r.stdout and 'set' in r.stdout, r.stdout
    # errors
    r = add_repo(c, 'acme/cli', path, check=None)
    assert r.returncode == 1 and 'already exists' in r.stderr, kiln.describe(r)
    r = cli(c, 'repo', 'add', 'no-slash', '--url', path, '--forge', 'github',
            '--webhook-secret', 's', check=None)
    assert r.returncode == 1 and 'OWNER/NAME' in r.stderr, kiln.describe(r)
    r = cli(c, 'repo', 'add', 'a/b', '--url', path, '--forge', 'bitbucket',
            '--webhook-secret', 's', check=None)
    assert r.returncode == 1 and 'forge' in r.stderr, kiln.describe(r)
    r = cli(c, 'repo', 'add', 'a/b', '--url', path, '--forge', 'github', check=None)
    assert r.returncode == 2, kiln.describe(r)
    r = cli(c, 'repo', 'add', 'a/b', '--url', path, '--forge', 'gitea',
            '--webhook-secret', 's', check=None)
    assert r.returncode == 1 and 'api_url' in r.stderr, kiln.describe(r)
    status, v = c.api('POST', '/api/v1/repos', {'name': 'a/b', 'url': path, 'forge': 'github',
                                                'webhook_secret': 's', 'colour': 'red'})
    assert status == 400 and 'colour' in v['error'], (status, v)
    # remove
    cli(c, 'repo', 'remove', 'acme/cli')
    r = cli(c, 'repo', 'list', '--json')
    assert not [x for x in json.loads(r.stdout)['repos'] if x['name'] == 'acme/cli']
    r = cli(c, 'repo', 'remove', 'acme/cli', check=1)
    assert 'no repository' in r.stderr, kiln.describe(r)


def test_push_creates_run():
    c = coordinator()
    path, sha = new_repo({'.github/workflows/ci.yml': CI}, 'acme/app')
    add_repo(c, 'acme/app', path)
    p = push_payload('acme/app', path, 'refs/heads/main', ZERO, sha, created=True)
    status, v = deliver(c, 'github', 'push', p)
    assert status == 202 and v['state'] == 'pending', (status, v)
    runs = kiln.wait_for(lambda: runs_of(c, 'acme/app'), what='the run of the push')
    assert len(runs) == 1, runs
    run = runs[0]
    assert run['ref'] == 'refs/heads/main' and run['sha'] == sha, run
    assert run['event'] == 'push' and run['state'] in ('queued', 'in_progress', 'running'), run
    assert run['workflow'] == '.github/workflows/ci.yml' and run['name'] == 'ci', run
    d = settled(c, 'acme/app')
    assert d[0]['state'] == 'done' and d[0]['runs'] == [run['id']], d


def test_refused():
    c = coordinator()
    path, sha = new_repo({'.github/workflows/ci.yml': CI}, 'acme/guard')
    add_repo(c, 'acme/guard', path)
    before = len(c.runs())
    p = push_payload('acme/guard', path, 'refs/heads/main', ZERO, sha, created=True)
    body = json.dumps(p).encode()
    # a signature made with another secret, a malformed one, none
    assert deliver(c, 'github', 'push', p, secret='wrong')[0] == 401
    assert deliver(c, 'github', 'push', p, signature='sha256=' + 'ab' * 32)[0] == 401
    assert deliver(c, 'github', 'push', p, signature='sha1=' + 'ab' * 20)[0] == 401
    headers = {'X-GitHub-Event': 'push', 'X-GitHub-Delivery': 'x1'}
    assert c.request('POST', '/hooks/github', body, headers, token=None)[0] == 401
    # the body changed after signing
    tampered = body.replace(b'"mona"', b'"eve"')
    assert deliver(c, 'github', 'push', None, raw=tampered, signature=sign(body))[0] == 401
    # an unknown repository
    other = push_payload('acme/unknown', path, 'refs/heads/main', ZERO, sha)
    status, v = deliver(c, 'github', 'push', other)
    assert status == 404 and 'acme/unknown' in v['error'], (status, v, other)
    # a GitHub repository's delivery to the GitLab endpoint
    gl = {'object_kind': 'push', 'project': {'path_with_namespace': 'acme/guard'}}
    assert deliver(c, 'gitlab', 'Push Hook', gl)[0] == 404
    # over the body limit (25 MiB by default): nng's server answers 413 from the
    # Content-Length alone, before the body is read, and closes the connection
    big = 25 * 1024 * 1024 + 1
    host, port = c.http[len('http://'):].split(':')
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    conn.putrequest('POST', '/hooks/github')
    for k, v in [('Content-Type', 'application/json'), ('Content-Length', str(big)),
                 ('X-GitHub-Event', 'push'), ('X-GitHub-Delivery', 'big-1'),
                 ('X-Hub-Signature-256', 'sha256=' + '0' * 64)]:
        conn.putheader(k, v)
    conn.endheaders()
    try:
        conn.send(b'{"pad": "' + b'x' * 65536)
    except OSError:
        pass
    assert conn.getresponse().status == 413
    conn.close()
    # not JSON, no event header
    assert deliver(c, 'github', 'push', None, raw=b'not json', signature=sign(b'not json'))[0] == 400
    assert c.request('POST', '/hooks/github', body,
                     {'X-GitHub-Delivery': 'x2', 'X-Hub-Signature-256': sign(body)},
                     token=None)[0] == 400
    assert c.request('GET', '/hooks/github', token=None)[0] == 405
    assert c.request('POST', '/hooks/bitbucket', body, token=None)[0] == 404
    time.sleep(0.5)
    assert len(c.runs()) == before, c.runs()
    assert [d for d in deliveries(c, 'acme/guard') if d['forge'] != 'kiln'] == []


def test_duplicates_and_ignored():
    c = coordinator()
    path, sha = new_repo({'.github/workflows/ci.yml': CI}, 'acme/dup')
    add_repo(c, 'acme/dup', path)
    p = push_payload('acme/dup', path, 'refs/heads/main', ZERO, sha, created=True)
    status, v = deliver(c, 'github', 'push', p, delivery='d-1')
    assert status == 202, (status, v)
    status, v = deliver(c, 'github', 'push', p, delivery='d-1')
    assert status == 200 and v['state'] == 'duplicate', (status, v)
    settled(c, 'acme/dup')
    status, v = deliver(c, 'github', 'push', p, delivery='d-1')
    assert status == 200 and v['state'] == 'duplicate', (status, v)
    assert len(runs_of(c, 'acme/dup')) == 1
    # ping, a branch deletion, an event kiln does not take: 200, no run
    status, v = deliver(c, 'github', 'ping', {'zen': 'Keep it logically awesome.', 'hook_id': 1,
                                              'repository': repo_json('acme/dup', path)})
    assert status == 200 and v['reason'] == 'ping', (status, v)
    gone = push_payload('acme/dup', path, 'refs/heads/old', sha, ZERO, deleted=True)
    status, v = deliver(c, 'github', 'push', gone)
    assert status == 200 and 'deleted' in v['reason'], (status, v)
    status, v = deliver(c, 'github', 'issues', {'action': 'opened',
                                                'repository': repo_json('acme/dup', path)})
    assert status == 200 and v['state'] == 'ignored', (status, v)
    time.sleep(0.5)
    assert len(runs_of(c, 'acme/dup')) == 1


def test_skip_ci():
    c = coordinator()
    path, sha0 = new_repo({'.github/workflows/ci.yml': CI}, 'acme/skip')
    add_repo(c, 'acme/skip', path)
    for i, msg in enumerate(['docs: typo [skip ci]', 'wip [CI SKIP]', 'x\n\n[no ci]',
                             '[skip actions] bump', 'y [actions skip]']):
        sha = kiln.commit(path, msg)
        p = push_payload('acme/skip', path, 'refs/heads/main', sha0, sha, message=msg)
        assert deliver(c, 'github', 'push', p)[0] == 202
        sha0 = sha
    d = [x for x in settled(c, 'acme/skip', 6) if x['forge'] == 'github']
    assert len(d) == 5 and all(x['state'] == 'done' and 'skip' in x.get('message', '')
                               for x in d), d
    assert runs_of(c, 'acme/skip') == []
    # the message from the repository when the payload has none (a pull request)
    sha = kiln.commit(path, 'feature [skip ci]')
    pr = pr_payload('acme/skip', path, 'opened', 3, 'main', sha, 'main', sha0)
    assert deliver(c, 'github', 'pull_request', pr)[0] == 202
    settled(c, 'acme/skip', 7)
    assert runs_of(c, 'acme/skip') == []
    sha2 = kiln.commit(path, 'real change')
    p = push_payload('acme/skip', path, 'refs/heads/main', sha, sha2, message='real change')
    assert deliver(c, 'github', 'push', p)[0] == 202
    settled(c, 'acme/skip', 8)
    assert len(runs_of(c, 'acme/skip')) == 1


def test_branch_and_tag_filters():
    c = coordinator()
    path, base = new_repo({'.github/workflows/ci.yml': CI,
                           '.github/workflows/release.yml': TAGS}, 'acme/filters')
    add_repo(c, 'acme/filters', path)
    cases = [('refs/heads/release/1.0', ['ci']),
             ('refs/heads/release/2.0/hotfix', ['ci']),   # ** crosses /
             ('refs/heads/release/2.0-beta', []),         # excluded by !release/**-beta
             ('refs/heads/feature/x', []),
             ('refs/tags/v1.2.0', ['release']),           # only the tags workflow
             ('refs/tags/nightly', [])]
    for ref, want in cases:
        sha = kiln.commit(path, 'for ' + ref)
        kiln.git(path, 'update-ref', ref, sha)
        seen = {r['id'] for r in runs_of(c, 'acme/filters')}
        n = len(deliveries(c, 'acme/filters'))
        p = push_payload('acme/filters', path, ref, ZERO, sha, created=True)
        assert deliver(c, 'github', 'push', p)[0] == 202
        settled(c, 'acme/filters', n + 1)
        new = [r for r in runs_of(c, 'acme/filters') if r['id'] not in seen]
        assert sorted(r['name'] for r in new) == want, (ref, new)
        for r in new:
            assert r['ref'] == ref and r['sha'] == sha, r


def test_paths_filters():
    c = coordinator()
    path, base = new_repo({'.github/workflows/docs.yml': PATHS, 'docs/a.md': 'a',
                           'src/main.c': 'int main;'}, 'acme/paths')
    add_repo(c, 'acme/paths', path)

    def push(before, files, ref='refs/heads/main', created=False):
        sha = kiln.commit(path, 'change', files)
        if ref != 'refs/heads/main':
            kiln.git(path, 'update-ref', ref, sha)
        seen = {r['id'] for r in runs_of(c, 'acme/paths')}
        n = len(deliveries(c, 'acme/paths'))
        p = push_payload('acme/paths', path, ref, before if not created else ZERO, sha,
                         created=created)
        assert deliver(c, 'github', 'push', p)[0] == 202
        settled(c, 'acme/paths', n + 1)
        return sha, [r for r in runs_of(c, 'acme/paths') if r['id'] not in seen]

    sha, new = push(base, {'src/main.c': 'int main(void);'})
    assert new == [], new
    sha, new = push(sha, {'docs/draft/x.md': 'draft'})        # only excluded files
    assert new == [], new
    sha, new = push(sha, {'docs/guide/intro.md': 'hello'})    # ** below docs/
    assert len(new) == 1 and new[0]['name'] == 'docs', new
    # a new branch is compared with the default branch: it brings a docs change
    kiln.git(path, 'checkout', '-q', '-b', 'topic')
    kiln.commit(path, 'topic docs', {'docs/topic.md': 't'})
    tsha, new = push(None, {'src/other.c': 'x'}, ref='refs/heads/topic', created=True)
    assert len(new) == 1, new
    kiln.git(path, 'checkout', '-q', 'main')
    # a new branch without docs changes
    kiln.git(path, 'checkout', '-q', '-b', 'topic2')
    sha2, new = push(None, {'src/third.c': 'x'}, ref='refs/heads/topic2', created=True)
    assert new == [], new
    kiln.git(path, 'checkout', '-q', 'main')


def test_pull_request():
    c = coordinator()
    path, base = new_repo({'.github/workflows/ci.yml': CI,
                           '.github/workflows/cleanup.yml': CLOSED}, 'acme/pr')
    add_repo(c, 'acme/pr', path)
    kiln.git(path, 'checkout', '-q', '-b', 'feature')
    head = kiln.commit(path, 'feature work', {'f.txt': 'x'})
    kiln.git(path, 'checkout', '-q', 'main')
    n = 0
    for action, want in [('opened', ['ci']), ('synchronize', ['ci']), ('labeled', []),
                         ('closed', ['cleanup']), ('reopened', ['ci'])]:
        seen = {r['id'] for r in runs_of(c, 'acme/pr')}
        p = pr_payload('acme/pr', path, action, 7, 'feature', head, 'main', base)
        assert deliver(c, 'github', 'pull_request', p)[0] == 202
        n += 1
        settled(c, 'acme/pr', n)
        new = [r for r in runs_of(c, 'acme/pr') if r['id'] not in seen]
        assert sorted(r['name'] for r in new) == want, (action, new)
        for r in new:
            assert r['event'] == 'pull_request' and r['sha'] == head, r
            assert r['ref'] == 'refs/pull/7/merge', r
    # the base branch filter: a pull request into another branch runs nothing of ci
    seen = {r['id'] for r in runs_of(c, 'acme/pr')}
    kiln.git(path, 'branch', 'other', base)
    p = pr_payload('acme/pr', path, 'opened', 8, 'feature', head, 'other', base)
    assert deliver(c, 'github', 'pull_request', p)[0] == 202
    settled(c, 'acme/pr', n + 1)
    new = [r for r in runs_of(c, 'acme/pr') if r['id'] not in seen]
    assert [r['name'] for r in new] == ['ci'], new  # ci takes every base (no branches filter)
    # GitHub's create event: a tag
    kiln.git(path, 'tag', 'v9', head)
    status, v = deliver(c, 'github', 'create', {'ref': 'v9', 'ref_type': 'tag',
                                                'master_branch': 'main',
                                                'repository': repo_json('acme/pr', path),
                                                'sender': {'login': 'mona'}})
    assert status == 202, (status, v)
    d = settled(c, 'acme/pr', n + 2)
    assert d[0]['state'] == 'done', d   # nothing listens to create: no run, no error


def test_gitea_and_gitlab():
    c = coordinator()
    path, base = new_repo({'.github/workflows/ci.yml': CI}, 'acme/tea')
    add_repo(c, 'acme/tea', path, 'gitea', '--api-url', 'http://127.0.0.1:3000/api/v1')
    sha = kiln.commit(path, 'gitea push')
    p = push_payload('acme/tea', path, 'refs/heads/main', base, sha)
    p['pusher'] = {'id': 1, 'login': 'mona', 'username': 'mona'}
    assert deliver(c, 'gitea', 'push', p, secret='wrong')[0] == 401
    status, v = deliver(c, 'gitea', 'push', p)
    assert status == 202, (status, v)
    settled(c, 'acme/tea', 1)
    runs = runs_of(c, 'acme/tea')
    assert len(runs) == 1 and runs[0]['sha'] == sha, runs
    pr = pr_payload('acme/tea', path, 'synchronized', 4, 'main', sha, 'main', base)
    assert deliver(c, 'gitea', 'pull_request', pr)[0] == 202
    settled(c, 'acme/tea', 2)
    runs = runs_of(c, 'acme/tea')
    assert len(runs) == 2 and runs[0]['ref'] == 'refs/pull/4/head', runs

    gpath, gbase = new_repo({'.github/workflows/ci.yml': CI,
                             '.github/workflows/release.yml': TAGS}, 'group/sub/proj')
    add_repo(c, 'group/sub/proj', gpath, 'gitlab')
    gsha = kiln.commit(gpath, 'gitlab push')
    project = {'id': 15, 'name': 'proj', 'path_with_namespace': 'group/sub/proj',
               'default_branch': 'main', 'git_http_url': gpath}
    push = {'object_kind': 'push', 'event_name': 'push', 'before': gbase, 'after': gsha,
            'ref': 'refs/heads/main', 'checkout_sha': gsha, 'user_id': 4,
            'user_name': 'John Smith', 'user_username': 'jsmith', 'project_id': 15,
            'project': project, 'commits': [{'id': gsha, 'message': 'gitlab push\n',
                                             'author': {'name': 'J', 'email': 'j@x'}}],
            'total_commits_count': 1, 'repository': {'name': 'proj'}}
    assert deliver(c, 'gitlab', 'Push Hook', push, secret='wrong')[0] == 401
    assert deliver(c, 'gitlab', 'Push Hook', push)[0] == 202
    settled(c, 'group/sub/proj', 1)
    runs = runs_of(c, 'group/sub/proj')
    assert len(runs) == 1 and runs[0]['sha'] == gsha and runs[0]['name'] == 'ci', runs
    kiln.git(gpath, 'tag', 'v2.0', gsha)
    tag = dict(push, object_kind='tag_push', event_name='tag_push', ref='refs/tags/v2.0',
               before=ZERO, commits=[])
    assert deliver(c, 'gitlab', 'Tag Push Hook', tag)[0] == 202
    settled(c, 'group/sub/proj', 2)
    runs = runs_of(c, 'group/sub/proj')
    assert len(runs) == 2 and runs[0]['name'] == 'release' and \
        runs[0]['ref'] == 'refs/tags/v2.0', runs
    deleted = dict(push, after=ZERO, checkout_sha=None)
    status, v = deliver(c, 'gitlab', 'Push Hook', deleted)
    assert status == 200 and v['state'] == 'ignored', (status, v)
    mr = {'object_kind': 'merge_request', 'event_type': 'merge_request',
          'user': {'id': 1, 'name': 'Administrator', 'username': 'root'},
          'project': project,
          'object_attributes': {'id': 99, 'iid': 1, 'target_branch': 'main',
                                'source_branch': 'main', 'source_project_id': 15,
                                'target_project_id': 15, 'title': 'MS-Viewport',
                                'state': 'opened', 'action': 'open',
                                'last_commit': {'id': gsha, 'message': 'gitlab push\n'}},
          'repository': {'name': 'proj'}}
    assert deliver(c, 'gitlab', 'Merge Request Hook', mr)[0] == 202
    settled(c, 'group/sub/proj', 3)
    runs = runs_of(c, 'group/sub/proj')
    assert len(runs) == 3 and runs[0]['event'] == 'pull_request' and \
        runs[0]['ref'] == 'refs/merge-requests/1/head', runs
    status, v = deliver(c, 'gitlab', 'Note Hook', {'object_kind': 'note', 'project': project})
    assert status == 200 and v['state'] == 'ignored', (status, v)


def test_dispatch():
    c = coordinator()
    path, sha = new_repo({'.github/workflows/deploy.yml': DISPATCH,
                          '.github/workflows/ci.yml': CI}, 'acme/deploy')
    add_repo(c, 'acme/deploy', path)
    bad = [(['-f', 'target=moon'], 'must be one of: staging, production'),
           ([], "input 'target' is required"),
           (['-f', 'target=staging', '-f', 'dry_run=maybe'], 'boolean'),
           (['-f', 'target=staging', '-f', 'replicas=many'], 'number'),
           (['-f', 'target=staging', '-f', 'colour=red'], "unexpected input 'colour'")]
    for args, msg in bad:
        r = cli(c, 'dispatch', 'acme/deploy', 'deploy.yml', '--ref', 'main', *args, check=1)
        assert msg in r.stderr and '422' in r.stderr, (args, kiln.describe(r))
    r = cli(c, 'dispatch', 'acme/deploy', 'ci.yml', '--ref', 'main', check=1)
    assert 'no workflow_dispatch trigger' in r.stderr, kiln.describe(r)
    r = cli(c, 'dispatch', 'acme/deploy', 'nope.yml', '--ref', 'main', check=1)
    assert 'nope.yml' in r.stderr, kiln.describe(r)
    r = cli(c, 'dispatch', 'acme/deploy', 'deploy.yml', '--ref', 'no-such-branch',
            '-f', 'target=staging', check=1)
    r = cli(c, 'dispatch', 'acme/nothere', 'deploy.yml', check=1)
    assert '404' in r.stderr, kiln.describe(r)
    assert runs_of(c, 'acme/deploy') == []
    r = cli(c, 'dispatch', 'acme/deploy', 'deploy.yml', '--ref', 'main', '-f', 'target=production',
            '-f', 'replicas=3')
    run_id = int(r.stdout.strip().splitlines()[-1])
    run = c.run(run_id)
    assert run['event'] == 'workflow_dispatch' and run['sha'] == sha, run
    assert run['ref'] == 'refs/heads/main' and run['repository'] == 'acme/deploy', run
    r = cli(c, 'dispatch', 'acme/deploy', '.github/workflows/deploy.yml', '-f',
            'target=staging', '--json')
    v = json.loads(r.stdout)
    assert len(v['runs']) == 1, v
    return run_id


def test_dispatch_inputs_reach_the_job():
    c = coordinator()
    agent = kiln.Agent(c.bus, name='wh-agent', labels='linux').start()
    R.watch(agent)
    try:
        path, sha = new_repo({'.github/workflows/deploy.yml': DISPATCH,
                              '.github/workflows/show.yml': SHOW_EVENT}, 'acme/live')
        add_repo(c, 'acme/live', path)
        r = cli(c, 'dispatch', 'acme/live', 'deploy.yml', '-f', 'target=production',
                '-f', 'replicas=3', '-f', 'dry_run=false')
        run = c.wait_run_done(int(r.stdout.split()[-1]))
        assert run['conclusion'] == 'success', run
        texts = [l['text'] for l in c.run_log(run['id'])]
        assert 'deploy production 3 false' in texts, texts
        # a push: github.event is the payload, GITHUB_EVENT_PATH its file
        sha2 = kiln.commit(path, 'show me')
        p = push_payload('acme/live', path, 'refs/heads/main', sha, sha2, message='show me')
        assert deliver(c, 'github', 'push', p)[0] == 202
        runs = kiln.wait_for(lambda: [x for x in runs_of(c, 'acme/live')
                                      if x['event'] == 'push'], what='push run')
        run = c.wait_run_done(runs[0]['id'])
        assert run['conclusion'] == 'success', run
        texts = [l['text'] for l in c.run_log(run['id'])]
        assert 'msg=show me' in texts, texts
        assert 'repo=acme/live actor=mona ref=refs/heads/main' in texts, texts
        assert 'pusher=mona' in texts, texts
    finally:
        agent.stop()


def test_schedule():
    c = coordinator()
    path, sha = new_repo({'.github/workflows/nightly.yml': NIGHTLY,
                          '.github/workflows/ci.yml': CI}, 'acme/cron')
    add_repo(c, 'acme/cron', path)

    def triggers():
        repo = [x for x in c.get('/api/v1/repos')['repos'] if x['name'] == 'acme/cron'][0]
        return repo['triggers']
    t = kiln.wait_for(triggers, what='the schedules of the default branch')
    assert t == [{'workflow': '.github/workflows/nightly.yml', 'kind': 'cron',
                  'value': '30 5 * * 1'}], t
    monday_0530 = 1714973400 * 1000   # 2024-05-06 05:30:00 UTC, a Monday
    status, v = c.api('POST', '/api/v1/schedules/tick', {'at_ms': monday_0530 + 60000})
    assert status == 200 and v['fired'] == 0, v
    status, v = c.api('POST', '/api/v1/schedules/tick', {'at_ms': monday_0530 + 15000})
    assert status == 200 and v['fired'] == 1, v
    status, v = c.api('POST', '/api/v1/schedules/tick', {'at_ms': monday_0530})  # same minute
    assert v['fired'] == 0, v
    runs = kiln.wait_for(lambda: runs_of(c, 'acme/cron'), what='the scheduled run')
    assert len(runs) == 1 and runs[0]['event'] == 'schedule' and runs[0]['name'] == 'nightly'
    assert runs[0]['ref'] == 'refs/heads/main' and runs[0]['sha'] == sha, runs
    # a push to the default branch that drops the schedule updates what is stored
    sha2 = kiln.commit(path, 'no more nightly', {'.github/workflows/nightly.yml':
                                                 NIGHTLY.replace('30 5 * * 1', '0 0 1 1 *')})
    p = push_payload('acme/cron', path, 'refs/heads/main', sha, sha2)
    assert deliver(c, 'github', 'push', p)[0] == 202
    kiln.wait_for(lambda: [x for x in triggers() if x['value'] == '0 0 1 1 *'],
                  what='the new schedule')
    status, v = c.api('POST', '/api/v1/schedules/tick', {'at_ms': monday_0530 + 7 * 86400000})
    assert v['fired'] == 0, v


WR_A = '''\
name: build
on: push
jobs:
  a:
    runs-on: linux
    steps:
      - run: echo building
'''

WR_B = '''\
name: after-build
on:
  workflow_run:
    workflows: [build]
    types: [completed]
    branches: [main]
jobs:
  b:
    runs-on: linux
    steps:
      - run: echo "after ${{ github.event.workflow_run.name }} ${{ github.event.workflow_run.conclusion }}"
'''

RD = '''\
name: on-dispatch
on:
  repository_dispatch:
    types: [deploy]
jobs:
  d:
    runs-on: linux
    steps:
      - run: echo "rd ${{ github.event.client_payload.env }}"
'''


def test_workflow_run_and_repository_dispatch():
    c = coordinator()
    agent = kiln.Agent(c.bus, name='wr-agent', labels='linux').start()
    R.watch(agent)
    try:
        path, sha = new_repo({'.github/workflows/build.yml': WR_A,
                              '.github/workflows/after.yml': WR_B,
                              '.github/workflows/rd.yml': RD}, 'acme/chain')
        add_repo(c, 'acme/chain', path)
        kiln.wait_for(lambda: [x for x in c.get('/api/v1/repos')['repos']
                               if x['name'] == 'acme/chain' and x['triggers']],
                      what='the workflow_run listener')
        sha2 = kiln.commit(path, 'go')
        p = push_payload('acme/chain', path, 'refs/heads/main', sha, sha2)
        assert deliver(c, 'github', 'push', p)[0] == 202
        after = kiln.wait_for(lambda: [x for x in runs_of(c, 'acme/chain')
                                       if x['event'] == 'workflow_run'], timeout=60,
                              what='the workflow_run run')
        assert len(after) == 1 and after[0]['name'] == 'after-build', after
        run = c.wait_run_done(after[0]['id'])
        assert run['conclusion'] == 'success', run
        texts = [l['text'] for l in c.run_log(run['id'])]
        assert 'after build success' in texts, texts
        # repository_dispatch: the types filter
        status, v = c.api('POST', '/api/v1/repos/acme%2Fchain/repository_dispatch',
                          {'event_type': 'other'})
        assert status == 202, (status, v)
        status, v = c.api('POST', '/api/v1/repos/acme/chain/repository_dispatch',
                          {'event_type': 'deploy', 'client_payload': {'env': 'prod'}})
        assert status == 202, (status, v)
        rd = kiln.wait_for(lambda: [x for x in runs_of(c, 'acme/chain')
                                    if x['event'] == 'repository_dispatch'], what='rd run')
        run = c.wait_run_done(rd[0]['id'])
        texts = [l['text'] for l in c.run_log(run['id'])]
        assert 'rd prod' in texts, texts
        time.sleep(1.5)
        assert len([x for x in runs_of(c, 'acme/chain')
                    if x['event'] == 'repository_dispatch']) == 1
        status, v = c.api('POST', '/api/v1/repos/acme/chain/repository_dispatch', {})
        assert status == 400, (status, v)
    finally:
        agent.stop()


def test_restart_loses_nothing():
    """kill -9 between the webhook's answer and the run's dispatch: the delivery is in the
    store, and the restarted coordinator plans it and the run completes."""
    c = kiln.Coordinator().start()
    R.watch(c)
    path, sha = new_repo({'.github/workflows/ci.yml': CI}, 'acme/crash')
    add_repo(c, 'acme/crash', path)
    settled(c, 'acme/crash', 1)  # the first read of the default branch is done
    # 1. the repository is unreachable: the delivery stays pending (retried with backoff)
    hidden = path + '.hidden'
    os.rename(path, hidden)
    p = push_payload('acme/crash', path, 'refs/heads/main', ZERO, sha, created=True)
    status, v = deliver(c, 'github', 'push', p, delivery='crash-1')
    assert status == 202, (status, v)
    kiln.wait_for(lambda: deliveries(c, 'acme/crash')[0]['attempts'] >= 1, what='a failed try')
    c.kill()
    os.rename(hidden, path)
    c.restart()
    runs = kiln.wait_for(lambda: runs_of(c, 'acme/crash'), what='the run after the restart')
    assert len(runs) == 1 and runs[0]['sha'] == sha, runs
    # 2. a run planned, not yet dispatched (no agent): killed, restarted, then it runs
    sha2 = kiln.commit(path, 'second')
    p = push_payload('acme/crash', path, 'refs/heads/main', sha, sha2)
    assert deliver(c, 'github', 'push', p, delivery='crash-2')[0] == 202
    c.kill()
    c.restart()
    second = kiln.wait_for(lambda: [x for x in runs_of(c, 'acme/crash') if x['sha'] == sha2],
                           what='the second run')
    assert len(second) == 1, second
    # redeliveries after the restart are still duplicates
    status, v = deliver(c, 'github', 'push', p, delivery='crash-2')
    assert status == 200 and v['state'] == 'duplicate', (status, v)
    agent = kiln.Agent(c.bus, name='crash-agent', labels='linux').start()
    R.watch(agent)
    try:
        for r in runs_of(c, 'acme/crash'):
            assert c.wait_run_done(r['id'])['conclusion'] == 'success'
    finally:
        agent.stop()
    assert len(runs_of(c, 'acme/crash')) == 2
    c.stop()


def test_old_database_migrates():
    """A schema-3 store (runs without the trigger columns) opens and keeps its runs."""
    import sqlite3
    data = kiln.tempdir('kiln-old-')
    db = sqlite3.connect(os.path.join(data, 'kiln.db'))
    db.executescript('''
        CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT);
        INSERT INTO meta VALUES('schema', '3');
        CREATE TABLE runs(id INTEGER PRIMARY KEY, number INTEGER NOT NULL, repo TEXT NOT NULL,
          ref TEXT NOT NULL, sha TEXT NOT NULL, event TEXT NOT NULL, workflow TEXT NOT NULL,
          name TEXT NOT NULL, worktree INTEGER NOT NULL DEFAULT 0, concurrency TEXT,
          cancel_in_progress INTEGER NOT NULL DEFAULT 0, state TEXT NOT NULL DEFAULT 'queued',
          conclusion TEXT NOT NULL DEFAULT '', created_ms INTEGER NOT NULL, started_ms INTEGER,
          finished_ms INTEGER);
        INSERT INTO runs(number, repo, ref, sha, event, workflow, name, state, conclusion,
          created_ms) VALUES(1, '/srv/old', 'refs/heads/main', 'abc', 'push', 'ci.yml', 'ci',
          'completed', 'success', 1);
    ''')
    db.commit()
    db.close()
    c = kiln.Coordinator(data=data).start()
    R.watch(c)
    runs = c.runs()
    assert len(runs) == 1 and runs[0]['repository'] == '/srv/old', runs
    db = sqlite3.connect(os.path.join(data, 'kiln.db'))
    cols = [r[1] for r in db.execute('PRAGMA table_info(runs)')]
    assert 'repo_id' in cols and 'payload' in cols and 'fork' in cols, cols
    assert db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()[0] >= '4'
    # the old completed run sends no workflow_run event
    assert db.execute('SELECT wr_state FROM runs').fetchone()[0] == 2
    db.close()
    c.stop()


if __name__ == '__main__':
    only = sys.argv[1:]
    for t in [test_repo_cli, test_push_creates_run, test_refused, test_duplicates_and_ignored,
              test_skip_ci, test_branch_and_tag_filters, test_paths_filters, test_pull_request,
              test_gitea_and_gitlab, test_dispatch, test_dispatch_inputs_reach_the_job,
              test_schedule, test_workflow_run_and_repository_dispatch,
              test_restart_loses_nothing, test_old_database_migrates]:
        if not only or t.__name__ in only:
            R.run(t)
    if _coord:
        _coord.stop()
    R.finish()
