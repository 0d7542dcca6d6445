#!/usr/bin/python3
"""kiln lint against GitHub's own workflow parser.

Every workflow of the corpus in tests/fixtures/workflows/ goes through
`kiln lint FILE` and through @actions/workflow-parser (tests/oracle/parse.mjs,
under node). Each file GitHub's parser accepts, kiln must accept; each file it
rejects, kiln must reject. Disagreements are printed as a table and fail the
test. The corpus holds the pipelines of the seed documents and hand-written
workflows, valid and broken, of the shapes real repositories use.

Also checked: kiln's output is one "file:line:col: message" line per problem,
the exit status is 0 for a clean file, 1 for a file with problems, 2 for a
usage error, and without FILES `kiln lint` finds the repository's workflows
(.kiln/workflows first, else .github/workflows).

Needs node and tests/oracle/node_modules (scripts/deps.sh installs them;
`cd tests/oracle && npm install` does too).
"""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

SRC = os.environ.get('KILN_SRC') or os.path.abspath(
    os.path.join(os.path.dirname(__file__), '..', '..'))
BIN = os.environ.get('KILN_BIN') or os.path.join(SRC, 'build', 'bin')
KILN = os.path.join(BIN, 'kiln')
ORACLE = os.path.join(SRC, 'tests', 'oracle')
CORPUS = os.path.join(SRC, 'tests', 'fixtures', 'workflows')
MIN_CORPUS = 40


def fail(msg):
    print('FAIL: ' + msg)
    sys.exit(1)


def oracle_verdicts(files):
    """{file: [error, ...]} from GitHub's parser, all files in one node process."""
    node = shutil.which('node')
    if not node:
        fail('node is not installed (scripts/deps.sh installs it)')
    if not os.path.isdir(os.path.join(ORACLE, 'node_modules', '@actions', 'workflow-parser')):
        fail('tests/oracle/node_modules is missing: run scripts/deps.sh '
             '(or cd tests/oracle && npm install)')
    p = subprocess.run([node, '--import', './json-hook.mjs', 'parse.mjs', '--batch'] + files,
                       cwd=ORACLE, capture_output=True, text=True, timeout=240)
    if p.returncode != 0:
        fail('the oracle failed (%d): %s' % (p.returncode, p.stderr[-2000:]))
    out = {}
    for line in p.stdout.splitlines():
        if line.strip():
            d = json.loads(line)
            if d.get('crashed'):
                fail('the oracle crashed on %s: %s' % (d['file'], d['errors']))
            out[d['file']] = d['errors']
    missing = [f for f in files if f not in out]
    if missing:
        fail('no oracle verdict for %s' % missing)
    return out


def kiln_verdict(path):
    """(exit status, problem lines) of `kiln lint path`."""
    p = subprocess.run([KILN, 'lint', path], capture_output=True, text=True, timeout=60)
    lines = [l for l in p.stdout.splitlines() if l]
    return p.returncode, lines, p.stderr


def short(s, n=90):
    s = s.replace('\n', ' ')
    return s if len(s) <= n else s[:n - 3] + '...'


CLEAN = 'on: push\njobs:\n  a:\n    runs-on: linux\n    steps:\n      - run: make\n'
BROKEN = 'on: pushh\njobs:\n  a:\n    runs-on: linux\n    steps:\n      - run: make\n'


def cli_checks():
    """`kiln lint` without FILES, and its exit statuses."""
    def lint(cwd, *args):
        return subprocess.run([KILN, 'lint'] + list(args), cwd=cwd, capture_output=True,
                              text=True, timeout=60)

    def write(root, rel, text):
        path = os.path.join(root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, 'w') as f:
            f.write(text)

    with tempfile.TemporaryDirectory() as root:
        p = lint(root)
        assert p.returncode == 2, (p.returncode, p.stdout, p.stderr)
        assert 'no workflow files' in p.stderr, p.stderr
        assert p.stdout == '', p.stdout

        write(root, '.github/workflows/ci.yml', CLEAN)
        write(root, '.github/workflows/nightly.yaml', BROKEN)
        write(root, '.github/workflows/notes.txt', 'not a workflow')
        p = lint(root)
        assert p.returncode == 1, (p.returncode, p.stdout, p.stderr)
        assert p.stdout == ".github/workflows/nightly.yaml:1:5: unknown event 'pushh'\n", p.stdout

        # .kiln/workflows, when it has workflows, is the only place looked at
        write(root, '.kiln/workflows/ci.yml', CLEAN)
        p = lint(root)
        assert p.returncode == 0 and p.stdout == '', (p.returncode, p.stdout, p.stderr)

        # explicit files, several at once: every problem of each
        p = lint(root, '.github/workflows/nightly.yaml', '.kiln/workflows/ci.yml',
                 '.github/workflows/nightly.yaml')
        assert p.returncode == 1 and len(p.stdout.splitlines()) == 2, (p.returncode, p.stdout)

        p = lint(root, 'missing.yml')
        assert p.returncode == 2 and 'missing.yml' in p.stderr, (p.returncode, p.stderr)
        p = lint(root, '--bogus')
        assert p.returncode == 2, (p.returncode, p.stderr)
        p = lint(root, '--help')
        assert p.returncode == 0 and 'Usage: kiln lint' in p.stdout, (p.returncode, p.stdout)
    print('cli: ok')


def main():
    if not os.access(KILN, os.X_OK):
        fail('no kiln binary at %s (set KILN_BIN)' % KILN)
    cli_checks()
    names = sorted(n for n in os.listdir(CORPUS) if n.endswith(('.yml', '.yaml')))
    if len(names) < MIN_CORPUS:
        fail('the corpus has %d workflows, fewer than %d' % (len(names), MIN_CORPUS))
    files = [os.path.join(CORPUS, n) for n in names]
    oracle = oracle_verdicts(files)

    rows, problems = [], []
    accepted = rejected = 0
    for name, path in zip(names, files):
        status, lines, err = kiln_verdict(path)
        if status not in (0, 1):
            problems.append('%s: kiln lint exited %d: %s' % (name, status, short(err, 200)))
            continue
        pat = re.compile(r'^' + re.escape(path) + r':\d+:\d+: .+')
        bad = [l for l in lines if not pat.match(l)]
        if bad:
            problems.append('%s: malformed problem lines: %s' % (name, bad[:3]))
        if (status == 0) != (not lines):
            problems.append('%s: exit %d with %d problem lines' % (name, status, len(lines)))
        gh_ok = not oracle[path]
        kiln_ok = status == 0
        if gh_ok:
            accepted += 1
        else:
            rejected += 1
        if gh_ok != kiln_ok:
            rows.append((name, 'accepts' if gh_ok else 'rejects',
                         'accepts' if kiln_ok else 'rejects',
                         short(oracle[path][0]) if oracle[path] else '',
                         short(lines[0]) if lines else ''))

    print('corpus: %d workflows (GitHub accepts %d, rejects %d)' % (len(names), accepted,
                                                                      rejected))
    if not accepted or not rejected:
        problems.append('the corpus must hold both valid and broken workflows')
    if rows:
        w = max(len(r[0]) for r in rows)
        print('\n%d disagreement(s) with GitHub\'s parser:' % len(rows))
        print('%-*s  %-8s %-8s  %s' % (w, 'workflow', 'github', 'kiln', 'first problem'))
        for r in rows:
            print('%-*s  %-8s %-8s  github: %s' % (w, r[0], r[1], r[2], r[3] or '-'))
            print('%-*s  %-8s %-8s  kiln:   %s' % (w, '', '', '', r[4] or '-'))
    for p in problems:
        print('PROBLEM: ' + p)
    if rows or problems:
        sys.exit(1)
    print('all %d agree' % len(names))


if __name__ == '__main__':
    main()
