"""
Acting on runs through the CLI against a real coordinator and agent: cancel
stops a running job within a second, rerun --failed makes new attempts of the
failed jobs and what needs them (old logs kept), concurrency groups hold,
replace and cancel runs as GitHub's do, an environment that wants a review
holds its job until `kiln approve` (or fails it on `kiln reject`), and a
disabled agent takes no jobs.
"""
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.environ['KILN_SRC'], 'tests', 'harness'))
import kiln  # noqa: E402

R = kiln.Runner()

GATED = '''\
name: {name}
on: push
{concurrency}
jobs:
  work:
    runs-on: linux
    steps:
      - run: |
          echo "started $(date +%s%N)"
          for i in $(seq 1 1200); do
            [ -e '{gate}' ] && break
            sleep 0.05
          done
          echo "gate seen"
'''


def cli(coord, *args, check=0):
    r = kiln.run_cli(*args, server=coord.http, env=coord_env(coord))
    assert r.returncode == check, kiln.describe(r)
    return r


def coord_env(coord):
    return {'KILN_TOKEN': getattr(coord, 'token', '') or ''}


def wait_state(coord, run_id, state, timeout=30):
    def ok():
        r = coord.run(run_id)
        return r if r['state'] == state else None
    return kiln.wait_for(ok, timeout, 'run %s to be %s' % (run_id, state), interval=0.05)


def job_of(run, key):
    return [j for j in run['jobs'] if j['key'] == key][0]


def started(coord, run_id):
    def seen():
        run = coord.run(run_id)
        j = run['jobs'][0]
        return j['state'] == 'running' and any(
            l['text'].startswith('started ') for l in coord.job_log(j['id']))
    kiln.wait_for(seen, 30, 'run %s to start its step' % run_id, interval=0.05)


def setup():
    coord = kiln.Coordinator().start()
    agent = kiln.Agent(coord.bus, capacity=2).start()
    R.watch(coord, agent)
    coord.wait_agents(1)
    return coord, agent


def test_cancel():
    gate = os.path.join(kiln.tempdir(), 'never')
    repo, _ = kiln.make_repo({'.github/workflows/w.yml': GATED.format(
        name='w', concurrency='', gate=gate)})
    coord, agent = setup()
    try:
        run_id = coord.submit(repo)['runs'][0]['id']
        started(coord, run_id)
        t0 = time.monotonic()
        r = cli(coord, 'cancel', run_id)
        assert 'cancelling' in r.stdout, r.stdout
        run = wait_state(coord, run_id, 'completed', 10)
        took = time.monotonic() - t0
        assert run['conclusion'] == 'cancelled', run
        assert job_of(run, 'work')['conclusion'] == 'cancelled', run
        print('cancel to completed: %.3f s' % took)
        assert took < 2.0, 'cancel took %.2f s' % took
        # a completed run cannot be cancelled again
        r = cli(coord, 'cancel', run_id, check=1)
        assert 'has completed' in r.stderr, r.stderr
    finally:
        agent.stop()
        coord.stop()


FLAKY = '''\
name: flaky
on: push
jobs:
  fine:
    runs-on: linux
    steps:
      - run: echo fine
  flaky:
    runs-on: linux
    steps:
      - run: |
          if [ -e '{marker}' ]; then echo "second try"; else touch '{marker}'; echo "first try"; exit 1; fi
  after:
    needs: flaky
    runs-on: linux
    steps:
      - run: echo after
'''


def test_rerun_failed():
    marker = os.path.join(kiln.tempdir(), 'tried')
    repo, _ = kiln.make_repo({'.github/workflows/f.yml': FLAKY.format(marker=marker)})
    coord, agent = setup()
    try:
        run_id = coord.submit(repo)['runs'][0]['id']
        run = coord.wait_run_done(run_id)
        assert run['conclusion'] == 'failure', run
        assert job_of(run, 'after')['conclusion'] == 'skipped', run
        # a run still going cannot be run again; this one can
        r = cli(coord, 'rerun', run_id, '--failed')
        assert '2 jobs run again' in r.stdout, r.stdout
        run = coord.wait_run_done(run_id)
        assert run['conclusion'] == 'success', run
        fine, flaky, after = (job_of(run, k) for k in ('fine', 'flaky', 'after'))
        assert fine['attempt'] == 1 and flaky['attempt'] == 2 and after['attempt'] == 1, run
        assert [l['text'] for l in coord.job_log(flaky['id']) if l['stream'] != 'system'] == \
            ['second try']
        # the first attempt's log is kept
        assert 'first try' in [l['text'] for l in coord.job_log(flaky['id'], attempt=1)]
        # and both read as plain text
        st, body = coord.request('GET', '/api/v1/jobs/%d/log.txt?attempt=1' % flaky['id'])
        assert st == 200 and b'\nfirst try\n' in body and b'\nsecond try' not in body, body
        st, body = coord.request('GET', '/api/v1/runs/%d/log.txt' % run_id)
        text = body.decode()
        assert st == 200 and '[flaky] second try\n' in text and '[fine] fine\n' in text, text
        assert '[flaky] ==> ' in text, text
        # rerunning everything makes a new attempt of every job
        cli(coord, 'rerun', run_id)
        run = coord.wait_run_done(run_id)
        assert [job_of(run, k)['attempt'] for k in ('fine', 'flaky', 'after')] == [2, 3, 2], run
    finally:
        agent.stop()
        coord.stop()


def test_concurrency():
    gdir = kiln.tempdir()
    gate = os.path.join(gdir, 'open')
    repo, _ = kiln.make_repo({
        '.github/workflows/a.yml': GATED.format(name='a', concurrency='concurrency: deploy',
                                                gate=gate)})
    coord, agent = setup()  # two slots: only the group holds the second run back
    try:
        one = coord.submit(repo)['runs'][0]['id']
        started(coord, one)
        two = coord.submit(repo)['runs'][0]['id']
        time.sleep(0.5)
        assert coord.run(two)['state'] == 'queued', coord.run(two)
        # a third replaces the pending second
        three = coord.submit(repo)['runs'][0]['id']
        run = wait_state(coord, two, 'completed')
        assert run['conclusion'] == 'cancelled', run
        assert 'higher priority' in job_of(run, 'work')['message'], run
        assert coord.run(three)['state'] == 'queued'
        # the first ends; the third goes
        open(gate, 'w').close()
        assert coord.wait_run_done(one)['conclusion'] == 'success'
        assert coord.wait_run_done(three)['conclusion'] == 'success'
        run1, run3 = coord.run(one), coord.run(three)
        assert job_of(run3, 'work')['started_ms'] >= job_of(run1, 'work')['finished_ms']
        # with cancel-in-progress a newcomer cancels the run in progress
        os.unlink(gate)
        kiln.commit(repo, files={'.github/workflows/a.yml': GATED.format(
            name='a', gate=gate,
            concurrency='concurrency:\n  group: deploy\n  cancel-in-progress: true')})
        four = coord.submit(repo)['runs'][0]['id']
        started(coord, four)
        five = coord.submit(repo)['runs'][0]['id']
        assert coord.wait_run_done(four)['conclusion'] == 'cancelled'
        started(coord, five)
        open(gate, 'w').close()
        assert coord.wait_run_done(five)['conclusion'] == 'success'
    finally:
        agent.stop()
        coord.stop()


DEPLOY = '''\
name: deploy
on: push
jobs:
  build:
    runs-on: linux
    steps:
      - run: echo built
  deploy:
    needs: build
    runs-on: linux
    environment:
      name: production
      url: https://example.invalid/app
    steps:
      - run: echo "deploying"
'''


def test_environment_review():
    repo, _ = kiln.make_repo({'.github/workflows/d.yml': DEPLOY})
    coord, agent = setup()
    try:
        r = cli(coord, 'environment', 'set', 'production', '--required-approval')
        assert 'saved' in r.stdout, r.stdout
        r = cli(coord, 'environment', 'list')
        assert 'production' in r.stdout and 'required' in r.stdout, r.stdout
        run_id = coord.submit(repo)['runs'][0]['id']

        def waiting():
            j = job_of(coord.run(run_id), 'deploy')
            return j if j['state'] == 'waiting' else None
        j = kiln.wait_for(waiting, 30, 'deploy to wait for a review')
        assert 'production' in j['message'], j
        assert j['environment'] == {'name': 'production', 'url': 'https://example.invalid/app',
                                    'review': 'waiting', 'reviewed_ms': None}, j
        time.sleep(0.3)
        assert job_of(coord.run(run_id), 'deploy')['state'] == 'waiting'
        r = cli(coord, 'approve', run_id, 'deploy')
        assert 'approved' in r.stdout, r.stdout
        run = coord.wait_run_done(run_id)
        assert run['conclusion'] == 'success', run
        env = job_of(run, 'deploy')['environment']
        assert env['review'] == 'approved' and env['reviewed_by'] and env['reviewed_ms'], env
        # rejected: the job fails, and says who and why
        run_id = coord.submit(repo)['runs'][0]['id']
        kiln.wait_for(waiting, 30, 'deploy to wait for a review')
        cli(coord, 'reject', run_id, 'deploy')
        run = coord.wait_run_done(run_id)
        assert run['conclusion'] == 'failure', run
        assert 'rejected' in job_of(run, 'deploy')['message'], run
        # nothing is waiting any more
        r = cli(coord, 'approve', run_id, 'deploy', check=1)
        assert 'waiting for a review' in r.stderr, r.stderr
    finally:
        agent.stop()
        coord.stop()


def test_agent_disable():
    repo, _ = kiln.make_repo({'.github/workflows/w.yml': GATED.format(
        name='w', concurrency='', gate='/')})  # the gate exists: the step ends at once
    coord, agent = setup()
    try:
        aid = coord.agents()[0]['id']
        cli(coord, 'agent', 'disable', aid)
        run_id = coord.submit(repo)['runs'][0]['id']
        time.sleep(0.5)
        assert coord.run(run_id)['state'] == 'queued'
        cli(coord, 'agent', 'enable', aid)
        assert coord.wait_run_done(run_id)['conclusion'] == 'success'
        r = cli(coord, 'agent', 'remove', 'no-such-agent', check=1)
        assert 'no agent' in r.stderr, r.stderr
    finally:
        agent.stop()
        coord.stop()


def test_runs_filters():
    repo, _ = kiln.make_repo({'.github/workflows/ok.yml': 'name: ok\non: push\njobs:\n  a:\n'
                              '    runs-on: linux\n    steps:\n      - run: "true"\n',
                              '.github/workflows/bad.yml': 'name: bad\non: push\njobs:\n  a:\n'
                              '    runs-on: linux\n    steps:\n      - run: "false"\n'})
    coord, agent = setup()
    try:
        ids = [r['id'] for r in coord.submit(repo)['runs']]
        ids += [r['id'] for r in coord.submit(repo)['runs']]
        for i in ids:
            coord.wait_run_done(i)
        r = cli(coord, 'runs', '--conclusion', 'failure', '--json')
        v = json.loads(r.stdout)
        assert v['total'] == 2 and {x['name'] for x in v['runs']} == {'bad'}, v
        r = cli(coord, 'runs', '--workflow', 'ok.yml', '--ref', 'main', '--limit', '1', '--json')
        v = json.loads(r.stdout)
        assert v['total'] == 2 and len(v['runs']) == 1 and v['runs'][0]['name'] == 'ok', v
        assert v['runs'][0]['id'] == max(i for i in ids if coord.run(i)['name'] == 'ok'), v
        r = cli(coord, 'runs', '--workflow', 'ok.yml', '--limit', '1', '--offset', '1', '--json')
        assert json.loads(r.stdout)['runs'][0]['id'] == min(
            i for i in ids if coord.run(i)['name'] == 'ok'), r.stdout
        r = cli(coord, 'runs', '--state', 'completed', '--repo', 'elsewhere', '--json')
        assert json.loads(r.stdout)['runs'] == [], r.stdout
        r = cli(coord, 'runs', '--bogus', 'x', check=2)
        # a run's jobs and a job's steps have their own routes
        jobs = coord.get('/api/v1/runs/%d/jobs' % ids[0])['jobs']
        steps = coord.get('/api/v1/jobs/%d/steps' % jobs[0]['id'])['steps']
        assert steps and steps[0]['conclusion'] in ('success', 'failure'), steps
    finally:
        agent.stop()
        coord.stop()


for t in (test_runs_filters, test_cancel, test_rerun_failed, test_concurrency, test_environment_review,
          test_agent_disable):
    R.run(t)
R.finish()
