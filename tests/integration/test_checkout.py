"""
actions/checkout@v4 with its inputs, on repositories made by the test: `kiln run`
(local mode, in process) and a real coordinator + agent, asserting what the steps see
(files, git rev-parse HEAD, git branch --show-current, git describe, git status).
Everything is local: repositories are directories next to each other, as
<tmp>/forge/org/<name>, so that `repository: org/<name>` resolves beside the job's own.
"""
import os
import re
import sys

sys.path.insert(0, os.path.join(os.environ['KILN_SRC'], 'tests', 'harness'))
import kiln  # noqa: E402

R = kiln.Runner()
S = {}

SHOW = '''\
      - run: |
          echo "head=$(git rev-parse HEAD)"
          echo "branch=[$(git branch --show-current)]"
          echo "status=$(git status --porcelain | wc -l)"
          echo "origin=$(git remote get-url origin)"
          echo "a=$(cat a.txt)"
'''

OK = '''\
name: checkout
on: push
jobs:
  default:
    runs-on: linux
    steps:
      - uses: actions/checkout@v4
      - run: |
          echo "a=$(cat a.txt)"
          echo "untracked=$(cat untracked.txt)"
  branch:
    runs-on: linux
    steps:
      - uses: actions/checkout@v4
        with:
          ref: feature
{show}
  tag:
    runs-on: linux
    steps:
      - uses: actions/checkout@v4
        with:
          ref: v1
{show}
          echo "describe=$(git describe)"
  sha:
    runs-on: linux
    steps:
      - uses: actions/checkout@v4
        with:
          ref: {c1}
{show}
  describe:
    runs-on: linux
    steps:
      - uses: actions/checkout@v4
        with:
          ref: main
          fetch-depth: 0
{show}
          echo "describe=$(git describe --tags --abbrev=7)"
          echo "count=$(git rev-list --count HEAD)"
  shallow:
    runs-on: linux
    steps:
      - uses: actions/checkout@v4
        with:
          ref: main
          fetch-depth: 1
      - run: |
          echo "tags=[$(git tag | tr '\\n' ' ')]"
          echo "count=$(git rev-list --count HEAD)"
  other:
    runs-on: linux
    steps:
      - uses: actions/checkout@v4
        with:
          repository: org/lib
          path: deps/lib
          token: tok-abc123-secret
          persist-credentials: true
      - working-directory: deps/lib
        run: |
          echo "lib=$(cat lib.txt)"
          echo "branch=[$(git branch --show-current)]"
          echo "status=$(git status --porcelain | wc -l)"
          echo "origin=$(git remote get-url origin)"
          if grep -rq tok-abc123 .git; then echo "token=in .git"; else echo "token=nowhere"; fi
  subs:
    runs-on: linux
    steps:
      - uses: actions/checkout@v4
        with:
          repository: org/super
          path: super
          submodules: recursive
      - working-directory: super
        run: |
          echo "lib=$(cat libs/lib/lib.txt)"
          echo "deep=$(cat libs/lib/deep/deep.txt)"
          echo "libhead=$(git -C libs/lib rev-parse HEAD)"
          echo "status=$(git status --porcelain | wc -l)"
          echo "substatus=$(git submodule status --recursive | grep -c '^ ')"
  clean:
    runs-on: linux
    steps:
      - uses: actions/checkout@v4
        with:
          ref: main
      - run: |
          echo junk > junk.txt
          echo edited > a.txt
      - uses: actions/checkout@v4
        with:
          ref: v1
          clean: false
      - run: |
          echo "after-keep junk=$(cat junk.txt 2>/dev/null || echo gone) a=$(cat a.txt)"
          echo "after-keep status=$(git status --porcelain | tr '\\n' ' ')"
      - uses: actions/checkout@v4
        with:
          ref: v1
      - run: |
          echo "after-clean junk=$(cat junk.txt 2>/dev/null || echo gone) a=$(cat a.txt)"
'''

FAIL = '''\
name: failing
on: push
jobs:
  escape:
    runs-on: linux
    steps:
      - uses: actions/checkout@v4
        with:
          path: ../../outside
      - run: echo "must not run"
  badref:
    runs-on: linux
    steps:
      - uses: actions/checkout@v4
        with:
          ref: no-such-branch
      - run: echo "must not run"
  warn:
    runs-on: linux
    steps:
      - uses: actions/checkout@v4
        with:
          ref: main
          lfs: true
          sparse-checkout: src
      - run: echo "warn ran"
'''


def values(lines):
    """{key: value} from `key=value` lines."""
    out = {}
    for l in lines:
        m = re.match(r'([\w-]+(?: [\w-]+)?)=(.*)$', l)
        if m:
            out[m.group(1)] = m.group(2)
    return out


def log_lines(out, job):
    """The lines of `job`, without the `[job] ` prefix nor the `==> ` of kiln's own lines."""
    p = '[%s] ' % job
    lines = [l[len(p):] for l in out.splitlines() if l.startswith(p)]
    return [l[4:] if l.startswith('==> ') else l for l in lines]


def setup():
    tmp = os.path.realpath(kiln.tempdir('kiln-checkout-'))
    org = os.path.join(tmp, 'forge', 'org')
    deep, d1 = kiln.make_repo({'deep.txt': 'deep\n'}, path=os.path.join(org, 'deep'))
    lib = os.path.join(org, 'lib')
    os.makedirs(lib)
    kiln.git(lib, 'init', '-q', '-b', 'trunk')
    kiln.write_files(lib, {'lib.txt': 'lib\n'})
    kiln.git(lib, '-c', 'protocol.file.allow=always', 'submodule', 'add', '-q', '../deep', 'deep')
    l1 = kiln.commit(lib, 'l1')
    sup = os.path.join(org, 'super')
    os.makedirs(sup)
    kiln.git(sup, 'init', '-q', '-b', 'main')
    kiln.write_files(sup, {'super.txt': 'super\n'})
    kiln.git(sup, '-c', 'protocol.file.allow=always', 'submodule', 'add', '-q', '../lib',
             'libs/lib')
    kiln.commit(sup, 's1')
    kiln.commit(lib, 'l2', files={'lib.txt': 'lib moved on\n'})

    app = os.path.join(org, 'app')
    _, c1 = kiln.make_repo({'a.txt': 'one\n'}, path=app, message='c1')
    kiln.git(app, 'tag', '-a', 'v1', '-m', 'release 1')
    kiln.git(app, 'checkout', '-q', '-b', 'feature')
    f1 = kiln.commit(app, 'f1', files={'feature.txt': 'feature\n'})
    kiln.git(app, 'checkout', '-q', 'main')
    c2 = kiln.commit(app, 'c2', files={'a.txt': 'two\n'})
    c3 = kiln.commit(app, 'c3', files={
        '.github/workflows/ok.yml': OK.format(show=SHOW.rstrip('\n'), c1=c1),
        '.github/workflows/fail.yml': FAIL})
    S.update(tmp=tmp, org=org, app=app, lib=lib, deep=deep, sup=sup, c1=c1, c2=c2, c3=c3,
             f1=f1, l1=l1, d1=d1)


def local(*args, expect=None, timeout=60):
    tmp = kiln.tempdir('kiln-tmp-')
    r = kiln.run_cli('run', S['app'], *args, env={'TMPDIR': tmp}, timeout=timeout)
    if expect is not None:
        assert r.returncode == expect, 'expected exit %d, got:\n%s' % (expect, kiln.describe(r))
    return r


def test_local_run():
    # the developer's working tree, with an uncommitted file, for the default checkout
    kiln.write_files(S['app'], {'untracked.txt': 'not committed\n'})
    try:
        r = local('-W', 'ok.yml', expect=0)
    finally:
        os.unlink(os.path.join(S['app'], 'untracked.txt'))
    out = r.stdout
    app = S['app']

    v = values(log_lines(out, 'default'))
    assert v['a'] == 'two', out  # c3 only added the workflows
    assert v['untracked'] == 'not committed', out

    v = values(log_lines(out, 'branch'))
    assert v['head'] == S['f1'] and v['branch'] == '[feature]', out
    assert v['status'] == '0' and v['origin'] == app, out

    v = values(log_lines(out, 'tag'))
    assert v['head'] == S['c1'] and v['branch'] == '[]' and v['a'] == 'one', out
    assert v['describe'] == 'v1', out

    v = values(log_lines(out, 'sha'))
    assert v['head'] == S['c1'] and v['branch'] == '[]' and v['status'] == '0', out

    v = values(log_lines(out, 'describe'))
    assert v['head'] == S['c3'] and v['branch'] == '[main]', out
    assert v['describe'] == 'v1-2-g' + S['c3'][:7], out
    assert v['count'] == '3', out

    v = values(log_lines(out, 'shallow'))
    assert v['tags'] == '[]' and v['count'] == '3', out  # history whole; tags as on GitHub

    lines = log_lines(out, 'other')
    v = values(lines)
    assert v['lib'] == 'lib moved on' and v['branch'] == '[trunk]', out
    assert v['status'] == '0' and v['origin'] == S['lib'], out
    assert v['token'] == 'nowhere', out
    assert any(l.startswith('Checked out org/lib trunk at ') and l.endswith(
        'into deps/lib, on branch trunk') for l in lines), out
    assert 'tok-abc123' not in out and 'tok-abc123' not in r.stderr, out

    lines = log_lines(out, 'subs')
    v = values(lines)
    assert v['lib'] == 'lib' and v['deep'] == 'deep' and v['libhead'] == S['l1'], out
    assert v['status'] == '0' and v['substatus'] == '2', out
    assert any('Checked out submodule libs/lib/deep at ' + S['d1'] in l for l in lines), out

    lines = log_lines(out, 'clean')
    assert 'after-keep junk=junk a=one' in lines, out
    assert 'after-keep status=?? junk.txt ' in lines, out
    assert 'after-clean junk=gone a=one' in lines, out


def test_local_failures():
    r = local('-W', 'fail.yml', expect=1)
    out = r.stdout
    esc = log_lines(out, 'escape')
    assert any('path' in l and '../../outside' in l and 'inside the workspace' in l
               for l in esc), out
    assert 'must not run' not in '\n'.join(esc), out
    bad = log_lines(out, 'badref')
    assert any("at no-such-branch" in l and "'no-such-branch'" in l and S['app'] in l
               for l in bad), out
    warn = log_lines(out, 'warn')
    assert any(l.startswith('Warning: lfs: true') for l in warn), out
    assert any(l.startswith('Warning: sparse-checkout') for l in warn), out
    assert 'warn ran' in warn, out
    assert not os.path.exists(os.path.join(S['tmp'], 'outside')), out


def test_agent_process():
    """A coordinator and an agent as processes: the job's own repository at the job's
    commit (not the working tree), on its branch, and another repository beside it."""
    coord = kiln.Coordinator().start()
    agent = kiln.Agent(coord.bus, name='co-agent', capacity=2, labels='linux').start()
    R.watch(coord, agent)
    try:
        kiln.write_files(S['app'], {'untracked.txt': 'not for agents\n'})
        r = kiln.run_cli('submit', '--repo', S['app'], '--ref', 'main', '--sha', S['c3'],
                         '-W', 'ok.yml', server=coord.http, check=0)
        run_id = int(r.stdout.strip().splitlines()[-1])
        follow = kiln.run_cli('logs', '-f', run_id, server=coord.http, timeout=120)
        out = follow.stdout
        assert follow.returncode == 0, kiln.describe(follow)
        v = values(log_lines(out, 'default'))
        assert v['a'] == 'two' and v['untracked'] == '', out
        v = values(log_lines(out, 'branch'))
        assert v['head'] == S['f1'] and v['branch'] == '[feature]', out
        v = values(log_lines(out, 'describe'))
        assert v['describe'] == 'v1-2-g' + S['c3'][:7], out
        v = values(log_lines(out, 'subs'))
        assert v['deep'] == 'deep' and v['status'] == '0', out
        assert 'tok-abc123' not in out, out
    finally:
        os.unlink(os.path.join(S['app'], 'untracked.txt'))
        assert agent.stop() == 0, agent.log()
        assert coord.stop() == 0, coord.log()


def main():
    R.run(setup)
    if R.failed:
        R.finish()
    R.run(test_local_run)
    R.run(test_local_failures)
    R.run(test_agent_process)
    R.finish()


if __name__ == '__main__':
    main()
