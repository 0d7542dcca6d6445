"""
Nothing is lost when a process dies: an agent killed mid-job has its job
retried on another agent (within 20 s, with the default agent_lost_after of
15 s) and the lost attempt's log is kept; a coordinator killed while a job
prints 10,000 numbered lines comes back and stores every line exactly once.
"""
import os
import sys
import time

sys.path.insert(0, os.path.join(os.environ['KILN_SRC'], 'tests', 'harness'))
import kiln  # noqa: E402

R = kiln.Runner()

RETRY = '''\
name: retry
on: push
jobs:
  long:
    runs-on: linux
    steps:
      - run: |
          echo "attempt $GITHUB_RUN_ATTEMPT on $RUNNER_NAME"
          if [ "$GITHUB_RUN_ATTEMPT" = 1 ]; then sleep 300; fi
          echo "finished attempt $GITHUB_RUN_ATTEMPT"
'''

LINES = 10000
NUMBERED = '''\
name: numbered
on: push
jobs:
  talk:
    runs-on: linux
    steps:
      - run: |
          for i in $(seq 1 %d); do
            echo "line $i"
            if [ $((i %% 500)) = 0 ]; then sleep 0.1; fi
          done
''' % LINES


def job_of(run):
    assert len(run['jobs']) == 1, run
    return run['jobs'][0]


def test_agent_killed_mid_job():
    repo, _ = kiln.make_repo({'.github/workflows/retry.yml': RETRY})
    coord = kiln.Coordinator()
    coord.start()
    first = kiln.Agent(coord.bus, name='first', labels='linux').start()
    R.watch(coord, first)
    coord.wait_agents(1)
    run_id = coord.submit(repo)['runs'][0]['id']
    job = job_of(coord.run(run_id))
    kiln.wait_for(lambda: any('attempt 1 on first' in l['text']
                              for l in coord.job_log(job['id'])),
                  30, 'the first attempt running on agent "first"')
    second = kiln.Agent(coord.bus, name='second', labels='linux').start()
    R.watch(second)
    coord.wait_agents(2)
    second_id = [a['id'] for a in coord.agents() if a['name'] == 'second'][0]

    killed = time.monotonic()
    first.kill()

    def retried():
        j = job_of(coord.run(run_id))
        return j if j['attempt'] == 2 and j['agent_id'] == second_id else None
    kiln.wait_for(retried, 25, 'the job retried on agent "second"')
    took = time.monotonic() - killed
    print('retried %.1fs after the kill' % took)
    assert took < 20, 'retry took %.1fs' % took

    run = coord.wait_run_done(run_id, 30)
    assert run['conclusion'] == 'success', run
    j = job_of(run)
    texts = [l['text'] for l in coord.job_log(j['id'])]
    assert 'attempt 2 on second' in texts and 'finished attempt 2' in texts, texts
    # the lost attempt's lines are kept
    lost = [l['text'] for l in coord.job_log(j['id'], attempt=1)]
    assert 'attempt 1 on first' in lost, lost
    lost_agents = [a for a in coord.agents() if a['name'] == 'first']
    assert lost_agents and lost_agents[0]['state'] == 'lost', coord.agents()
    assert coord.stop() == 0


def test_coordinator_killed_mid_log():
    repo, _ = kiln.make_repo({'.github/workflows/numbered.yml': NUMBERED})
    coord = kiln.Coordinator()
    coord.start()
    agent = kiln.Agent(coord.bus, labels='linux').start()
    R.watch(coord, agent)
    coord.wait_agents(1)
    run_id = coord.submit(repo)['runs'][0]['id']
    job = job_of(coord.run(run_id))

    def some_lines():
        v = coord.get('/api/v1/jobs/%s/log?offset=1000&limit=1' % job['id'])
        return v['lines'] or None
    kiln.wait_for(some_lines, 30, 'a thousand lines stored')
    coord.kill()  # the agent keeps running its job and spools the lines meanwhile
    coord.restart()
    run = coord.wait_run_done(run_id, 60)
    assert run['conclusion'] == 'success', run
    lines = coord.job_log(job['id'])
    numbered = [l for l in lines if l['stream'] == 'stdout']
    texts = [l['text'] for l in numbered]
    assert len(texts) == LINES, '%d lines, expected %d' % (len(texts), LINES)
    assert texts == ['line %d' % i for i in range(1, LINES + 1)], 'lines out of order or repeated'
    seqs = [l['seq'] for l in lines]
    assert seqs == list(range(1, len(lines) + 1)), 'sequence numbers not contiguous'
    assert coord.stop() == 0
    assert agent.stop() == 0


R.run(test_agent_killed_mid_job)
R.run(test_coordinator_killed_mid_log)
R.finish()
