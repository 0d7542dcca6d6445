"""
Authentication and secrets, with real processes and real HTTP on 127.0.0.1:
API tokens and their scopes (401, 403, 200/201), revocation (over the API and
with `kiln-coordinator token revoke` beside a running coordinator), the
anonymous-read switch, agent registration tokens and agent tokens (0600 file,
restart, revocation), and secrets: set/list/delete without values, sent only to
jobs that name them and masked there, sealed at rest, surviving `key rotate`.
"""
import json
import os
import sqlite3
import stat
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.environ['KILN_SRC'], 'tests', 'harness'))
import kiln  # noqa: E402

R = kiln.Runner()

QUICK = '''\
name: quick
on: push
jobs:
  only:
    runs-on: linux
    steps:
      - run: echo quick
'''


def coordinator_cmd(data, *args):
    return subprocess.run([kiln.binary('kiln-coordinator'), '--data', data, *args],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=60)


def test_token_scopes():
    repo, _ = kiln.make_repo({'.github/workflows/quick.yml': QUICK})
    coord = kiln.Coordinator().start()
    R.watch(coord)
    try:
        # the exact interface: the token on the last line
        out = coordinator_cmd(coord.data, 'token', 'create', '--scope', 'read')
        assert out.returncode == 0, out.stderr
        read = out.stdout.strip().splitlines()[-1]
        assert read.startswith('kiln_a_'), out.stdout
        run = kiln.create_token(coord.data, '--scope', 'run', '--name', 'ci bot')

        assert coord.api('GET', '/healthz', token=None)[0] == 200
        st, v = coord.api('GET', '/api/v1/runs', token=None)
        assert st == 401 and 'Bearer' in v['error'], (st, v)
        st, _ = coord.api('GET', '/api/v1/runs', token='kiln_a_0000000000000000_' + '0' * 64)
        assert st == 401
        st, _ = coord.api('GET', '/api/v1/runs', token=read[:-1] + ('0' if read[-1] != '0' else '1'))
        assert st == 401
        status, _ = coord.request('GET', '/api/v1/runs', headers={'Authorization': 'Basic eDp5'})
        assert status == 401
        assert coord.api('GET', '/api/v1/runs', token=read)[0] == 200
        assert coord.api('GET', '/api/v1/agents', token=read)[0] == 200

        body = {'repo': repo, 'ref': 'main'}
        st, v = coord.api('POST', '/api/v1/runs', body, token=read)
        assert st == 403 and "'run'" in v['error'], (st, v)
        st, v = coord.api('POST', '/api/v1/runs', body, token=run)
        assert st == 201, (st, v)
        # webhooks prove themselves: the token check leaves them alone
        st, v = coord.api('POST', '/hooks/github', {}, token=None)
        assert not (v and 'authentication required' in v.get('error', '')), (st, v)

        # admin only: token management
        st, _ = coord.api('GET', '/api/v1/tokens', token=run)
        assert st == 403
        st, v = coord.api('POST', '/api/v1/tokens', {'scope': 'read', 'name': 'dash'})
        assert st == 201 and v['token'].startswith('kiln_a_') and v['scope'] == 'read', v
        api_read, api_read_id = v['token'], v['id']
        assert coord.api('GET', '/api/v1/runs', token=api_read)[0] == 200
        st, v = coord.api('POST', '/api/v1/tokens', {'scope': 'root'})
        assert st == 400, v
        st, v = coord.api('GET', '/api/v1/tokens')
        assert st == 200
        text = json.dumps(v)
        for t in (read, run, api_read, coord.token):
            assert t not in text and t.split('_')[-1] not in text
        assert 'digest' not in text
        names = {t['name'] for t in v['tokens']}
        assert {'ci bot', 'dash', 'test harness'} <= names, names

        # revoked over the API
        st, v = coord.api('DELETE', '/api/v1/tokens/' + api_read_id)
        assert st == 200 and v['revoked'], v
        assert coord.api('GET', '/api/v1/runs', token=api_read)[0] == 401
        assert coord.api('DELETE', '/api/v1/tokens/ffffffffffffffff')[0] == 404
        # revoked beside the running coordinator
        listing = coordinator_cmd(coord.data, 'token', 'list').stdout
        run_id = [l.split()[0] for l in listing.splitlines() if 'ci bot' in l][0]
        r = coordinator_cmd(coord.data, 'token', 'revoke', run_id)
        assert r.returncode == 0, r.stderr
        assert coord.api('GET', '/api/v1/runs', token=run)[0] == 401
        assert 'revoked' in coordinator_cmd(coord.data, 'token', 'list').stdout

        # the CLI sends --token as a bearer token
        r = kiln.run_cli('--token', read, 'runs', '--json', server=coord.http)
        assert r.returncode == 0 and json.loads(r.stdout)['runs'], kiln.describe(r)
        r = kiln.run_cli('runs', server=coord.http, env={'KILN_TOKEN': 'nope'})
        assert r.returncode != 0 and '401' in r.stderr, kiln.describe(r)
        r = kiln.run_cli('runs', server=coord.http, env={'KILN_TOKEN': read})
        assert r.returncode == 0, kiln.describe(r)

        # usage errors
        r = coordinator_cmd(coord.data, 'token', 'create', '--scope', 'root')
        assert r.returncode == 2 and 'scope' in r.stderr, r.stderr
        r = coordinator_cmd(coord.data, 'token', 'revoke', 'ffffffffffffffff')
        assert r.returncode == 1 and 'no token' in r.stderr, r.stderr
    finally:
        coord.stop()


def test_anonymous_read():
    plain = kiln.Coordinator().start()
    anon = kiln.Coordinator(extra=['--anonymous-read']).start()
    cfg_dir = kiln.tempdir()
    cfg = os.path.join(cfg_dir, 'coordinator.yaml')
    with open(cfg, 'w') as f:
        f.write('anonymous_read: true\n')
    from_file = kiln.Coordinator(extra=['--config', cfg]).start()
    R.watch(plain, anon, from_file)
    try:
        assert plain.api('GET', '/api/v1/runs', token=None)[0] == 401
        for c in (anon, from_file):
            assert c.api('GET', '/api/v1/runs', token=None)[0] == 200
            assert c.api('GET', '/api/v1/agents', token=None)[0] == 200
            # reads only
            assert c.api('POST', '/api/v1/runs', {'repo': '/x'}, token=None)[0] == 401
            assert c.api('GET', '/api/v1/tokens', token=None)[0] == 401
            assert c.api('GET', '/api/v1/secrets', token=None)[0] == 401
            # a bad token is still refused
            assert c.api('GET', '/api/v1/runs', token='bad')[0] == 401
    finally:
        for c in (plain, anon, from_file):
            c.stop()


def agent_online(coord, name):
    return [a for a in coord.agents() if a['name'] == name and a['state'] == 'online']


def test_agent_tokens():
    repo, _ = kiln.make_repo({'.github/workflows/quick.yml': QUICK})
    coord = kiln.Coordinator(extra=['--lost-after', '2s', '--poll-timeout', '1s']).start()
    R.watch(coord)
    work = kiln.tempdir('kiln-agent-')
    try:
        # open until the first registration token exists
        reg = kiln.create_token(coord.data, '--agent-registration', '--name', 'rack 1')
        assert reg.startswith('kiln_r_'), reg

        nobody = kiln.Agent(coord.bus, name='nobody').start()
        R.watch(nobody)
        kiln.wait_for(lambda: 'refused' in nobody.log(), 20, 'a refusal without a token')
        assert not agent_online(coord, 'nobody')
        nobody.stop()

        agent = kiln.Agent(coord.bus, name='a1', work=work,
                           extra=['--registration-token', reg]).start()
        R.watch(agent)
        first = kiln.wait_for(lambda: agent_online(coord, 'a1'), 20, 'a1 online')[0]
        path = os.path.join(work, 'agent.token')
        kiln.wait_for(lambda: os.path.exists(path), 10, 'the agent token file')
        mode = stat.S_IMODE(os.stat(path).st_mode)
        assert mode == 0o600, oct(mode)
        with open(path) as f:
            agent_token = f.read().strip()
        assert agent_token.startswith('kiln_g_'), agent_token
        # the store has digests only
        db = sqlite3.connect(os.path.join(coord.data, 'kiln.db'))
        rows = db.execute('SELECT digest FROM tokens').fetchall()
        db.close()
        assert all(agent_token not in r[0] and reg not in r[0] for r in rows)

        # restarted without the registration token: its own token, the same agent
        agent.stop()
        agent = kiln.Agent(coord.bus, name='a1', work=work).start()
        R.watch(agent)
        again = kiln.wait_for(lambda: agent_online(coord, 'a1'), 20, 'a1 online again')[0]
        assert again['id'] == first['id']
        run_id = coord.submit(repo)['runs'][0]['id']
        assert coord.wait_run_done(run_id)['conclusion'] == 'success'

        # a coordinator restart keeps the session (and a re-registration uses the agent token)
        coord.stop()
        coord.restart()
        assert kiln.wait_for(lambda: agent_online(coord, 'a1'), 20, 'a1 back')[0]['id'] == first['id']

        # revoking the agent token ends its session; a restart with it is refused too
        toks = coord.get('/api/v1/tokens')['tokens']
        mine = [t for t in toks if t['kind'] == 'agent' and t.get('agent_id') == first['id']
                and t['revoked_ms'] is None]
        assert len(mine) == 1, toks
        assert coord.api('DELETE', '/api/v1/tokens/' + mine[0]['id'])[0] == 200
        kiln.wait_for(lambda: 'refused our agent token' in agent.log(), 20, 'the agent refused')
        kiln.wait_for(lambda: not agent_online(coord, 'a1'), 20, 'a1 no longer online')
        agent.stop()
        agent = kiln.Agent(coord.bus, name='a1', work=work,
                           extra=['--registration-token', reg]).start()
        R.watch(agent)
        kiln.wait_for(lambda: 'refused our agent token' in agent.log(), 20, 'refused again')
        assert 'agent token revoked' in coord.log()

        # a revoked registration token lets no new agent in
        reg_id = [t for t in toks if t['kind'] == 'registration'][0]['id']
        assert coordinator_cmd(coord.data, 'token', 'revoke', reg_id).returncode == 0
        late = kiln.Agent(coord.bus, name='late', extra=['--registration-token', reg]).start()
        R.watch(late)
        kiln.wait_for(lambda: 'refused' in late.log(), 20, 'late refused')
        assert not agent_online(coord, 'late')
        late.stop()
        agent.stop()
    finally:
        coord.stop()


SECRETS = '''\
name: secrets
on: push
jobs:
  uses:
    runs-on: linux
    env:
      KEY: ${{{{ secrets.deploy_key }}}}
    steps:
      - run: echo "key=$KEY"
      - run: echo "org=${{{{ secrets.ORG_TOKEN }}}}"
      - run: echo "literal={value}"
      - run: test "${{{{ secrets['SHARED'] }}}}" = repo-shared-value && echo shared-is-repo
  plain:
    runs-on: linux
    steps:
      - run: echo "literal={value}"
      - run: if env | grep -q '{value}'; then echo "leaked"; exit 1; fi; echo "no secret env"
'''


def run_secrets(coord, repo):
    run_id = coord.submit(repo, workflow='secrets.yml')['runs'][0]['id']
    run = coord.wait_run_done(run_id, 60)
    logs = {}
    for j in run['jobs']:
        logs[j['key']] = [l['text'] for l in coord.job_log(j['id']) if l['stream'] != 'system']
    assert run['conclusion'] == 'success', (run, logs)
    return logs


def test_secrets():
    value = 'deploy-key-0c7e2b'
    parent = kiln.tempdir('kiln-owner-')
    repo, _ = kiln.make_repo({'.github/workflows/secrets.yml': SECRETS.format(value=value)},
                             path=os.path.join(parent, 'acme', 'app'))
    coord = kiln.Coordinator().start()
    agent = kiln.Agent(coord.bus, name='s1').start()
    R.watch(coord, agent)
    try:
        key = os.path.join(coord.data, 'secret.key')
        assert stat.S_IMODE(os.stat(key).st_mode) == 0o600

        # set: from --value, from stdin; names case-insensitive; org and repo scopes
        r = kiln.run_cli('secret', 'set', 'deploy_key', '--repo', 'acme/app', '--value', 'old',
                         server=coord.http)
        assert r.returncode == 0, kiln.describe(r)
        p = subprocess.run([kiln.binary('kiln'), '--server', coord.http, '--token', coord.token,
                            'secret', 'set', 'DEPLOY_KEY', '--repo', 'acme/app'],
                           input=value + '\n', text=True, capture_output=True, timeout=30)
        assert p.returncode == 0, p.stderr
        assert coord.api('PUT', '/api/v1/secrets/orgs/acme/ORG_TOKEN',
                         {'value': 'org-token-5d1'})[0] == 201
        assert coord.api('PUT', '/api/v1/secrets/orgs/acme/SHARED', {'value': 'org-shared'})[0] == 201
        assert coord.api('PUT', '/api/v1/secrets/repos/acme/app/Shared',
                         {'value': 'repo-shared-value'})[0] == 201
        assert coord.api('PUT', '/api/v1/secrets/orgs/other/UNUSED', {'value': 'zzz-unused'})[0] == 201
        for bad in ('GITHUB_TOKEN', 'github_x', '1ABC', 'with-dash'):
            st, v = coord.api('PUT', '/api/v1/secrets/repos/acme/app/' + bad, {'value': 'x'})
            assert st == 400, (bad, st, v)
        assert coord.api('PUT', '/api/v1/secrets/repos/acme/app/EMPTY', {'value': ''})[0] == 400
        assert coord.api('PUT', '/api/v1/secrets/repos/acme/app/X', {'value': 'x'}, token=None)[0] == 401
        run_token = kiln.create_token(coord.data, '--scope', 'run')
        assert coord.api('PUT', '/api/v1/secrets/repos/acme/app/X', {'value': 'x'},
                         token=run_token)[0] == 403
        assert coord.api('GET', '/api/v1/secrets', token=run_token)[0] == 403

        # list: names and times, never values
        r = kiln.run_cli('secret', 'list', '--repo', 'acme/app', '--json', server=coord.http)
        assert r.returncode == 0, kiln.describe(r)
        listed = json.loads(r.stdout)['secrets']
        assert sorted(s['name'] for s in listed) == ['DEPLOY_KEY', 'SHARED'], listed
        everything = coord.get('/api/v1/secrets')
        text = json.dumps(everything)
        assert 'value' not in text and value not in text and 'org-token' not in text
        assert len(everything['secrets']) == 5, everything
        table = kiln.run_cli('secret', 'list', server=coord.http).stdout
        assert 'ORG_TOKEN' in table and value not in table

        # a job that names a secret gets it, masked; one that does not, does not
        logs = run_secrets(coord, repo)
        assert 'key=***' in logs['uses'], logs
        assert 'org=***' in logs['uses'], logs
        assert 'literal=***' in logs['uses'], logs
        assert 'shared-is-repo' in logs['uses'], logs
        assert 'literal=' + value in logs['plain'], logs
        assert 'no secret env' in logs['plain'], logs
        for line in logs['uses']:
            assert value not in line and 'org-token-5d1' not in line

        # sealed at rest: no plaintext in the database files
        db = sqlite3.connect(os.path.join(coord.data, 'kiln.db'))
        rows = db.execute('SELECT name, value FROM secrets').fetchall()
        db.close()
        assert all(v.startswith('v1:') and value not in v for _, v in rows), rows
        for f in os.listdir(coord.data):
            if f.startswith('kiln.db'):
                with open(os.path.join(coord.data, f), 'rb') as fh:
                    data = fh.read()
                # (the workflow itself holds `value`, for the job that prints it literally)
                assert b'org-token-5d1' not in data and b'zzz-unused' not in data, f
        assert value not in coord.log()

        # key rotate beside the running coordinator: jobs still get their secrets
        before = open(key).read()
        r = coordinator_cmd(coord.data, 'key', 'rotate')
        assert r.returncode == 0 and 'rotated: 5' in r.stdout, (r.stdout, r.stderr)
        assert open(key).read() != before
        assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
        assert not os.path.exists(key + '.old') and not os.path.exists(key + '.new')
        logs = run_secrets(coord, repo)
        assert 'key=***' in logs['uses'] and 'shared-is-repo' in logs['uses'], logs
        # and across a restart, after another rotation while it is stopped
        coord.stop()
        r = coordinator_cmd(coord.data, 'key', 'rotate')
        assert r.returncode == 0, r.stderr
        coord.restart()
        assert coord.api('PUT', '/api/v1/secrets/repos/acme/app/LATE', {'value': 'late-1'})[0] == 201
        logs = run_secrets(coord, repo)
        assert 'key=***' in logs['uses'] and 'shared-is-repo' in logs['uses'], logs

        # delete
        assert coord.api('DELETE', '/api/v1/secrets/repos/acme/app/deploy_key')[0] == 200
        assert coord.api('DELETE', '/api/v1/secrets/repos/acme/app/deploy_key')[0] == 404
        r = kiln.run_cli('secret', 'delete', 'SHARED', '--org', 'acme', server=coord.http)
        assert r.returncode == 0, kiln.describe(r)
        names = sorted(s['name'] for s in coord.get('/api/v1/secrets')['secrets'])
        assert names == ['LATE', 'ORG_TOKEN', 'SHARED', 'UNUSED'], names
    finally:
        agent.stop()
        coord.stop()


def test_rotation_crash_recovery():
    """A rotation cut short after its transaction: the next start finishes it."""
    coord = kiln.Coordinator().start()
    R.watch(coord)
    try:
        assert coord.api('PUT', '/api/v1/secrets/repos/acme/app/K', {'value': 'v-123'})[0] == 201
        coord.stop()
        key = os.path.join(coord.data, 'secret.key')
        # a rotation that stopped after writing secret.key.new but before its transaction
        with open(key) as f:
            cur = f.read()
        fd = os.open(key + '.new', os.O_WRONLY | os.O_CREAT, 0o600)
        os.write(fd, ('%064x\n' % 12345).encode())
        os.close(fd)
        fd = os.open(key + '.old', os.O_WRONLY | os.O_CREAT, 0o600)
        os.write(fd, cur.encode())
        os.close(fd)
        coord.restart()
        assert not os.path.exists(key + '.new') and not os.path.exists(key + '.old')
        assert open(key).read() == cur
        assert 'undone' in coord.log()
    finally:
        coord.stop()


R.run(test_token_scopes)
R.run(test_anonymous_read)
R.run(test_agent_tokens)
R.run(test_secrets)
R.run(test_rotation_crash_recovery)
R.finish()
