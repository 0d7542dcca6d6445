"""
`kiln artifacts` and `kiln download` against a real coordinator and agent: a
job uploads a tree (nested directories, an executable, a symlink, an empty
file, a non-ASCII name, a 300 KB random file and one big enough to take the
streamed path), then the CLI lists it and fetches it into a directory, a
.tar.zst and a .zip, each checked file by file; unknown names and runs fail
with exit 1 and a clear message, usage errors with 2, no temporary store is
left behind. A fake server that sends a blob whose content does not match its
digest shows that the CLI refuses it. The API's blob reads are checked
directly too.
"""
import base64
import hashlib
import http.server
import io
import json
import os
import re
import stat
import subprocess
import sys
import tarfile
import threading
import zipfile

sys.path.insert(0, os.path.join(os.environ['KILN_SRC'], 'tests', 'harness'))
import kiln  # noqa: E402

kiln.BIN = os.path.abspath(kiln.BIN)  # one call runs in another directory

WF = r'''name: art
on: push
jobs:
  make:
    runs-on: linux
    steps:
      - run: |
          mkdir -p dist/nested/deep dist/bin
          echo alpha > dist/a.txt
          echo beta > dist/b.txt
          : > dist/empty.txt
          echo deep > dist/nested/deep/c.txt
          echo uni > 'dist/nested/ünï.txt'
          printf '#!/bin/sh\necho hi\n' > dist/bin/run.sh && chmod 755 dist/bin/run.sh
          ln -s a.txt dist/link
          head -c 300000 /dev/urandom > dist/rand.bin
          head -c 9000000 /dev/urandom > dist/big.bin
          cd dist && sha256sum rand.bin big.bin
      - uses: actions/upload-artifact@v4
        with:
          name: out
          path: dist/
      - uses: actions/upload-artifact@v4
        with:
          name: logs
          path: dist/a.txt
'''

SMALL = {
    'a.txt': b'alpha\n',
    'b.txt': b'beta\n',
    'empty.txt': b'',
    'nested/deep/c.txt': b'deep\n',
    'nested/ünï.txt': b'uni\n',
    'bin/run.sh': b'#!/bin/sh\necho hi\n',
}
FILES = sorted(list(SMALL) + ['rand.bin', 'big.bin'])  # regular files; link is a symlink

R = kiln.Runner()


def sha(b):
    return hashlib.sha256(b).hexdigest()


def expected_files(digests):
    """{path: sha256} of every regular file the artifact holds."""
    out = {p: sha(b) for p, b in SMALL.items()}
    out.update(digests)
    return out


def check_dir(d, want):
    got = {}
    for root, dirs, files in os.walk(d):
        for f in files:
            p = os.path.join(root, f)
            rel = os.path.relpath(p, d)
            if os.path.islink(p):
                continue
            with open(p, 'rb') as fh:
                got[rel] = sha(fh.read())
    assert got == want, (got, want)
    assert os.path.islink(os.path.join(d, 'link')), os.listdir(d)
    assert os.readlink(os.path.join(d, 'link')) == 'a.txt'
    mode = os.stat(os.path.join(d, 'bin/run.sh')).st_mode
    assert mode & 0o111 == 0o111, oct(mode)
    assert os.stat(os.path.join(d, 'a.txt')).st_mode & 0o111 == 0


def check_tar(path, want):
    with open(path, 'rb') as f:
        assert f.read(4) == b'\x28\xb5\x2f\xfd', 'not a zstd stream'
    raw = subprocess.run(['zstd', '-dc', path], stdout=subprocess.PIPE, check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(raw), mode='r:') as t:
        members = {m.name: m for m in t.getmembers()}
        got = {n: sha(t.extractfile(m).read()) for n, m in members.items() if m.isfile()}
        assert got == want, (got, want)
        assert members['link'].issym() and members['link'].linkname == 'a.txt', members['link']
        assert members['bin/run.sh'].mode & 0o777 == 0o755, oct(members['bin/run.sh'].mode)
        assert members['a.txt'].mode & 0o111 == 0
        assert members['big.bin'].size == 9000000


def check_zip(path, want):
    with zipfile.ZipFile(path) as z:
        assert z.testzip() is None
        infos = {i.filename: i for i in z.infolist()}
        got = {n: sha(z.read(n)) for n, i in infos.items()
               if not i.is_dir() and not stat.S_ISLNK(i.external_attr >> 16)}
        assert got == want, (got, want)
        link = infos['link']
        assert stat.S_ISLNK(link.external_attr >> 16), oct(link.external_attr >> 16)
        assert z.read('link') == b'a.txt'
        assert (infos['bin/run.sh'].external_attr >> 16) & 0o777 == 0o755
        assert (infos['a.txt'].external_attr >> 16) & 0o111 == 0


def test_download():
    repo, _ = kiln.make_repo({'.github/workflows/art.yml': WF})
    coord = kiln.Coordinator().start()
    agent = kiln.Agent(coord.bus).start()
    R.watch(coord, agent)
    work = kiln.tempdir('kiln-dl-')
    tmp = kiln.tempdir('kiln-dl-tmp-')  # TMPDIR of the CLI: must be empty afterwards
    env = {'TMPDIR': tmp}

    def cli(*args, **kw):
        return kiln.run_cli(*args, server=coord.http, env=env, **kw)

    try:
        coord.wait_agents(1)
        run = coord.wait_run_done(coord.submit(repo)['runs'][0]['id'])
        rid = run['id']
        job = run['jobs'][0]
        texts = [l['text'] for l in coord.job_log(job['id'])]
        assert run['conclusion'] == 'success', (run, texts)
        digests = {}
        for l in texts:
            m = re.match(r'^([0-9a-f]{64})  (rand\.bin|big\.bin)$', l)
            if m:
                digests[m.group(2)] = m.group(1)
        assert len(digests) == 2, texts
        want = expected_files(digests)

        # the list, as a table and as JSON
        r = cli('artifacts', rid, check=0)
        lines = r.stdout.splitlines()
        assert lines[0].split() == ['NAME', 'FILES', 'SIZE', 'EXPIRES'], r.stdout
        rows = {l.split()[0]: l.split() for l in lines[1:]}
        assert sorted(rows) == ['logs', 'out'], r.stdout
        assert rows['out'][1] == str(len(FILES)), r.stdout
        assert rows['out'][2:4] == ['9.3', 'MB'], r.stdout
        assert re.match(r'^\d{4}-\d\d-\d\d$', rows['out'][4]), r.stdout
        v = json.loads(cli('artifacts', rid, '--json', check=0).stdout)
        arts = v['artifacts']
        assert [a['name'] for a in arts] == ['logs', 'out'], v
        out = arts[1]
        assert out['files'] == len(FILES) and out['job_id'] == job['id'], out
        assert out['size'] == 9000000 + 300000 + sum(len(b) for b in SMALL.values()), out
        assert re.match(r'^[0-9a-f]{64}$', out['manifest']), out
        assert out['expires_ms'] > out['created_ms'] > 0, out

        # the API's blob reads
        st, b = coord.api('GET', '/api/v1/blobs/%s?max=10' % out['manifest'])
        assert st == 200 and b['digest'] == out['manifest'] and b['offset'] == 0, (st, b)
        assert len(base64.b64decode(b['data'])) == 10 and b['total'] > 10, b
        total = b['total']
        st, b = coord.api('GET', '/api/v1/blobs/%s?offset=4' % out['manifest'])
        assert st == 200 and len(base64.b64decode(b['data'])) == total - 4, (st, b)
        st, b = coord.api('GET', '/api/v1/blobs/%s?offset=%d' % (out['manifest'], total + 1))
        assert st == 400, (st, b)
        st, b = coord.api('GET', '/api/v1/blobs/%s' % ('0' * 64))
        assert st == 404, (st, b)
        st, b = coord.api('GET', '/api/v1/blobs/%s' % out['manifest'].upper())
        assert st == 400 and 'digest' in b['error'], (st, b)
        st, b = coord.api('GET', '/api/v1/blobs/../../etc/passwd')
        assert st in (400, 404), (st, b)
        st, b = coord.api('GET', '/api/v1/runs/%d/artifacts' % (rid + 1000))
        assert st == 404, (st, b)

        # into a directory: -o DIR, then the default ./NAME
        d = os.path.join(work, 'got')
        r = cli('download', rid, 'out', '-o', d, check=0)
        assert r.stderr == '', r.stderr  # not a terminal: no progress bar
        assert 'out' in r.stdout, r.stdout
        check_dir(d, want)
        cli('download', rid, 'out', cwd=work, check=0)
        check_dir(os.path.join(work, 'out'), want)

        # as archives
        t = os.path.join(work, 'out.tar.zst')
        cli('download', rid, 'out', '--tar', t, check=0)
        check_tar(t, want)
        z = os.path.join(work, 'out.zip')
        cli('download', rid, 'out', '--zip', z, check=0)
        check_zip(z, want)
        leftovers = [f for f in os.listdir(work) if '.tmp.' in f]
        assert not leftovers, leftovers

        # the same archives straight from the HTTP API
        base = '/api/v1/runs/%d/artifacts/out/download' % rid
        st, body = coord.request('GET', base + '?format=zip')
        assert st == 200 and body[:2] == b'PK', (st, body[:64])
        z2 = os.path.join(work, 'api.zip')
        with open(z2, 'wb') as f:
            f.write(body)
        check_zip(z2, want)
        st, body = coord.request('GET', base)
        assert st == 200 and body[:4] == b'\x28\xb5\x2f\xfd', (st, body[:16])  # zstd magic
        t2 = os.path.join(work, 'api.tar.zst')
        with open(t2, 'wb') as f:
            f.write(body)
        check_tar(t2, want)
        st, body = coord.request('GET', base + '?format=rar')
        assert st == 400, (st, body)
        st, body = coord.request('GET', '/api/v1/runs/%d/artifacts/nope/download' % rid)
        assert st == 404 and b'nope' in body, (st, body)
        st, body = coord.request('GET', base, token=None)
        assert st == 401, (st, body)

        # failures
        r = cli('download', rid, 'nope', '-o', os.path.join(work, 'x'), check=1)
        assert "no artifact 'nope' in run %d (it has: logs, out)" % rid in r.stderr, r.stderr
        assert not os.path.exists(os.path.join(work, 'x'))
        r = cli('download', rid + 1000, 'out', check=1)
        assert 'no run %d' % (rid + 1000) in r.stderr, r.stderr
        r = cli('artifacts', rid + 1000, check=1)
        assert 'no run %d' % (rid + 1000) in r.stderr, r.stderr
        cli('download', rid, check=2)
        cli('download', rid, 'out', '-o', d, '--zip', z, check=2)
        cli('artifacts', check=2)
        assert os.listdir(tmp) == [], os.listdir(tmp)  # every temporary store removed
    finally:
        agent.stop()
        coord.stop()


class FakeHandler(http.server.BaseHTTPRequestHandler):
    """A server whose artifact's manifest blob decompresses to something else."""
    frame = b''
    digest = ''

    def log_message(self, *a):
        pass

    def do_GET(self):
        if self.path == '/api/v1/runs/7/artifacts':
            body = {'artifacts': [{'name': 'bad', 'size': 1, 'files': 1, 'job_id': 1,
                                   'manifest': self.digest, 'created_ms': 1,
                                   'expires_ms': 4102444800000}]}
        elif self.path.startswith('/api/v1/blobs/%s?' % self.digest):
            body = {'digest': self.digest, 'offset': 0, 'total': len(self.frame),
                    'data': base64.b64encode(self.frame).decode()}
        else:
            self.send_response(404)
            self.end_headers()
            return
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header('Content-Type', 'application/json')
        self.send_header('Content-Length', str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def test_corrupt_blob_refused():
    FakeHandler.frame = subprocess.run(['zstd', '-c', '-q'], input=b'not what was named',
                                       stdout=subprocess.PIPE, check=True).stdout
    FakeHandler.digest = sha(b'what was named')
    srv = http.server.ThreadingHTTPServer(('127.0.0.1', 0), FakeHandler)
    th = threading.Thread(target=srv.serve_forever, daemon=True)
    th.start()
    tmp = kiln.tempdir('kiln-dl-tmp-')
    work = kiln.tempdir('kiln-dl-')
    try:
        r = kiln.run_cli('download', 7, 'bad', '-o', os.path.join(work, 'x'),
                         server='http://127.0.0.1:%d' % srv.server_address[1],
                         env={'TMPDIR': tmp}, check=1)
        assert FakeHandler.digest in r.stderr and 'refused' in r.stderr, r.stderr
        assert not os.path.exists(os.path.join(work, 'x'))
        assert os.listdir(tmp) == [], os.listdir(tmp)
    finally:
        srv.shutdown()
        srv.server_close()


R.run(test_download)
R.run(test_corrupt_blob_refused)
R.finish()
