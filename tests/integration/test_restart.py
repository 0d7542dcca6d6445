"""
A coordinator restart resumes its runs: SIGKILL while a job is running (the
agent keeps going, spools, reconnects) and a clean SIGTERM restart between runs.
"""
import json
import os
import re
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.environ['KILN_SRC'], 'tests', 'harness'))
import kiln  # noqa: E402

BEFORE = 20
AFTER = 30

# job a prints, waits (bounded, 60 s) for a gate file the test creates, prints more
GATED = '''\
name: gated
on: push
jobs:
  a:
    runs-on: linux
    steps:
      - name: before
        run: for i in $(seq 1 {before}); do echo "a before $i"; done
      - name: wait for the gate
        run: |
          for i in $(seq 1 600); do
            [ -e '{gate}' ] && break
            sleep 0.1
          done
          if [ -e '{gate}' ]; then echo "gate open"; else echo "gate never opened"; exit 1; fi
      - name: after
        run: |
          for i in $(seq 1 {after}); do echo "a after $i"; done
          echo "a end $(date +%s%N)"
          touch '{gate}.done'
  b:
    needs: a
    runs-on: linux
    steps:
      - run: echo "b start $(date +%s%N)"
'''

QUICK = '''\
name: quick
on: push
jobs:
  only:
    runs-on: linux
    steps:
      - run: for i in 1 2 3; do echo "quick $i"; done
'''

R = kiln.Runner()


def gated_repo(gate):
    return kiln.make_repo({
        '.github/workflows/gated.yml': GATED.format(gate=gate, before=BEFORE, after=AFTER),
        '.github/workflows/quick.yml': QUICK})


def expected_a_texts():
    return (['a before %d' % i for i in range(1, BEFORE + 1)] + ['gate open'] +
            ['a after %d' % i for i in range(1, AFTER + 1)])


def check_gated_run(coord, run_id):
    run = coord.run(run_id)
    assert run['state'] == 'completed' and run['conclusion'] == 'success', run
    jobs = {j['key']: j for j in run['jobs']}
    a, b = jobs['a'], jobs['b']
    assert a['conclusion'] == 'success' and b['conclusion'] == 'success', jobs
    # the restart must not make a run twice
    assert a['attempt'] == 1, a
    assert b['started_ms'] >= a['finished_ms'], (a, b)
    for s in a['steps']:
        assert s['conclusion'] == 'success' and s['exit_code'] == 0, s
    alog = coord.job_log(a['id'])
    blog = coord.job_log(b['id'])
    # every line exactly once, in order, seq contiguous
    seqs = [l['seq'] for l in alog]
    assert seqs == list(range(1, len(alog) + 1)), seqs
    texts = [l['text'] for l in alog if l['stream'] != 'system' and not l['text'].startswith('a end ')]
    assert texts == expected_a_texts(), texts
    a_end = [int(l['text'].split()[-1]) for l in alog if l['text'].startswith('a end ')]
    b_start = [int(l['text'].split()[-1]) for l in blog if l['text'].startswith('b start ')]
    assert len(a_end) == 1 and len(b_start) == 1, (alog, blog)
    assert b_start[0] > a_end[0], 'b started before a ended'
    # the run log agrees with the job logs
    rl = coord.run_log(run_id)
    assert [(l['seq'], l['text']) for l in rl if l['job_id'] == a['id']] == \
        [(l['seq'], l['text']) for l in alog]
    assert [(l['seq'], l['text']) for l in rl if l['job_id'] == b['id']] == \
        [(l['seq'], l['text']) for l in blog]
    return run


def first_line_visible(coord, run_id, text):
    def seen():
        run = coord.run(run_id)
        a = [j for j in run['jobs'] if j['key'] == 'a'][0]
        if a['state'] != 'running':
            return None
        return any(l['text'] == text for l in coord.job_log(a['id']))
    kiln.wait_for(seen, 30, 'line %r of job a through the API' % text)


def test_sigkill_mid_job():
    work = kiln.tempdir('kiln-restart-')
    gate = os.path.join(work, 'gate')
    repo, sha = gated_repo(gate)
    coord = kiln.Coordinator().start()
    agent = kiln.Agent(coord.bus, name='solo', capacity=1).start()
    R.watch(coord, agent)
    try:
        coord.wait_agents(1)
        run_id = coord.submit(repo, workflow='gated.yml')['runs'][0]['id']
        first_line_visible(coord, run_id, 'a before 1')

        bus, http = coord.bus, coord.http
        coord.kill()
        t0 = time.monotonic()
        coord.restart()
        assert (coord.bus, coord.http) == (bus, http)
        # the run is still there, still running, after the restart
        run = coord.run(run_id)
        assert run['state'] == 'running', run
        # every line from before the kill is there (the agent resends what was not acked)
        a_id = [j for j in run['jobs'] if j['key'] == 'a'][0]['id']
        # (step 1, the gate, has begun: its title line is there; it prints nothing more
        # until the gate opens)
        before = kiln.wait_for(
            lambda: (lambda ls: ls if any(l['step'] == 1 for l in ls) else None)(
                coord.job_log(a_id)),
            30, 'job a to reach its gate')
        assert [l['text'] for l in before if l['stream'] != 'system'] == \
            ['a before %d' % i for i in range(1, BEFORE + 1)], before
        # a long poll from where the log ends is answered when the gate opens and job a
        # prints again, not at its 30 s deadline
        polls = {}

        def long_poll(key, path):
            t = time.monotonic()
            polls[key] = (coord.get(path, timeout=40), time.monotonic() - t)
        threads = [
            threading.Thread(target=long_poll, args=(
                'job', '/api/v1/jobs/%d/log?offset=%d&wait=30' % (a_id, len(before)))),
            threading.Thread(target=long_poll, args=(
                'run', '/api/v1/runs/%d/log?offset=%d&wait=30' % (run_id, len(coord.run_log(run_id)))))]
        for t in threads:
            t.start()
        with open(gate, 'w') as f:
            f.write('open\n')
        for t in threads:
            t.join(45)
        assert set(polls) == {'job', 'run'}, polls
        for key, (v, took) in polls.items():
            assert v['lines'], (key, v)
            assert took < 20, '%s long poll answered after %.1fs, not when lines came' % (key, took)
        jl = polls['job'][0]['lines']
        assert jl[0]['seq'] == len(before) + 1, (len(before), jl)
        assert jl[0]['text'] == 'gate open', jl
        assert polls['run'][0]['lines'][0]['text'] == 'gate open', polls['run']
        coord.wait_run_done(run_id, timeout=45)
        print('run finished %.1fs after the restart' % (time.monotonic() - t0))
        check_gated_run(coord, run_id)
        # the agent is back online, as the same agent
        online = coord.wait_agents(1)
        assert [a['name'] for a in online] == ['solo'], online
        assert len(coord.agents()) == 1, coord.agents()
        # and `kiln logs -f` on the finished run prints all of it and exits 0
        r = kiln.run_cli('logs', '-f', run_id, server=coord.http, timeout=30)
        assert r.returncode == 0, kiln.describe(r)
        got = [l[len('[a] '):] for l in r.stdout.splitlines() if l.startswith('[a] ')
               and not l.startswith('[a] ==> ') and not l.startswith('[a] a end ')]
        assert got == expected_a_texts(), kiln.describe(r)
    finally:
        agent.stop()
        coord.stop()


def test_sigkill_job_finishes_while_down():
    """The job ends while the coordinator is dead: its lines and result are
    spooled by the agent and delivered after the restart."""
    work = kiln.tempdir('kiln-restart-')
    gate = os.path.join(work, 'gate')
    repo, sha = gated_repo(gate)
    coord = kiln.Coordinator().start()
    agent = kiln.Agent(coord.bus, name='solo', capacity=1).start()
    R.watch(coord, agent)
    try:
        coord.wait_agents(1)
        run_id = coord.submit(repo, workflow='gated.yml')['runs'][0]['id']
        first_line_visible(coord, run_id, 'a before %d' % BEFORE)
        coord.kill()
        with open(gate, 'w') as f:
            f.write('open\n')
        # job a runs to its end with no coordinator: its last step leaves a file
        kiln.wait_for(lambda: os.path.exists(gate + '.done'), 30, 'job a to get past its gate')
        coord.restart()
        coord.wait_run_done(run_id, timeout=45)
        check_gated_run(coord, run_id)
    finally:
        agent.stop()
        coord.stop()


def test_sigterm_restart_keeps_runs():
    repo, sha = kiln.make_repo({'.github/workflows/quick.yml': QUICK})
    coord = kiln.Coordinator().start()
    agent = kiln.Agent(coord.bus, name='solo', capacity=1).start()
    R.watch(coord, agent)
    try:
        coord.wait_agents(1)
        first = coord.submit(repo)['runs'][0]['id']
        done = coord.wait_run_done(first)
        assert done['conclusion'] == 'success', done
        before = coord.runs()
        log_before = coord.run_log(first)
        assert [l['text'] for l in log_before if l['stream'] != 'system'] == \
            ['quick 1', 'quick 2', 'quick 3'], log_before

        assert coord.stop() == 0, coord.log()
        coord.restart()
        assert coord.runs() == before
        assert coord.run(first) == done
        assert coord.run_log(first) == log_before
        job = done['jobs'][0]
        assert [l['text'] for l in coord.job_log(job['id']) if l['stream'] != 'system'] == \
            ['quick 1', 'quick 2', 'quick 3']
        r = kiln.run_cli('runs', '--json', server=coord.http, check=0)
        assert [x['id'] for x in json.loads(r.stdout)['runs']] == [first]

        # the agent comes back and a new run works, numbered after the old one
        coord.wait_agents(1)
        second = int(kiln.run_cli('submit', '--repo', repo, '--ref', 'main',
                                  server=coord.http, check=0).stdout.split()[-1])
        assert second != first
        # Regression check for a kiln bug found here (fixed in f33c94f, "Scheduler: count
        # an agent's free slots from the jobs it runs"): the agent's held Poll was sent while
        # its only slot was busy (free_slots = 0); nng resends that same Poll to the
        # restarted coordinator, which parked it with no free slot and gave the idle agent
        # nothing until the poll timed out (--poll-timeout, 25 s). A one-step job on an
        # idle agent must not wait for that: require 10 s, then keep waiting (to check
        # the rest) and fail at the end.
        late = None
        t0 = time.monotonic()
        try:
            coord.wait_run_done(second, timeout=10)
        except kiln.Timeout as e:
            late = e
            coord.wait_run_done(second, timeout=40)
        took = time.monotonic() - t0
        f = kiln.run_cli('logs', '-f', second, server=coord.http, timeout=45)
        assert f.returncode == 0, kiln.describe(f)
        assert re.findall(r'^\[only\] quick \d$', f.stdout, re.M) == \
            ['[only] quick 1', '[only] quick 2', '[only] quick 3'], kiln.describe(f)
        runs = coord.runs()
        assert [x['id'] for x in runs] == [second, first], runs
        assert [x['number'] for x in runs] == [2, 1], runs
        assert runs[1] == before[0]
        assert late is None, (
            'KILN BUG: after a SIGTERM restart, an idle agent took %.1fs to get a new run '
            '(stale free_slots=0 in the resent Poll): %s' % (took, late))
    finally:
        agent.stop()
        coord.stop()


def main():
    R.run(test_sigkill_mid_job)
    R.run(test_sigkill_job_finishes_while_down)
    R.run(test_sigterm_restart_keeps_runs)
    R.finish()


if __name__ == '__main__':
    main()
