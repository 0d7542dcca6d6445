"""
A coordinator and two agents (capacity 1 each) as real processes; a workflow
a -> {b, c} -> d submitted with `kiln submit` and followed with `kiln logs -f`;
then a run where b fails, and a job whose runs-on no agent has.
"""
import json
import os
import re
import sys

sys.path.insert(0, os.path.join(os.environ['KILN_SRC'], 'tests', 'harness'))
import kiln  # noqa: E402

N = 50  # numbered lines per job

JOB_SCRIPT = '''\
      - name: start
        run: echo "$GITHUB_JOB start $(date +%s%N)"
      - name: lines
        run: for i in $(seq 1 {n}); do echo "$GITHUB_JOB line $i"; done
      - name: end
        run: echo "$GITHUB_JOB end $(date +%s%N)"
'''.format(n=N)

DAG = '''\
name: dag
on: push
jobs:
  a:
    runs-on: [linux, x64]
    steps:
      - name: env
        run: |
          echo "env CI=$CI"
          echo "env SHA=$GITHUB_SHA"
          echo "env REF=$GITHUB_REF"
          echo "env RUN_ID=$GITHUB_RUN_ID"
          echo "env JOB=$GITHUB_JOB"
          echo "env WS_EMPTY=$(ls -A "$GITHUB_WORKSPACE" | wc -l)"
{steps}
  b:
    needs: a
    runs-on: linux
    steps:
{steps}
  c:
    needs: [a]
    runs-on: [linux]
    steps:
{steps}
  d:
    needs: [b, c]
    runs-on: [linux, x64]
    steps:
      - uses: actions/checkout@v4
      - name: checked out
        run: cat marker.txt
{steps}
'''.format(steps=JOB_SCRIPT.rstrip('\n'))

FAIL = '''\
name: fails
on: push
jobs:
  a:
    runs-on: linux
    steps:
      - run: echo "a ok"
  b:
    needs: a
    runs-on: linux
    steps:
      - name: print then fail
        run: |
          for i in $(seq 1 5); do echo "b line $i"; done
          exit 1
      - name: never
        run: echo "b must not get here"
  c:
    needs: a
    runs-on: linux
    steps:
      - run: echo "c ok"
  d:
    needs: [b, c]
    runs-on: linux
    steps:
      - run: echo "d must not run"
'''

GPU = '''\
name: gpu
on: push
jobs:
  quick:
    runs-on: linux
    steps:
      - run: echo quick
  gpu:
    runs-on: [linux, gpu]
    steps:
      - run: echo "gpu must not run"
'''

SHA = '''\
name: sha
on: push
jobs:
  show:
    runs-on: linux
    steps:
      - uses: actions/checkout@v4
      - run: |
          echo "marker=$(cat marker.txt)"
          echo "sha=$GITHUB_SHA"
          echo "head=$(git rev-parse HEAD 2>/dev/null || echo none)"
'''

MARKER = 'committed marker 1234\n'

R = kiln.Runner()
state = {}


def setup():
    repo, sha = kiln.make_repo({
        '.github/workflows/dag.yml': DAG,
        '.github/workflows/fails.yml': FAIL,
        '.github/workflows/gpu.yml': GPU,
        '.github/workflows/sha.yml': SHA,
        'marker.txt': MARKER,
    })
    coord = kiln.Coordinator().start()
    agents = [kiln.Agent(coord.bus, name='agent-%d' % i, capacity=1, labels='linux,x64').start()
              for i in (1, 2)]
    state.update(repo=repo, sha=sha, coord=coord, agents=agents, server=coord.http)


def test_agents_registered():
    coord = state['coord']
    R.watch(coord, *state['agents'])
    online = coord.wait_agents(2)
    assert sorted(a['name'] for a in online) == ['agent-1', 'agent-2'], online
    for a in online:
        assert a['labels'] == ['linux', 'x64'], a
        assert a['capacity'] == 1, a
        assert a['id'], a
    assert len({a['id'] for a in online}) == 2, online
    r = kiln.run_cli('agents', '--json', server=state['server'], check=0)
    assert sorted(a['name'] for a in json.loads(r.stdout)['agents']) == ['agent-1', 'agent-2']


def submit(workflow, relative=False):
    # relative: `--repo .` from inside the repository (the CLI sends the absolute path)
    r = kiln.run_cli('submit', '--repo', '.' if relative else state['repo'], '--ref', 'main',
                     '-W', workflow, server=state['server'], check=0,
                     cwd=state['repo'] if relative else None)
    lines = r.stdout.strip().splitlines()
    assert lines and re.fullmatch(r'\d+', lines[-1]), kiln.describe(r)
    return int(lines[-1])


def numbered(lines, job):
    """The numbers of `job line N` lines, in order."""
    out = []
    for l in lines:
        m = re.fullmatch(r'%s line (\d+)' % re.escape(job), l['text'])
        if m:
            out.append(int(m.group(1)))
    return out


def marker(lines, job, what):
    found = [l['text'] for l in lines if l['text'].startswith('%s %s ' % (job, what))]
    assert len(found) == 1, (job, what, found)
    return int(found[0].split()[-1])


def test_dag_success():
    coord = state['coord']
    R.watch(coord, *state['agents'])
    coord.wait_agents(2)
    # the gpu run goes first, so both agents have plenty of chances to (wrongly) take it
    state['gpu_run'] = submit('gpu.yml')
    run_id = submit('dag.yml')
    state['dag_run'] = run_id

    follow = kiln.run_cli('logs', '-f', run_id, server=state['server'], timeout=60)
    assert follow.returncode == 0, kiln.describe(follow)

    run = coord.run(run_id)
    assert run['state'] == 'completed' and run['conclusion'] == 'success', run
    assert run['sha'] == state['sha'], run
    assert run['workflow'] == '.github/workflows/dag.yml', run
    assert run['name'] == 'dag', run
    jobs = {j['key']: j for j in run['jobs']}
    assert sorted(jobs) == ['a', 'b', 'c', 'd'], list(jobs)
    agent_ids = {a['id'] for a in coord.agents()}
    for j in jobs.values():
        assert j['state'] == 'completed' and j['conclusion'] == 'success', j
        assert j['attempt'] == 1, j
        assert j['agent_id'] in agent_ids, (j, agent_ids)
        assert j['started_ms'] is not None and j['finished_ms'] is not None, j
        assert j['started_ms'] <= j['finished_ms'], j
        for s in j['steps']:
            assert s['state'] == 'completed' and s['conclusion'] == 'success', (j['key'], s)
            assert s['exit_code'] == 0, (j['key'], s)
    assert [n for n in jobs['d']['needs']] == ['b', 'c'], jobs['d']
    assert jobs['b']['needs'] == ['a'] and jobs['c']['needs'] == ['a'], jobs

    # the order respects needs, by the coordinator's clock...
    for key, j in jobs.items():
        for need in j['needs']:
            assert j['started_ms'] >= jobs[need]['finished_ms'], (
                '%s started at %d before its need %s finished at %d'
                % (key, j['started_ms'], need, jobs[need]['finished_ms']))
    assert run['started_ms'] <= min(j['started_ms'] for j in jobs.values())
    assert run['finished_ms'] >= max(j['finished_ms'] for j in jobs.values())

    # ...and by the steps' own clocks
    logs = {key: coord.job_log(j['id']) for key, j in jobs.items()}
    start = {k: marker(logs[k], k, 'start') for k in jobs}
    end = {k: marker(logs[k], k, 'end') for k in jobs}
    for key, j in jobs.items():
        assert start[key] < end[key]
        for need in j['needs']:
            assert start[key] > end[need], '%s ran before its need %s ended' % (key, need)
    # capacity 1: the jobs of one agent never overlap
    by_agent = {}
    for key, j in jobs.items():
        by_agent.setdefault(j['agent_id'], []).append((start[key], end[key], key))
    for spans in by_agent.values():
        spans.sort()
        for (s1, e1, k1), (s2, e2, k2) in zip(spans, spans[1:]):
            assert e1 < s2, 'jobs %s and %s overlap on one agent of capacity 1' % (k1, k2)
    print('agents used: %s' % {k: j['agent_id'] for k, j in jobs.items()})

    # each job's log: numbered lines in order, seq 1..N contiguous, one attempt
    for key, lines in logs.items():
        assert [l['seq'] for l in lines] == list(range(1, len(lines) + 1)), (
            key, [l['seq'] for l in lines])
        assert numbered(lines, key) == list(range(1, N + 1)), (key, numbered(lines, key))
        for l in lines:
            assert l['stream'] in ('stdout', 'stderr', 'system'), l
        steps = [l['step'] for l in lines]
        assert steps == sorted(steps), (key, steps)
        lj = coord.get('/api/v1/jobs/%d/log?offset=0' % jobs[key]['id'])
        assert lj['done'] is True and lj['attempt'] == 1 and lj['job_id'] == jobs[key]['id'], lj
        # paging from an offset gives the rest
        part = coord.get('/api/v1/jobs/%d/log?offset=%d' % (jobs[key]['id'], len(lines) - 3))
        assert [l['seq'] for l in part['lines']] == [len(lines) - 2, len(lines) - 1, len(lines)]
        assert part['next'] == len(lines), part

    # the step environment
    env = dict(l['text'][4:].split('=', 1) for l in logs['a'] if l['text'].startswith('env '))
    assert env == {'CI': 'true', 'SHA': state['sha'], 'REF': 'refs/heads/main',
                   'RUN_ID': str(run_id), 'JOB': 'a', 'WS_EMPTY': '0'}, env
    # d checked the repository out
    assert any(l['text'] == MARKER.strip() for l in logs['d']), logs['d']

    # the run log has the same lines, each job's in order
    rl = coord.run_log(run_id)
    for key, j in jobs.items():
        mine = [l for l in rl if l['job_id'] == j['id']]
        assert all(l['job'] == key and l['attempt'] == 1 for l in mine), mine[:3]
        assert [(l['seq'], l['text']) for l in mine] == [(l['seq'], l['text']) for l in logs[key]]
    assert len(rl) == sum(len(v) for v in logs.values())
    final = coord.get('/api/v1/runs/%d/log?offset=%d' % (run_id, len(rl)))
    assert final['done'] is True and final['lines'] == [] and final['next'] == len(rl), final

    # `kiln logs -f` printed every line, as [job] text, each job's in order
    out = follow.stdout.splitlines()
    for key, lines in logs.items():
        want = ['[%s] %s%s' % (key, '==> ' if l['stream'] == 'system' else '', l['text'])
                for l in lines]
        got = [o for o in out if o.startswith('[%s] ' % key)]
        assert got == want, 'kiln logs -f output for %s differs:\n%s\nvs\n%s' % (
            key, '\n'.join(got[:10]), '\n'.join(want[:10]))
        for i in range(1, N + 1):
            assert '[%s] %s line %d' % (key, key, i) in out
    assert len(out) == len(rl), (len(out), len(rl))

    # non-following `kiln logs` prints the same
    plain = kiln.run_cli('logs', run_id, server=state['server'], check=0)
    assert plain.stdout.splitlines() == out


def test_failure_propagates():
    coord = state['coord']
    R.watch(coord, *state['agents'])
    run_id = submit('fails.yml', relative=True)
    state['fail_run'] = run_id
    follow = kiln.run_cli('logs', '-f', run_id, server=state['server'], timeout=60)
    assert follow.returncode == 1, kiln.describe(follow)
    out = follow.stdout.splitlines()
    for i in range(1, 6):
        assert '[b] b line %d' % i in out, kiln.describe(follow)
    assert '[a] a ok' in out and '[c] c ok' in out, kiln.describe(follow)
    assert not any('must not' in o for o in out), kiln.describe(follow)

    run = coord.run(run_id)
    assert run['state'] == 'completed' and run['conclusion'] == 'failure', run
    jobs = {j['key']: j for j in run['jobs']}
    assert jobs['a']['conclusion'] == 'success', jobs['a']
    assert jobs['c']['conclusion'] == 'success', jobs['c']
    assert jobs['b']['conclusion'] == 'failure', jobs['b']
    assert jobs['d']['conclusion'] == 'skipped', jobs['d']
    for j in jobs.values():
        assert j['state'] == 'completed', j
    assert not jobs['d']['agent_id'], jobs['d']
    assert jobs['d']['attempt'] == 0, jobs['d']
    assert coord.job_log(jobs['d']['id']) == []
    bsteps = jobs['b']['steps']
    assert bsteps[0]['conclusion'] == 'failure' and bsteps[0]['exit_code'] == 1, bsteps
    assert bsteps[1]['conclusion'] == 'skipped', bsteps
    assert all(s['conclusion'] == 'skipped' for s in jobs['d']['steps']), jobs['d']['steps']
    blog = coord.job_log(jobs['b']['id'])
    assert numbered(blog, 'b') == [1, 2, 3, 4, 5], blog

    # kiln show --json reflects it
    show = kiln.run_cli('show', run_id, '--json', server=state['server'], check=0)
    shown = json.loads(show.stdout)
    assert shown['id'] == run_id and shown['conclusion'] == 'failure', shown
    assert {j['key']: j['conclusion'] for j in shown['jobs']} == {
        'a': 'success', 'b': 'failure', 'c': 'success', 'd': 'skipped'}, shown['jobs']
    # and the human form too
    text = kiln.run_cli('show', run_id, server=state['server'], check=0).stdout
    assert 'failure' in text and 'skipped' in text, text
    # KILN_SERVER is the default server
    env_show = kiln.run_cli('show', run_id, '--json', env={'KILN_SERVER': state['server']},
                            check=0)
    assert json.loads(env_show.stdout)['conclusion'] == 'failure'


def test_unmatched_runs_on_stays_queued():
    coord = state['coord']
    R.watch(coord, *state['agents'])
    run_id = state['gpu_run']

    def quick_done():
        r = coord.run(run_id)
        q = [j for j in r['jobs'] if j['key'] == 'quick'][0]
        return r if q['state'] == 'completed' else None
    # the two other runs have completed (earlier tests followed them) after this one
    # was submitted; the matching job of this run completes too
    run = kiln.wait_for(quick_done, 30, 'job quick of the gpu run')
    jobs = {j['key']: j for j in run['jobs']}
    assert jobs['quick']['conclusion'] == 'success', jobs['quick']
    gpu = jobs['gpu']
    assert gpu['state'] == 'queued', gpu
    assert gpu['conclusion'] == '' and gpu['attempt'] == 0 and not gpu['agent_id'], gpu
    assert gpu['runs_on'] == ['linux', 'gpu'], gpu
    assert run['state'] in ('queued', 'running') and run['conclusion'] == '', run
    # still queued once both agents are idle and holding polls
    coord.wait_agents(2)
    assert coord.get('/api/v1/jobs/%d' % gpu['id'])['state'] == 'queued'
    # the job log of a job that never ran: empty, not done; a bounded wait answers
    lj = coord.get('/api/v1/jobs/%d/log?offset=0&wait=1' % gpu['id'], timeout=10)
    assert lj['lines'] == [] and lj['done'] is False, lj


def test_runs_listed():
    coord = state['coord']
    r = kiln.run_cli('runs', '--json', server=state['server'], check=0)
    runs = {x['id']: x for x in json.loads(r.stdout)['runs']}
    want = {state['gpu_run']: None, state['dag_run']: 'success', state['fail_run']: 'failure'}
    assert set(runs) == set(want), runs
    repo = os.path.realpath(state['repo'])
    for rid, concl in want.items():
        x = runs[rid]
        assert x['repository'] == repo, x
        assert x['ref'] in ('refs/heads/main', 'main'), x
        assert x['sha'] == state['sha'], x
        assert x['event'] == 'push', x
        if concl:
            assert x['state'] == 'completed' and x['conclusion'] == concl, x
        else:
            assert x['state'] in ('queued', 'running'), x
    # numbers count per repository
    assert sorted(x['number'] for x in runs.values()) == [1, 2, 3], runs
    # the table form names each run
    table = kiln.run_cli('runs', server=state['server'], check=0).stdout
    for rid in want:
        assert re.search(r'^%d\s' % rid, table, re.M), table
    assert coord.runs() == json.loads(r.stdout)['runs']


def test_new_commit_and_pinned_sha():
    """A later commit on main is picked up (the coordinator's mirror is refreshed), and
    --sha pins a run to an older commit: checkout gives that commit's files."""
    coord = state['coord']
    R.watch(coord, *state['agents'])
    first = state['sha']
    second = kiln.commit(state['repo'], 'second', files={'marker.txt': 'second marker\n'})

    def show(run_id):
        follow = kiln.run_cli('logs', '-f', run_id, server=state['server'], timeout=60)
        assert follow.returncode == 0, kiln.describe(follow)
        return dict(l[len('[show] '):].split('=', 1) for l in follow.stdout.splitlines()
                    if l.startswith('[show] ') and '=' in l and '==>' not in l)

    latest = submit('sha.yml')
    got = show(latest)
    assert coord.run(latest)['sha'] == second, coord.run(latest)
    assert got['marker'] == 'second marker' and got['sha'] == second, got

    r = kiln.run_cli('submit', '--repo', state['repo'], '--ref', 'main', '--sha', first,
                     '-W', 'sha.yml', server=state['server'], check=0)
    pinned = int(r.stdout.split()[-1])
    got = show(pinned)
    assert coord.run(pinned)['sha'] == first, coord.run(pinned)
    assert got['marker'] == MARKER.strip() and got['sha'] == first, got
    if got['head'] != 'none':
        assert got['head'] == first, got


def teardown():
    for a in state.get('agents', []):
        assert a.stop() == 0, a.log()
    c = state.get('coord')
    if c:
        assert c.stop() == 0, c.log()


def main():
    R.run(setup)
    if R.failed:
        R.finish()
    R.run(test_agents_registered)
    R.run(test_dag_success)
    R.run(test_failure_propagates)
    R.run(test_unmatched_runs_on_stays_queued)
    R.run(test_runs_listed)
    R.run(test_new_commit_and_pinned_sha)
    R.run(teardown)
    R.finish()


if __name__ == '__main__':
    main()
