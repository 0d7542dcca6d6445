"""
Operating kiln as a service (issue 7): `kiln-agent register` then a start with
`--config` only; SIGHUP reloads the agent's labels and capacity; SIGTERM drains
an agent (a running job finishes, no new job is taken, exit 0) or cancels what
outlives shutdown_timeout; `kiln-coordinator backup FILE` beside a running
coordinator with runs in flight; --version/--help; daemon log lines carry
syslog priority prefixes.
"""
import os
import re
import signal
import sqlite3
import stat
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.environ['KILN_SRC'], 'tests', 'harness'))
import kiln  # noqa: E402

R = kiln.Runner()

SLEEPY = '''\
name: sleepy
on: push
jobs:
  nap:
    runs-on: %s
    steps:
      - run: |
          echo "nap start"
          sleep %s
          echo "nap end"
'''


def agent_proc(name, argv):
    """A kiln-agent started with exactly argv (no harness flags)."""
    p = kiln._Process(name)
    p._spawn([kiln.binary('kiln-agent')] + argv)
    return p


def registered_agent(coord, name, labels='linux', capacity=1, extra=()):
    """Registers an agent with a fresh registration token; returns (config path, work dir)."""
    tok = kiln.create_token(coord.data, '--agent-registration', '--name', name)
    d = kiln.tempdir('kiln-ops-')
    cfg = os.path.join(d, 'agent.yaml')
    work = os.path.join(d, 'work')
    r = subprocess.run([kiln.binary('kiln-agent'), 'register', '--coordinator', coord.bus,
                        '--registration-token', tok, '--name', name, '--labels', labels,
                        '--capacity', str(capacity), '--work', work, '--config', cfg,
                        *extra], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, kiln.describe(r)
    assert tok not in open(cfg).read()
    return cfg, work, tok


def test_register_reload_drain():
    coord = kiln.Coordinator()
    coord.start()
    R.watch(coord)
    cfg, work, tok = registered_agent(coord, 'ops-1', 'linux,one', 1,
                                      ('--shutdown-timeout', '60s'))
    st = os.stat(os.path.join(work, 'agent.token'))
    assert stat.S_IMODE(st.st_mode) == 0o600, oct(st.st_mode)
    text = open(cfg).read()
    assert 'labels: "linux,one"' in text and 'shutdown_timeout: "60s"' in text, text
    # a second register refuses to replace the token file
    r = subprocess.run([kiln.binary('kiln-agent'), 'register', '--coordinator', coord.bus,
                        '--registration-token', tok, '--work', work, '--config', cfg],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and 'registered already' in r.stderr, kiln.describe(r)

    # the service's command line: --config, no secret
    agent = agent_proc('ops-1', ['--config', cfg])
    R.watch(agent)
    # (the register command's registration already counts as online: wait for this one)
    kiln.wait_for(lambda: 'registered as' in agent.log(), 20, 'the agent registered')
    ags = coord.wait_agents(1)
    assert ags[0]['name'] == 'ops-1' and ags[0]['labels'] == ['linux', 'one'], ags

    # SIGHUP: new labels and capacity, same agent id
    with open(cfg, 'a') as f:
        f.write('# reloaded\n')
    text = open(cfg).read().replace('labels: "linux,one"', 'labels: [linux, two]') \
        .replace('capacity: "1"', 'capacity: 2')
    with open(cfg, 'w') as f:
        f.write(text)
    agent.proc.send_signal(signal.SIGHUP)
    kiln.wait_for(lambda: [a for a in coord.agents()
                           if a['labels'] == ['linux', 'two'] and a['capacity'] == 2],
                  20, 'the agent registered again with its new labels')
    assert len(coord.agents()) == 1 and coord.agents()[0]['id'] == ags[0]['id'], coord.agents()
    assert 'reloaded' in agent.log(), agent.log()

    # SIGTERM with a job running: it finishes, a new run is not taken, exit 0
    repo, _ = kiln.make_repo({'.github/workflows/s.yml': SLEEPY % ('two', '4')})
    run1 = coord.submit(repo)['runs'][0]['id']
    job1 = coord.run(run1)['jobs'][0]
    kiln.wait_for(lambda: any('nap start' in l['text'] for l in coord.job_log(job1['id'])),
                  30, 'the job running')
    t0 = time.monotonic()
    agent.proc.send_signal(signal.SIGTERM)
    kiln.wait_for(lambda: coord.agents()[0]['state'] == 'draining', 10, 'agent draining')
    run2 = coord.submit(repo)['runs'][0]['id']
    assert agent.proc.wait(60) == 0, agent.log()
    took = time.monotonic() - t0
    done = coord.wait_run_done(run1, 10)
    assert done['conclusion'] == 'success', done
    texts = [l['text'] for l in coord.job_log(job1['id'])]
    assert 'nap end' in texts, texts
    assert took >= 2, 'exited after %.1fs: before the job ended?' % took
    assert coord.run(run2)['jobs'][0]['state'] == 'queued', coord.run(run2)
    assert re.search(r'^<5>kiln-agent: SIGTERM: taking no new job; 1 running', agent.log(),
                     re.M), agent.log()

    # the same agent again (its agent token), shutdown_timeout 1s: the job is cancelled
    agent2 = agent_proc('ops-1b', ['--config', cfg, '--shutdown-timeout', '1s'])
    R.watch(agent2)
    job2 = coord.run(run2)['jobs'][0]
    kiln.wait_for(lambda: any('nap start' in l['text'] for l in coord.job_log(job2['id'])),
                  30, 'the second run running')
    t0 = time.monotonic()
    agent2.proc.send_signal(signal.SIGTERM)
    assert agent2.proc.wait(30) == 0, agent2.log()
    assert time.monotonic() - t0 < 15
    assert 'cancelling 1 jobs' in agent2.log(), agent2.log()
    j = coord.run(run2)['jobs'][0]
    assert j['state'] == 'completed' and j['conclusion'] == 'cancelled', j
    assert coord.stop() == 0


def test_agent_config_errors():
    d = kiln.tempdir('kiln-ops-')
    bad = os.path.join(d, 'bad.yaml')
    with open(bad, 'w') as f:
        f.write('coordinator: tcp://127.0.0.1:1\nlabel: linux\n')
    r = subprocess.run([kiln.binary('kiln-agent'), '--config', bad], capture_output=True,
                       text=True, timeout=15)
    assert r.returncode == 2 and bad + ':2:1:' in r.stderr and "'label'" in r.stderr, \
        kiln.describe(r)
    with open(bad, 'w') as f:
        f.write('capacity: many\n')
    r = subprocess.run([kiln.binary('kiln-agent'), '--config', bad], capture_output=True,
                       text=True, timeout=15)
    assert r.returncode == 2 and 'capacity' in r.stderr, kiln.describe(r)
    r = subprocess.run([kiln.binary('kiln-agent'), 'register', '--config',
                        os.path.join(d, 'x.yaml')], capture_output=True, text=True, timeout=15)
    assert r.returncode == 2 and '--coordinator' in r.stderr, kiln.describe(r)
    assert not os.path.exists(os.path.join(d, 'x.yaml'))


def test_backup_while_running():
    coord = kiln.Coordinator()
    coord.start()
    agent = kiln.Agent(coord.bus, name='b', labels='linux').start()
    R.watch(coord, agent)
    coord.wait_agents(1)
    repo, _ = kiln.make_repo({'.github/workflows/s.yml': SLEEPY % ('linux', '30')})
    runs = [coord.submit(repo)['runs'][0]['id'] for _ in range(3)]
    job = coord.run(runs[0])['jobs'][0]
    kiln.wait_for(lambda: any('nap start' in l['text'] for l in coord.job_log(job['id'])),
                  30, 'a job running')
    out = os.path.join(kiln.tempdir('kiln-backup-'), 'kiln-backup.db')
    r = subprocess.run([kiln.binary('kiln-coordinator'), '--data', coord.data, 'backup', out],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, kiln.describe(r)
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(out + '.key').st_mode) == 0o600
    assert open(out + '.key', 'rb').read() == \
        open(os.path.join(coord.data, 'secret.key'), 'rb').read()
    assert not [f for f in os.listdir(os.path.dirname(out))
                if f not in ('kiln-backup.db', 'kiln-backup.db.key')], os.listdir(os.path.dirname(out))
    db = sqlite3.connect('file:%s?mode=ro' % out, uri=True)
    assert db.execute('PRAGMA integrity_check').fetchone()[0] == 'ok'
    assert db.execute('PRAGMA journal_mode').fetchone()[0] == 'delete'
    ids = sorted(x[0] for x in db.execute('SELECT id FROM runs'))
    assert ids == sorted(runs), ids
    states = dict(db.execute('SELECT id, state FROM jobs'))
    assert 'running' in states.values(), states
    db.close()

    # restore: stop, copy back, start; the runs are there and the one in flight ends
    assert agent.stop() == 0
    assert coord.stop() == 0
    for suffix in ('', '-wal', '-shm'):
        try:
            os.unlink(os.path.join(coord.data, 'kiln.db' + suffix))
        except FileNotFoundError:
            pass
    with open(out, 'rb') as f, open(os.path.join(coord.data, 'kiln.db'), 'wb') as g:
        g.write(f.read())
    coord.restart()
    assert sorted(x['id'] for x in coord.runs()) == sorted(runs)
    r = subprocess.run([kiln.binary('kiln-coordinator'), '--data', coord.data, 'backup'],
                       capture_output=True, text=True, timeout=15)
    assert r.returncode == 2, kiln.describe(r)
    assert coord.stop() == 0
    assert re.search(r'^<6>kiln-coordinator: ready: ', coord.log(), re.M), coord.log()


def test_version_help():
    for b in ('kiln', 'kiln-agent', 'kiln-coordinator'):
        for flag in ('--version', '-V'):
            r = subprocess.run([kiln.binary(b), flag], capture_output=True, text=True,
                               timeout=15)
            assert r.returncode == 0 and re.match(r'^%s \d+\.\d+\.\d+\n$' % b, r.stdout) \
                and not r.stderr, (b, flag, kiln.describe(r))
        for flag in ('--help', '-h'):
            r = subprocess.run([kiln.binary(b), flag], capture_output=True, text=True,
                               timeout=15)
            assert r.returncode == 0 and r.stdout.startswith('Usage: ') and not r.stderr, \
                (b, flag, kiln.describe(r))
        r = subprocess.run([kiln.binary(b), '--no-such-flag'], capture_output=True, text=True,
                           timeout=15)
        assert r.returncode == 2 and r.stderr, (b, kiln.describe(r))


def test_watchdog():
    """With systemd's NOTIFY_SOCKET and WATCHDOG_USEC, each daemon says READY=1, then
    WATCHDOG=1 at about half the period; SIGTERM says STOPPING=1."""
    import socket
    d = kiln.tempdir('kiln-notify-')
    path = os.path.join(d, 'notify')
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(10)
    env = dict(os.environ, NOTIFY_SOCKET=path, WATCHDOG_USEC='400000')
    data = kiln.tempdir('kiln-wd-')
    coord = subprocess.Popen([kiln.binary('kiln-coordinator'), '--data', data, '--listen',
                              'tcp://127.0.0.1:0', '--http', '127.0.0.1:0'], env=env,
                             stderr=subprocess.DEVNULL)
    kiln._procs.append(coord)

    def messages(n):
        got = []
        while len(got) < n:
            got.append(sock.recv(4096).decode())
        return got
    got = messages(4)
    assert got[0].startswith('READY=1') and got[1:] == ['WATCHDOG=1'] * 3, got
    bus = kiln.wait_for(lambda: __import__('json').load(
        open(os.path.join(data, 'endpoints.json')))['bus'], 10, 'endpoints')
    work = kiln.tempdir('kiln-wd-agent-')
    agent = subprocess.Popen([kiln.binary('kiln-agent'), '--coordinator', bus, '--work', work],
                             env=dict(env), stderr=subprocess.DEVNULL)
    kiln._procs.append(agent)
    t0 = time.monotonic()
    got = messages(10)
    assert got.count('READY=1') == 1 and got.count('WATCHDOG=1') == 9, got
    assert time.monotonic() - t0 < 5, 'pings too slow'
    coord.terminate()
    agent.terminate()
    assert coord.wait(20) == 0 and agent.wait(20) == 0
    rest = []
    sock.settimeout(0.5)
    try:
        while True:
            rest.append(sock.recv(4096).decode())
    except socket.timeout:
        pass
    assert rest.count('STOPPING=1') == 2, rest
    sock.close()


def main():
    R.run(test_version_help)
    R.run(test_watchdog)
    R.run(test_agent_config_errors)
    R.run(test_register_reload_drain)
    R.run(test_backup_while_running)
    R.finish()


if __name__ == '__main__':
    main()
