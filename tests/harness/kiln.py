"""
kiln integration-test harness: real kiln-coordinator / kiln-agent processes on
127.0.0.1, temporary git repositories, the HTTP API and the `kiln` CLI.

Standard library only. Tests import it with

    sys.path.insert(0, os.path.join(os.environ['KILN_SRC'], 'tests', 'harness'))
    import kiln

Every process and temporary directory made here is registered and removed at
exit (atexit), in addition to whatever the tests clean up themselves.
"""
import atexit
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.error
import urllib.request

SRC = os.environ.get('KILN_SRC') or os.path.dirname(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.environ.get('KILN_BIN') or os.path.join(SRC, 'build', 'bin')

# default deadline for things that should be quick (process start, a small run)
TIMEOUT = float(os.environ.get('KILN_TEST_TIMEOUT', '30'))


def binary(name):
    path = os.path.join(BIN, name)
    if not os.access(path, os.X_OK):
        raise RuntimeError('%s: not built (set KILN_BIN to the build bin directory)' % path)
    return path


# ---------------------------------------------------------------- cleanup

_procs = []      # every Popen started here
_tmpdirs = []    # every temporary directory made here


def _cleanup():
    for p in _procs:
        if p.poll() is None:
            try:
                p.kill()
                p.wait(5)
            except Exception:
                pass
    for d in _tmpdirs:
        shutil.rmtree(d, ignore_errors=True)


atexit.register(_cleanup)


def tempdir(prefix='kiln-test-'):
    """A new temporary directory, removed at exit (or earlier with rmtree)."""
    d = tempfile.mkdtemp(prefix=prefix)
    _tmpdirs.append(d)
    return d


# ---------------------------------------------------------------- waiting

class Timeout(AssertionError):
    pass


def wait_for(cond, timeout=TIMEOUT, what='condition', interval=0.05):
    """Polls cond() until it returns something truthy, and returns that; raises
    Timeout after `timeout` seconds. Exceptions from cond() count as 'not yet'
    until the deadline, then the last one is reported."""
    deadline = time.monotonic() + timeout
    last_exc = None
    while True:
        try:
            v = cond()
            if v:
                return v
            last_exc = None
        except Exception as e:  # not ready yet
            last_exc = e
        if time.monotonic() >= deadline:
            msg = 'timed out after %.1fs waiting for %s' % (timeout, what)
            if last_exc is not None:
                msg += ' (last error: %r)' % (last_exc,)
            raise Timeout(msg)
        time.sleep(interval)


# ---------------------------------------------------------------- git

GIT_ID = ['-c', 'user.name=kiln test', '-c', 'user.email=test@kiln.invalid',
          '-c', 'commit.gpgsign=false', '-c', 'init.defaultBranch=main']


def git(repo, *args, check=True):
    env = dict(os.environ, GIT_CONFIG_NOSYSTEM='1', HOME=repo, GIT_TERMINAL_PROMPT='0')
    r = subprocess.run(['git', *GIT_ID, *args], cwd=repo, env=env, text=True,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if check and r.returncode != 0:
        raise RuntimeError('git %s failed (%d): %s' % (' '.join(args), r.returncode, r.stderr))
    return r.stdout.strip()


def write_files(root, files):
    """Writes {relative path: text} under root (making directories)."""
    for rel, text in files.items():
        path = os.path.join(root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, 'w') as f:
            f.write(text)


def make_repo(files, path=None, message='initial'):
    """A git repository (branch main) holding `files`, committed. Returns (path, sha)."""
    root = path or tempdir('kiln-repo-')
    os.makedirs(root, exist_ok=True)
    git(root, 'init', '-q', '-b', 'main')
    write_files(root, files)
    return root, commit(root, message)


def commit(repo, message='change', files=None):
    """Writes `files` (if any), commits everything, returns the new HEAD sha."""
    if files:
        write_files(repo, files)
    git(repo, 'add', '-A')
    git(repo, 'commit', '-q', '--allow-empty', '-m', message)
    return git(repo, 'rev-parse', 'HEAD')


# ---------------------------------------------------------------- processes

class _Process:
    """A daemon with stdout/stderr captured to a file in its own temp dir."""

    def __init__(self, name):
        self.name = name
        self.proc = None
        self.logdir = tempdir('kiln-%s-log-' % name)
        self.starts = 0

    def _spawn(self, argv):
        self.starts += 1
        self.logpath = os.path.join(self.logdir, '%s.%d.log' % (self.name, self.starts))
        out = open(self.logpath, 'wb')
        try:
            self.proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        finally:
            out.close()
        _procs.append(self.proc)

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def log(self):
        """Everything this process (all its starts) wrote so far."""
        parts = []
        for i in range(1, self.starts + 1):
            p = os.path.join(self.logdir, '%s.%d.log' % (self.name, i))
            try:
                with open(p, 'rb') as f:
                    parts.append('--- %s start %d ---\n' % (self.name, i) +
                                 f.read().decode('utf-8', 'replace'))
            except OSError:
                pass
        return '\n'.join(parts)

    def stop(self, timeout=15):
        """SIGTERM and wait; returns the exit status (None if it was not running).
        SIGKILLs it if it does not exit within `timeout` and raises."""
        if not self.proc:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
                raise AssertionError('%s did not exit within %ss of SIGTERM' % (self.name, timeout))
        return self.proc.returncode

    def kill(self):
        """SIGKILL and wait."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        return self.proc.returncode if self.proc else None


# http URL of each coordinator started here -> its admin token, for run_cli
_tokens = {}
_DEFAULT = object()


def create_token(data, *args):
    """`kiln-coordinator --data DATA token create ARGS`; returns the token (its last line)."""
    r = subprocess.run([binary('kiln-coordinator'), '--data', data, 'token', 'create', *args],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=60)
    if r.returncode != 0:
        raise RuntimeError('token create %s failed (%d): %s' % (args, r.returncode, r.stderr))
    return r.stdout.strip().splitlines()[-1]


class Coordinator(_Process):
    """kiln-coordinator on 127.0.0.1 with a data directory; port 0 by default.

    The HTTP API wants a token: on its first start the harness makes an admin token
    (self.token) that request/api/get send, and run_cli passes on to `kiln --server`.
    Pass token=None to a call to send none, or token='…' to send another."""

    def __init__(self, data=None, extra=(), name='coordinator', admin_token=True):
        super().__init__(name)
        self.data = data or tempdir('kiln-coord-')
        self.extra = list(extra)
        self.admin_token = admin_token
        self.token = None
        self.bus = None
        self.http = None
        self.bus_port = 0
        self.http_port = 0

    def start(self, timeout=TIMEOUT, same_ports=None):
        """Starts the coordinator and waits for DIR/endpoints.json. With
        same_ports (default: True on a restart), listens on the ports of the
        previous start."""
        if self.alive():
            raise RuntimeError('coordinator already running')
        if same_ports is None:
            same_ports = self.starts > 0
        bus_port = self.bus_port if same_ports else 0
        http_port = self.http_port if same_ports else 0
        ep = os.path.join(self.data, 'endpoints.json')
        try:
            os.unlink(ep)  # so that we wait for this start's file, not the last one's
        except FileNotFoundError:
            pass
        if self.admin_token and self.token is None:
            self.token = create_token(self.data, '--scope', 'admin', '--name', 'test harness')
        argv = [binary('kiln-coordinator'),
                '--listen', 'tcp://127.0.0.1:%d' % bus_port,
                '--http', '127.0.0.1:%d' % http_port,
                '--data', self.data, '--log-level', 'info'] + self.extra
        self._spawn(argv)

        def ready():
            if not self.alive():
                raise AssertionError('coordinator exited with %s:\n%s'
                                     % (self.proc.returncode, self.log()))
            try:
                with open(ep) as f:
                    return json.load(f)
            except (FileNotFoundError, ValueError):
                return None
        try:
            endpoints = wait_for(ready, timeout, 'coordinator endpoints.json')
        except Timeout:
            raise Timeout('coordinator did not write endpoints.json:\n' + self.log())
        except AssertionError:
            raise
        self.bus = endpoints['bus']
        self.http = endpoints['http'].rstrip('/')
        self.bus_port = int(self.bus.rsplit(':', 1)[1])
        self.http_port = int(self.http.rsplit(':', 1)[1])
        assert self.bus.startswith('tcp://127.0.0.1:'), self.bus
        assert self.http.startswith('http://127.0.0.1:'), self.http
        if same_ports and bus_port:
            assert self.bus_port == bus_port and self.http_port == http_port, endpoints
        if self.token:
            _tokens[self.http] = self.token
        wait_for(lambda: self.api('GET', '/healthz')[0] == 200, timeout, 'coordinator /healthz')
        return self

    def restart(self, timeout=TIMEOUT):
        """Starts again on the same bus and HTTP ports with the same data dir."""
        return self.start(timeout, same_ports=True)

    # -- HTTP API

    def request(self, method, path, data=None, headers=None, timeout=70, token=_DEFAULT):
        """Raw request: returns (status, body bytes). Sends the harness's admin token
        (or `token`; None for none) unless headers has an Authorization."""
        headers = dict(headers or {})
        if token is _DEFAULT:
            token = self.token
        if token and not any(k.lower() == 'authorization' for k in headers):
            headers['Authorization'] = 'Bearer ' + token
        req = urllib.request.Request(self.http + path, data=data, method=method,
                                     headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def api(self, method, path, body=None, timeout=70, token=_DEFAULT):
        """JSON request: body is a JSON-able value (or bytes/str sent as they are).
        Returns (status, decoded JSON or None if the answer was not JSON)."""
        data = None
        headers = {}
        if body is not None:
            if isinstance(body, bytes):
                data = body
            elif isinstance(body, str):
                data = body.encode()
            else:
                data = json.dumps(body).encode()
            headers['Content-Type'] = 'application/json'
        status, raw = self.request(method, path, data, headers, timeout, token)
        try:
            return status, json.loads(raw.decode('utf-8')) if raw else None
        except ValueError:
            return status, None

    def get(self, path, timeout=70):
        """GET that must answer 200; returns the JSON."""
        status, v = self.api('GET', path, timeout=timeout)
        assert status == 200, 'GET %s -> %s %r' % (path, status, v)
        return v

    def submit(self, repo, ref='main', **kw):
        """POST /api/v1/runs; must answer 201; returns the response JSON."""
        body = dict(repo=repo, ref=ref, **kw)
        status, v = self.api('POST', '/api/v1/runs', body)
        assert status == 201, 'POST /api/v1/runs %r -> %s %r' % (body, status, v)
        return v

    def run(self, run_id):
        return self.get('/api/v1/runs/%s' % run_id)

    def runs(self):
        return self.get('/api/v1/runs')['runs']

    def agents(self):
        return self.get('/api/v1/agents')['agents']

    def job_log(self, job_id, attempt=None):
        """Every line of a job's log (current attempt unless given), paging with offset."""
        lines, offset = [], 0
        while True:
            q = '/api/v1/jobs/%s/log?offset=%d' % (job_id, offset)
            if attempt is not None:
                q += '&attempt=%d' % attempt
            v = self.get(q)
            lines += v['lines']
            if not v['lines']:
                return lines
            offset = v['next']

    def run_log(self, run_id):
        """Every line of a run's log so far, paging with offset."""
        lines, offset = [], 0
        while True:
            v = self.get('/api/v1/runs/%s/log?offset=%d' % (run_id, offset))
            lines += v['lines']
            if not v['lines']:
                return lines
            offset = v['next']

    def wait_run_done(self, run_id, timeout=TIMEOUT):
        """Waits until the run is completed; returns it (with jobs)."""
        def done():
            r = self.run(run_id)
            return r if r['state'] == 'completed' else None
        try:
            return wait_for(done, timeout, 'run %s to complete' % run_id, interval=0.1)
        except Timeout as e:
            raise Timeout('%s; run is now %s' % (e, json.dumps(self.run(run_id), indent=1)))

    def wait_agents(self, n, timeout=TIMEOUT):
        """Waits until at least n agents are online; returns the online agents."""
        def enough():
            online = [a for a in self.agents() if a['state'] == 'online']
            return online if len(online) >= n else None
        return wait_for(enough, timeout, '%d agent(s) online' % n, interval=0.05)


class Agent(_Process):
    """kiln-agent connected to a coordinator's bus."""

    def __init__(self, coordinator_bus, name='agent', labels='linux,x64', capacity=1, work=None,
                 extra=()):
        super().__init__(name)
        self.bus = coordinator_bus
        self.agent_name = name
        self.labels = labels
        self.capacity = capacity
        self.work = work or tempdir('kiln-agent-')
        self.extra = list(extra)

    def start(self):
        self._spawn([binary('kiln-agent'), '--coordinator', self.bus, '--name', self.agent_name,
                     '--labels', self.labels, '--capacity', str(self.capacity),
                     '--work', self.work, '--log-level', 'info',
                     # SIGTERM cancels running jobs at once, as stop() expects (a service
                     # lets them finish for shutdown_timeout: test_operations)
                     '--shutdown-timeout', '0'] + self.extra)
        return self


def wait_run_done(coord, run_id, timeout=TIMEOUT):
    """Module-level form of Coordinator.wait_run_done."""
    return coord.wait_run_done(run_id, timeout)


def wait_agents(coord, n, timeout=TIMEOUT):
    """Module-level form of Coordinator.wait_agents."""
    return coord.wait_agents(n, timeout)


# ---------------------------------------------------------------- CLI

_xdg = []


def _xdg_cache():
    """One cache home per test process, removed at exit with the other temp dirs."""
    if not _xdg:
        _xdg.append(tempdir('kiln-xdg-'))
    return _xdg[0]


def run_cli(*args, env=None, server=None, cwd=None, timeout=120, check=None):
    """Runs `kiln ARGS` and returns the CompletedProcess (text). `server`
    becomes --server; `env` is added to the environment; `check` asserts the
    exit status."""
    argv = [binary('kiln')]
    if server:
        argv += ['--server', server]
    args = [str(a) for a in args]
    full_env = dict(os.environ)
    full_env.pop('KILN_SERVER', None)
    full_env.pop('KILN_TOKEN', None)
    # `kiln run` keeps a store in $XDG_CACHE_HOME/kiln: never the real home's in a test
    full_env['XDG_CACHE_HOME'] = _xdg_cache()
    if env:
        full_env.update(env)
    # the coordinator's admin token, unless the test gives a token itself
    target = (server or full_env.get('KILN_SERVER') or '').rstrip('/')
    if target in _tokens and '--token' not in args and 'KILN_TOKEN' not in full_env and \
            not any(a.startswith('--token=') for a in args):
        full_env['KILN_TOKEN'] = _tokens[target]
    argv += args
    p = subprocess.Popen(argv, cwd=cwd, env=full_env, text=True, stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    _procs.append(p)
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        out, err = p.communicate()
        raise AssertionError('kiln %s: no exit within %ss\nstdout:\n%s\nstderr:\n%s'
                             % (' '.join(argv[1:]), timeout, out, err))
    r = subprocess.CompletedProcess(argv, p.returncode, out, err)
    if check is not None:
        assert r.returncode == check, 'kiln %s: exit %d, expected %d\nstdout:\n%s\nstderr:\n%s' % (
            ' '.join(argv[1:]), r.returncode, check, out, err)
    return r


def describe(r):
    """A CompletedProcess in a form for assertion messages."""
    return 'exit %s\n--- stdout ---\n%s\n--- stderr ---\n%s' % (r.returncode, r.stdout, r.stderr)


# ---------------------------------------------------------------- test runner

class Runner:
    """A minimal test runner: tests are functions; failures are printed with
    their traceback (plus registered process logs) and counted; finish()
    prints 'N passed, N failed' and exits 1 if any failed."""

    def __init__(self):
        self.passed = 0
        self.failed = 0
        self.failures = []
        self.t0 = time.monotonic()
        self.logs = []  # processes whose logs to show on failure

    def watch(self, *procs):
        self.logs.extend(procs)

    def run(self, fn, *args):
        name = fn.__name__
        t = time.monotonic()
        mark = len(self.logs)
        print('=== %s' % name, flush=True)
        try:
            fn(*args)
        except Exception:
            self.failed += 1
            self.failures.append(name)
            print('--- FAIL %s (%.1fs)' % (name, time.monotonic() - t))
            traceback.print_exc(file=sys.stdout)
            for p in self.logs:
                tail = p.log()[-6000:]
                print('--- log of %s (tail) ---\n%s' % (p.name, tail))
        else:
            self.passed += 1
            print('--- ok   %s (%.1fs)' % (name, time.monotonic() - t), flush=True)
        finally:
            del self.logs[mark:]
        sys.stdout.flush()

    def finish(self):
        if self.failures:
            print('failed: ' + ', '.join(self.failures))
        print('%d passed, %d failed (%.1fs)' % (self.passed, self.failed,
                                                time.monotonic() - self.t0))
        sys.stdout.flush()
        _cleanup()
        sys.exit(1 if self.failed else 0)
