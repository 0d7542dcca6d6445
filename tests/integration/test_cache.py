"""
actions/cache and the artifact actions against a real coordinator and real
agents: a miss saves, a second run on the same agent restores from the
agent's own store (nothing fetched), a fresh agent fetches from the
coordinator, an unchanged re-save sends nothing, restore-keys match by prefix,
keys are immutable, and artifacts go from one job to the next.
"""
import os
import re
import sqlite3
import subprocess
import sys

sys.path.insert(0, os.path.join(os.environ['KILN_SRC'], 'tests', 'harness'))
import kiln  # noqa: E402

WF = '''\
name: ci
on: push
jobs:
  build:
    runs-on: linux
    steps:
      - uses: actions/checkout@v4
      - id: c
        uses: actions/cache@v4
        with:
          path: |
            deps
            !deps/skip.tmp
          key: deps-${{ hashFiles('lock.txt') }}
          restore-keys: |
            deps-
      - run: echo "hit=${{ steps.c.outputs.cache-hit }}"
      - if: steps.c.outputs.cache-hit != 'true' && hashFiles('deps/big.bin') == ''
        run: |
          mkdir -p deps/sub
          head -c 300000 /dev/urandom > deps/big.bin
          echo small > deps/small.txt
          printf '#!/bin/sh\\necho tool ran\\n' > deps/sub/tool && chmod 755 deps/sub/tool
          ln -s small.txt deps/link
          echo skip > deps/skip.tmp
      - run: |
          deps/sub/tool
          cat deps/link
          sha256sum deps/big.bin
          test ! -e deps/skip.tmp || echo "skip.tmp present"
      - uses: actions/upload-artifact@v4
        with:
          name: out
          path: deps/
  use:
    needs: build
    runs-on: linux
    steps:
      - uses: actions/download-artifact@v4
        with:
          name: out
          path: got
      - run: |
          cat got/small.txt
          got/sub/tool
          sha256sum got/big.bin
      - uses: actions/upload-artifact@v4
        with:
          name: out
          path: got/small.txt
      - if: always()
        run: echo "after the refused upload"
'''

HALVES = '''\
name: halves
on: push
jobs:
  save:
    runs-on: linux
    steps:
      - run: mkdir -p out && echo "one" > out/a.txt
      - uses: actions/cache/save@v4
        with:
          path: out
          key: fixed-key
      - id: look
        uses: actions/cache/restore@v4
        with:
          path: out
          key: fixed
          lookup-only: true
      - run: echo "look=${{ steps.look.outputs.cache-hit }} ${{ steps.look.outputs.cache-matched-key }}"
      - id: miss
        uses: actions/cache/restore@v4
        with:
          path: out
          key: nothing-like-it
          fail-on-cache-miss: true
      - if: always()
        run: echo "miss=${{ steps.miss.outcome }}"
'''

R = kiln.Runner()


def log_texts(coord, run):
    return {j['key']: [l['text'] for l in coord.job_log(j['id'])] for j in run['jobs']}


def one(lines, pattern):
    found = [l for l in lines if re.search(pattern, l)]
    assert len(found) == 1, (pattern, lines)
    return found[0]


def big_digest(lines):
    return one(lines, r'^[0-9a-f]{64}  deps/big\.bin$').split()[0]


def test_cache_and_artifacts():
    repo, _ = kiln.make_repo({'.github/workflows/ci.yml': WF, 'lock.txt': 'v1\n'})
    coord = kiln.Coordinator().start()
    a1 = kiln.Agent(coord.bus, name='warm').start()
    R.watch(coord, a1)
    try:
        coord.wait_agents(1)
        # 1: a miss; the job makes deps, the post step saves them; the artifact goes across
        run = coord.wait_run_done(coord.submit(repo)['runs'][0]['id'])
        logs = log_texts(coord, run)
        jobs = {j['key']: j for j in run['jobs']}
        assert jobs['build']['conclusion'] == 'success', (run, logs)
        b = logs['build']
        one(b, r'^Cache not found for input keys: deps-[0-9a-f]{64}, deps-$')
        one(b, r'^hit=false$')
        one(b, r'^Post Run actions/cache@v4$')
        saved = one(b, r'^Cache saved with key: deps-[0-9a-f]{64} \(3 files, ')
        assert 'skip.tmp present' in b, b  # in the workspace, just not in the cache
        digest = big_digest(b)
        one(b, r'^Artifact out uploaded: 4 files')
        # the second job got the artifact, and its own upload of the same name is refused
        assert jobs['use']['conclusion'] == 'failure', (run, logs)
        u = logs['use']
        one(u, r'^Artifact out downloaded to .*/got: 4 files')
        assert 'small' in u and 'tool ran' in u, u
        assert '%s  got/big.bin' % digest in u, u
        one(u, r'^Error: Failed to upload the artifact out: an artifact with this name exists')
        assert 'after the refused upload' in u, u

        # 2: the same key on the same agent: restored from its own store, nothing fetched
        run = coord.wait_run_done(coord.submit(repo)['runs'][0]['id'])
        b = log_texts(coord, run)['build']
        one(b, r'^hit=true$')
        one(b, r'^Cache restored from key: deps-[0-9a-f]{64} \(.*; 0 blobs, 0 B fetched')
        assert big_digest(b) == digest
        assert not any(l.startswith('Post Run') for l in b), b  # an exact hit saves nothing
        assert 'skip.tmp present' not in b, b

        # 3: a fresh agent fetches the blobs from the coordinator
        a1.stop()
        a2 = kiln.Agent(coord.bus, name='cold').start()
        R.watch(a2)
        kiln.wait_for(lambda: [a for a in coord.agents()
                               if a['name'] == 'cold' and a['state'] == 'online'], 30,
                      'the cold agent')
        run = coord.wait_run_done(coord.submit(repo)['runs'][0]['id'])
        b = log_texts(coord, run)['build']
        restored = one(b, r'^Cache restored from key: ')
        m = re.search(r'; (\d+) blobs, ', restored)
        assert m and int(m.group(1)) >= 4, restored
        assert big_digest(b) == digest

        # 4: a new key: restore-keys finds the old entry; the save that follows sends nothing
        kiln.commit(repo, files={'lock.txt': 'v2\n'})
        run = coord.wait_run_done(coord.submit(repo)['runs'][0]['id'])
        b = log_texts(coord, run)['build']
        one(b, r'^hit=false$')
        one(b, r'^Cache restored from key: deps-')
        resaved = one(b, r'^Cache saved with key: deps-')
        # no file is sent again; only the manifest (deps/ is whole now: no exclusion needed)
        assert re.search(r'; [01] blobs, \d+ B sent', resaved), resaved
        assert resaved.split(' (')[0] != saved.split(' (')[0]
        assert big_digest(b) == digest

        # 5: and a re-save of exactly what was restored sends nothing at all
        kiln.commit(repo, files={'lock.txt': 'v3\n'})
        run = coord.wait_run_done(coord.submit(repo)['runs'][0]['id'])
        b = log_texts(coord, run)['build']
        resaved = one(b, r'^Cache saved with key: deps-')
        assert '0 blobs, 0 B sent' in resaved, resaved
        a2.stop()
    finally:
        coord.stop()


def test_cache_halves():
    repo, _ = kiln.make_repo({'.github/workflows/halves.yml': HALVES})
    coord = kiln.Coordinator().start()
    agent = kiln.Agent(coord.bus).start()
    R.watch(coord, agent)
    try:
        coord.wait_agents(1)
        run = coord.wait_run_done(coord.submit(repo)['runs'][0]['id'])
        s = log_texts(coord, run)['save']
        one(s, r'^Cache saved with key: fixed-key \(1 files')
        one(s, r'^Cache found and can be restored from key: fixed-key')
        one(s, r'^look=false fixed-key$')  # a prefix match is not a hit
        one(s, r'^Error: Failed to restore cache entry\. Exiting as fail-on-cache-miss is set')
        one(s, r'^miss=failure$')
        # keys are immutable: the second save is refused with a warning, the step succeeds
        run = coord.wait_run_done(coord.submit(repo)['runs'][0]['id'])
        s = log_texts(coord, run)['save']
        one(s, r'^Warning: Failed to save: Unable to reserve cache with key fixed-key')
        steps = [j for j in run['jobs'] if j['key'] == 'save'][0]['steps']
        assert steps[1]['conclusion'] == 'success', steps
        # the API lists the entry and deletes it; then the key is free again
        v = coord.get('/api/v1/caches?key=fixed')
        assert v['total'] == 1 and v['caches'][0]['key'] == 'fixed-key', v
        assert v['caches'][0]['scope'] == 'refs/heads/main' and v['bytes'] > 0, v
        status, _ = coord.api('DELETE', '/api/v1/caches/%d' % v['caches'][0]['id'])
        assert status == 200
        status, _ = coord.api('DELETE', '/api/v1/caches/%d' % v['caches'][0]['id'])
        assert status == 404
        assert coord.get('/api/v1/caches')['total'] == 0
        run = coord.wait_run_done(coord.submit(repo)['runs'][0]['id'])
        one(log_texts(coord, run)['save'], r'^Cache saved with key: fixed-key ')
    finally:
        agent.stop()
        coord.stop()


GC_WF = '''\
name: gc
on: push
jobs:
  make:
    runs-on: linux
    steps:
      - run: mkdir -p out && echo "one" > out/a.txt && echo "two" > out/b.txt
      - uses: actions/cache/save@v4
        with:
          path: out
          key: gc-key
      - uses: actions/upload-artifact@v4
        with:
          name: art
          path: out/a.txt
          retention-days: 1
      - id: r
        uses: actions/cache/restore@v4
        with:
          path: out
          key: gc-key
      - run: echo "found=${{ steps.r.outputs.cache-matched-key }}"
'''


def gc(coord, grace):
    r = subprocess.run([kiln.binary('kiln-coordinator'), '--data', coord.data, 'gc',
                        '--grace', grace], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r
    return {m.group(1): int(m.group(2))
            for m in re.finditer(r'^([a-z ,()]+?): (\d+)', r.stdout, re.M)}


def test_gc():
    repo, _ = kiln.make_repo({'.github/workflows/gc.yml': GC_WF})
    coord = kiln.Coordinator().start()
    agent = kiln.Agent(coord.bus).start()
    R.watch(coord, agent)
    try:
        coord.wait_agents(1)
        run = coord.wait_run_done(coord.submit(repo)['runs'][0]['id'])
        assert run['conclusion'] == 'success', run
        # everything is referenced: a pass beside the running coordinator removes nothing
        st = gc(coord, '0')
        assert st['blobs removed'] == 0 and st['blobs kept'] == 4, st  # 2 files, 2 manifests
        # the entries age (as if a week had passed)
        db = sqlite3.connect(os.path.join(coord.data, 'kiln.db'), timeout=10)
        db.execute('UPDATE caches SET used_ms = 0')
        db.execute('UPDATE artifacts SET expires_ms = 0')
        db.commit()
        db.close()
        # the first pass drops the entries and only notes their blobs; a pass past the
        # grace removes them
        st = gc(coord, '1h')
        assert st['cache entries removed'] == 1 and st['artifacts expired'] == 1, st
        assert st['blobs removed'] == 0, st
        assert st['blobs unreferenced, kept until the grace has passed'] == 4, st
        st = gc(coord, '0')
        assert st['blobs removed'] == 4 and st['blobs kept'] == 0, st
        # the cache is gone for the next run (which saves it again)
        run = coord.wait_run_done(coord.submit(repo)['runs'][0]['id'])
        logs = log_texts(coord, run)['make']
        one(logs, r'^Cache saved with key: gc-key ')
        one(logs, r'^found=gc-key$')
    finally:
        agent.stop()
        coord.stop()


MANY = '''\
name: many
on: push
jobs:
  make:
    runs-on: linux
    steps:
      - id: c
        uses: actions/cache@v4
        with:
          path: many
          key: many-files
      - if: steps.c.outputs.cache-hit != 'true'
        run: mkdir -p many && for i in $(seq 1 300); do echo "file $i" > many/f$i; done
      - run: ls many | wc -l && cat many/f1 many/f300
'''


def test_many_small_files():
    """300 small blobs: uploads of many pieces in one message, and a cold agent fetching
    them with many wants in one message."""
    repo, _ = kiln.make_repo({'.github/workflows/many.yml': MANY})
    coord = kiln.Coordinator().start()
    a1 = kiln.Agent(coord.bus, name='first').start()
    R.watch(coord, a1)
    try:
        coord.wait_agents(1)
        run = coord.wait_run_done(coord.submit(repo)['runs'][0]['id'])
        logs = log_texts(coord, run)['make']
        saved = one(logs, r'^Cache saved with key: many-files \(300 files')
        assert re.search(r'; 301 blobs, ', saved), saved
        a1.stop()
        a2 = kiln.Agent(coord.bus, name='second').start()
        R.watch(a2)
        kiln.wait_for(lambda: [a for a in coord.agents()
                               if a['name'] == 'second' and a['state'] == 'online'], 30,
                      'the second agent')
        run = coord.wait_run_done(coord.submit(repo)['runs'][0]['id'])
        logs = log_texts(coord, run)['make']
        restored = one(logs, r'^Cache restored from key: many-files ')
        assert re.search(r'; 301 blobs, ', restored), restored
        assert '300' in logs and 'file 1' in logs and 'file 300' in logs, logs
        a2.stop()
    finally:
        coord.stop()


R.run(test_many_small_files)
R.run(test_cache_and_artifacts)
R.run(test_gc)
R.run(test_cache_halves)
R.finish()
