"""
TLS: a coordinator on tls+tcp:// and https:// with a certificate from a
throwaway CA (ECDSA P-256, for DNS name localhost, made here with the openssl
command-line tool); an agent that trusts the CA runs a job end to end, the
CLI talks to the API over https, and an agent without the CA cannot connect
and says why in its log.
"""
import http.client
import json
import os
import re
import ssl
import subprocess
import sys

sys.path.insert(0, os.path.join(os.environ['KILN_SRC'], 'tests', 'harness'))
import kiln  # noqa: E402

R = kiln.Runner()

WORKFLOW = '''\
name: ci
on: push
jobs:
  hello:
    runs-on: linux
    steps:
      - run: echo hello over tls
'''


def openssl(*args, cwd):
    r = subprocess.run(['openssl', *args], cwd=cwd, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True)
    assert r.returncode == 0, 'openssl %s: %s' % (' '.join(args), r.stderr)


def make_pki(name='ca'):
    """A CA and a certificate for localhost signed by it; returns their paths."""
    d = kiln.tempdir('kiln-pki-')
    ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes']
    openssl('req', '-x509', *ec, '-keyout', 'ca.key', '-out', 'ca.crt', '-days', '1',
            '-subj', '/CN=kiln test %s' % name,
            '-addext', 'basicConstraints=critical,CA:TRUE',
            '-addext', 'keyUsage=critical,keyCertSign,cRLSign', cwd=d)
    openssl('req', *ec, '-keyout', 'server.key', '-out', 'server.csr', '-subj', '/CN=localhost',
            cwd=d)
    with open(os.path.join(d, 'ext.cnf'), 'w') as f:
        f.write('subjectAltName=DNS:localhost\nextendedKeyUsage=serverAuth\n'
                'basicConstraints=CA:FALSE\n')
    openssl('x509', '-req', '-in', 'server.csr', '-CA', 'ca.crt', '-CAkey', 'ca.key',
            '-CAcreateserial', '-out', 'server.crt', '-days', '1', '-extfile', 'ext.cnf', cwd=d)
    return {k: os.path.join(d, k) for k in ('ca.crt', 'server.crt', 'server.key')}


class TLSCoordinator(kiln.Coordinator):
    """A coordinator listening on tls+tcp:// and https:// (the harness's one speaks plain)."""

    def __init__(self, pki):
        super().__init__()
        self.pki = pki
        self.ctx = ssl.create_default_context(cafile=pki['ca.crt'])

    def start(self, timeout=kiln.TIMEOUT, same_ports=None):
        self.token = kiln.create_token(self.data, '--scope', 'admin')
        ep = os.path.join(self.data, 'endpoints.json')
        self._spawn([kiln.binary('kiln-coordinator'), '--listen', 'tls+tcp://127.0.0.1:0',
                     '--http', 'https://127.0.0.1:0', '--tls-cert', self.pki['server.crt'],
                     '--tls-key', self.pki['server.key'], '--data', self.data,
                     '--log-level', 'info'])

        def ready():
            if not self.alive():
                raise AssertionError('coordinator exited:\n' + self.log())
            try:
                with open(ep) as f:
                    return json.load(f)
            except (FileNotFoundError, ValueError):
                return None
        endpoints = kiln.wait_for(ready, timeout, 'endpoints.json')
        assert endpoints['bus'].startswith('tls+tcp://127.0.0.1:'), endpoints
        assert endpoints['http'].startswith('https://127.0.0.1:'), endpoints
        self.bus_port = int(endpoints['bus'].rsplit(':', 1)[1])
        self.http_port = int(endpoints['http'].rsplit(':', 1)[1])
        # the certificate names localhost, not the address
        self.bus = 'tls+tcp://localhost:%d' % self.bus_port
        self.http = 'https://localhost:%d' % self.http_port
        kiln.wait_for(lambda: self.api('GET', '/healthz')[0] == 200, timeout, '/healthz')
        return self

    def request(self, method, path, data=None, headers=None, timeout=70, token=kiln._DEFAULT):
        """Over https, one connection per request. Not urllib: it asks for "Connection:
        close", and nng 1.5's HTTPS server may then cut the answer short (see
        docs/feedback.md)."""
        headers = dict(headers or {})
        token = self.token if token is kiln._DEFAULT else token
        if token:
            headers['Authorization'] = 'Bearer ' + token
        conn = http.client.HTTPSConnection('localhost', self.http_port, timeout=timeout,
                                           context=self.ctx)
        try:
            conn.request(method, path, body=data, headers=headers)
            r = conn.getresponse()
            return r.status, r.read()
        finally:
            conn.close()


def test_tls_end_to_end():
    pki = make_pki()
    coord = TLSCoordinator(pki).start()
    R.watch(coord)
    agent = kiln.Agent(coord.bus, labels='linux', extra=['--tls-ca', pki['ca.crt']]).start()
    R.watch(agent)
    try:
        coord.wait_agents(1)
        repo, sha = kiln.make_repo({'.github/workflows/ci.yml': WORKFLOW})
        r = kiln.run_cli('submit', '--repo', repo, '--ref', 'main', server=coord.http,
                         env={'KILN_CA': pki['ca.crt'], 'KILN_TOKEN': coord.token}, check=0)
        run_id = int(r.stdout.strip().splitlines()[-1])
        run = coord.wait_run_done(run_id)
        assert run['conclusion'] == 'success', run
        lines = [l['text'] for l in coord.run_log(run_id)]
        assert any('hello over tls' in l for l in lines), lines
        # many answers in a row arrive whole
        for _ in range(30):
            assert coord.get('/api/v1/runs/%d' % run_id)['id'] == run_id
        # the CLI over https, the CA given with --ca
        r = kiln.run_cli('--ca', pki['ca.crt'], '--token', coord.token, 'runs', '--json',
                         server=coord.http, check=0)
        runs = json.loads(r.stdout)
        runs = runs['runs'] if isinstance(runs, dict) else runs
        assert any(x['id'] == run_id for x in runs), r.stdout
        # without the CA the CLI refuses the server, and says why
        r = kiln.run_cli('--token', coord.token, 'runs', server=coord.http,
                         env={'KILN_CA': ''})
        assert r.returncode != 0, kiln.describe(r)
        assert 'certificate' in r.stderr and 'KILN_CA' in r.stderr, kiln.describe(r)
        # plain http to the https port gets nothing
        r = kiln.run_cli('--token', coord.token, 'runs',
                         server='http://127.0.0.1:%d' % coord.http_port, timeout=60)
        assert r.returncode != 0, kiln.describe(r)
    finally:
        agent.stop()
        coord.stop()


def test_agent_without_the_ca():
    pki = make_pki()
    other = make_pki('other')
    coord = TLSCoordinator(pki).start()
    R.watch(coord)
    # trusts the system's CAs only, then another CA: neither signed the coordinator's certificate
    a1 = kiln.Agent(coord.bus, name='no-ca', labels='linux').start()
    a2 = kiln.Agent(coord.bus, name='wrong-ca', labels='linux',
                    extra=['--tls-ca', other['ca.crt']]).start()
    R.watch(a1, a2)
    try:
        for a in (a1, a2):
            kiln.wait_for(lambda: re.search(r'cannot connect to tls\+tcp://localhost:\d+: .*'
                                            r'certificate must be signed', a.log()),
                          15, 'the agent to say why it cannot connect')
        assert coord.agents() == [], coord.agents()
        # the right CA but the wrong name to verify
        a3 = kiln.Agent(coord.bus, name='wrong-name', labels='linux',
                        extra=['--tls-ca', pki['ca.crt'], '--tls-server-name', 'example.org'])
        a3.start()
        R.watch(a3)
        kiln.wait_for(lambda: 'cannot connect' in a3.log(), 15, 'a name mismatch to be logged')
        assert coord.agents() == [], coord.agents()
        a3.stop()
        # a coordinator started with a key that does not match fails with a clear message
        bad = kiln._Process('bad-coordinator')
        bad._spawn([kiln.binary('kiln-coordinator'), '--listen', 'tls+tcp://127.0.0.1:0',
                    '--http', '127.0.0.1:0', '--tls-cert', pki['server.crt'],
                    '--tls-key', pki['ca.crt'], '--data', kiln.tempdir()])
        bad.proc.wait(15)
        assert bad.proc.returncode != 0 and 'server.crt: ' in bad.log(), bad.log()
        nocert = kiln._Process('nocert-coordinator')
        nocert._spawn([kiln.binary('kiln-coordinator'), '--listen', 'tls+tcp://127.0.0.1:0',
                       '--http', '127.0.0.1:0', '--data', kiln.tempdir()])
        nocert.proc.wait(15)
        assert nocert.proc.returncode != 0 and 'tls_cert' in nocert.log(), nocert.log()
    finally:
        a1.stop()
        a2.stop()
        coord.stop()


R.run(test_tls_end_to_end)
R.run(test_agent_without_the_ca)
R.finish()
