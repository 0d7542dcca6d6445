"""
Actions run by the agent, end to end, on repositories the test makes:
local composite actions (inputs with defaults, outputs, nesting, GITHUB_ENV,
masking) and the ways an action fails (bad action.yml, missing input,
missing action, docker, too deep, no node) through `kiln run`; remote
composite and node20 actions served from local bare repositories through the
action source (KILN_ACTION_SOURCE for `kiln run`, --action-source for
kiln-agent), with the checkout cache reused by a second run and refreshed when
the tag moves. No network host is ever contacted.
"""
import os
import re
import sys

sys.path.insert(0, os.path.join(os.environ['KILN_SRC'], 'tests', 'harness'))
import kiln  # noqa: E402

R = kiln.Runner()


def local(repo, expect=None, env=None, timeout=30):
    """`kiln run REPO` with its own TMPDIR, which must be empty again afterwards."""
    tmp = kiln.tempdir('kiln-tmp-')
    e = {'TMPDIR': tmp}
    e.update(env or {})
    r = kiln.run_cli('run', repo, env=e, timeout=timeout)
    if expect is not None:
        assert r.returncode == expect, 'expected exit %d, got:\n%s' % (expect, kiln.describe(r))
    assert os.listdir(tmp) == [], 'kiln run left %s in TMPDIR' % os.listdir(tmp)
    return r


def log_lines(out, job):
    p = '[%s] ' % job
    return [l[len(p):] for l in out.splitlines() if l.startswith(p)]


def results(out):
    """{job: result} from the summary table of `kiln run`."""
    res = {}
    for line in out.splitlines():
        m = re.fullmatch(r'(\S+)\s+(success|failure|cancelled|skipped)\s+(\S+)', line)
        if m:
            res[m.group(1)] = m.group(2)
    return res


# ---------------------------------------------------------------- local composite actions

GREET = '''\
name: greet
description: says hello
inputs:
  who:
    description: whom to greet
    default: world
  greeting:
    default: ${{ github.event_name }}-hello
  secret-word:
    default: ''
outputs:
  message:
    description: what was said
    value: ${{ steps.say.outputs.text }}
  twice:
    value: ${{ steps.say.outputs.text }}/${{ steps.again.outputs.text }}
runs:
  using: composite
  steps:
    - id: say
      shell: bash
      run: |
        echo "say: ${{ inputs.greeting }} ${{ inputs.who }}"
        echo "text=${{ inputs.greeting }}, ${{ inputs.who }}" >> "$GITHUB_OUTPUT"
        echo "GREETED=${{ inputs.who }}" >> "$GITHUB_ENV"
        echo "action_path_ok=$([ "$GITHUB_ACTION_PATH" = "${{ github.action_path }}" ] && [ -f "$GITHUB_ACTION_PATH/action.yml" ] && echo yes)"
        echo "input_env=${INPUT_WHO:-unset}"
    - id: again
      shell: sh
      env:
        LOCAL: local-${{ inputs.who }}
      run: |
        echo "again: GREETED=$GREETED LOCAL=$LOCAL CALLER=$CALLER"
        echo "text=again" >> "$GITHUB_OUTPUT"
    - if: inputs.secret-word != ''
      shell: bash
      env:
        WORD: ${{ inputs.secret-word }}
      run: |
        echo "::add-mask::$WORD"
        echo "inside: $WORD"
'''

OUTER = '''\
inputs:
  name:
    required: true
outputs:
  inner:
    value: ${{ steps.in.outputs.message }}
  status:
    value: ${{ steps.flaky.outcome }}/${{ steps.flaky.conclusion }}
runs:
  using: composite
  steps:
    - id: in
      uses: ./.github/actions/greet
      with:
        who: nested-${{ inputs.name }}
    - id: flaky
      shell: bash
      continue-on-error: true
      run: exit 3
    - shell: bash
      if: failure()
      run: |
        echo "outer: failure() must stay false"
    - shell: bash
      run: |
        echo "outer: after flaky, GREETED=$GREETED"
        mkdir -p "$RUNNER_TEMP/outer-bin"
        printf '#!/bin/sh\\necho "tool on PATH from a composite step"\\n' > "$RUNNER_TEMP/outer-bin/outer-tool"
        chmod +x "$RUNNER_TEMP/outer-bin/outer-tool"
        echo "$RUNNER_TEMP/outer-bin" >> "$GITHUB_PATH"
'''

LOCAL_WF = '''\
on: push
jobs:
  composite:
    runs-on: linux
    steps:
      - uses: actions/checkout@v4
      - id: defaults
        uses: ./.github/actions/greet
        env:
          CALLER: from-step-env
      - id: given
        name: greet kiln
        uses: ./.github/actions/greet/
        with:
          who: kiln
          greeting: hi
      - run: |
          echo "defaults=${{ steps.defaults.outputs.message }}"
          echo "given=${{ steps.given.outputs.message }}"
          echo "twice=${{ steps.given.outputs.twice }}"
          echo "env GREETED=$GREETED"
      - id: outer
        uses: ./.github/actions/outer
        with:
          name: deep
      - run: |
          echo "outer=${{ steps.outer.outputs.inner }}"
          echo "outer status=${{ steps.outer.outputs.status }}"
          echo "env after nested GREETED=$GREETED"
          outer-tool
      - uses: ./.github/actions/greet
        with:
          secret-word: hunter2
      - run: echo "later hunter2"
'''


def test_local_composite():
    repo, _ = kiln.make_repo({
        '.github/workflows/ci.yml': LOCAL_WF,
        '.github/actions/greet/action.yml': GREET,
        '.github/actions/outer/action.yaml': OUTER,
    })
    r = local(repo, expect=0)
    out = log_lines(r.stdout, 'composite')
    text = '\n'.join(out)
    # inputs: defaults (an expression) and given values
    assert 'say: push-hello world' in out, r.stdout
    assert 'say: hi kiln' in out, r.stdout
    # the action's own directory, and no INPUT_ variables for a composite action
    assert out.count('action_path_ok=yes') >= 2, r.stdout
    assert 'input_env=unset' in out, r.stdout
    # env: GITHUB_ENV of an earlier composite step, the step's own env, the caller's env
    assert 'again: GREETED=world LOCAL=local-world CALLER=from-step-env' in out, r.stdout
    assert 'again: GREETED=kiln LOCAL=local-kiln CALLER=' in out, r.stdout
    # outputs, evaluated against the action's steps; GITHUB_ENV seen by the job's later steps
    assert 'defaults=push-hello, world' in out, r.stdout
    assert 'given=hi, kiln' in out, r.stdout
    assert 'twice=hi, kiln/again' in out, r.stdout
    assert 'env GREETED=kiln' in out, r.stdout
    # a composite inside a composite; continue-on-error and status inside an action
    assert 'say: push-hello nested-deep' in out, r.stdout
    assert 'outer=push-hello, nested-deep' in out, r.stdout
    assert 'outer status=failure/success' in out, r.stdout
    assert 'outer: failure() must stay false' not in text, r.stdout
    assert 'outer: after flaky, GREETED=nested-deep' in out, r.stdout
    assert 'env after nested GREETED=nested-deep' in out, r.stdout
    assert 'tool on PATH from a composite step' in out, r.stdout
    # ::add-mask:: inside an action masks the rest of the job
    assert 'inside: ***' in out and 'later ***' in out, r.stdout
    assert 'hunter2' not in r.stdout, r.stdout
    # the composite's steps have titles in the log
    assert '==> greet kiln' in out, r.stdout
    assert any(l.startswith('==> Run echo "say: ') for l in out), r.stdout
    assert results(r.stdout) == {'composite': 'success'}, r.stdout


# ---------------------------------------------------------------- how actions fail

BAD_YAML = '''\
name: bad
runs:
  using: composite
  steps:
    - name: no shell
      run: echo hi
'''

BROKEN_YAML = '''\
name: broken
runs: [
'''

DOCKERFILE_ACTION = '''\
name: dock
runs:
  using: docker
  image: Dockerfile
'''

RECURSE = '''\
runs:
  using: composite
  steps:
    - uses: ./actions/recurse
'''

NEEDS = '''\
inputs:
  must:
    required: true
runs:
  using: composite
  steps:
    - run: echo "must=${{ inputs.must }}"
      shell: bash
'''

NODE_LOCAL = '''\
runs:
  using: node20
  main: index.js
'''

FAIL_WF = '''\
on: push
jobs:
  {jobs}
'''

FAIL_JOBS = {
    'badyaml': './actions/bad',
    'broken': './actions/broken',
    'required': './actions/needs',
    'missing': './actions/nowhere',
    'dockerurl': 'docker://alpine:3.19',
    'dockerfile': './actions/dock',
    'onlydockerfile': './actions/onlydockerfile',
    'deep': './actions/recurse',
    'cache': 'actions/cache@v4',
    'upload': 'actions/upload-artifact@v4',
}


def test_failures():
    jobs = []
    for name, uses in sorted(FAIL_JOBS.items()):
        jobs.append('''{name}:
    runs-on: linux
    steps:
      - uses: actions/checkout@v4
      - uses: {uses}
      - run: echo "{name} must not get here"
      - if: always()
        run: echo "{name} always"'''.format(name=name, uses=uses))
    jobs.append('''nonode:
    runs-on: linux
    steps:
      - uses: actions/checkout@v4
      - uses: ./actions/node
        env:
          PATH: /nonexistent-kiln-dir'''.format())
    jobs.append('''given:
    runs-on: linux
    steps:
      - uses: actions/checkout@v4
      - uses: ./actions/needs
        with:
          must: here''')
    wf = FAIL_WF.format(jobs='\n  '.join(jobs))
    repo, _ = kiln.make_repo({
        '.github/workflows/fail.yml': wf,
        'actions/bad/action.yml': BAD_YAML,
        'actions/broken/action.yml': BROKEN_YAML,
        'actions/needs/action.yml': NEEDS,
        'actions/dock/action.yml': DOCKERFILE_ACTION,
        'actions/dock/Dockerfile': 'FROM alpine\n',
        'actions/onlydockerfile/Dockerfile': 'FROM alpine\n',
        'actions/recurse/action.yml': RECURSE,
        'actions/node/action.yml': NODE_LOCAL,
        'actions/node/index.js': 'console.log("node ran")\n',
    })
    r = local(repo, expect=1)
    res = results(r.stdout)
    want = {k: 'failure' for k in FAIL_JOBS}
    want.update(nonode='failure', given='success')
    assert res == want, r.stdout

    def errors(job):
        return [l[len('==> Error: '):] for l in log_lines(r.stdout, job)
                if l.startswith('==> Error: ')]

    for name in FAIL_JOBS:
        lines = log_lines(r.stdout, name)
        assert '%s always' % name in lines, (name, r.stdout)
        assert '%s must not get here' % name not in lines, (name, r.stdout)
        assert len(errors(name)) == 1, (name, r.stdout)
    assert errors('badyaml') == [
        "actions/bad/action.yml:5:7: a 'run' step of a composite action needs 'shell' "
        "(bash, sh, python, pwsh or a command line with {0})"], r.stdout
    assert errors('broken')[0].startswith('actions/broken/action.yml:3:1: '), r.stdout
    assert errors('required') == [
        'Input required and not supplied: must (by ./actions/needs)'], r.stdout
    assert 'must=here' in log_lines(r.stdout, 'given'), r.stdout
    assert errors('missing') == [
        'cannot find the action ./actions/nowhere: actions/nowhere: no such directory '
        '(did a checkout step run before it?)'], r.stdout
    assert errors('dockerurl') == [
        'docker actions are not supported yet: docker://alpine:3.19'], r.stdout
    assert errors('dockerfile') == [
        'docker actions are not supported yet: ./actions/dock'], r.stdout
    assert errors('onlydockerfile')[0].startswith(
        'docker actions are not supported yet: ./actions/onlydockerfile'), r.stdout
    assert errors('deep') == [
        'composite actions are nested more than 10 deep (at ./actions/recurse)'], r.stdout
    # built in, with GitHub's messages for a missing input
    assert errors('cache') == ['Input required and not supplied: key'], r.stdout
    assert errors('upload') == ['Input required and not supplied: path'], r.stdout
    assert errors('nonode') == [
        "'node' was not found in PATH; it is needed to run ./actions/node "
        "(runs.using: node20)"], r.stdout
    assert 'node ran' not in r.stdout, r.stdout


# ---------------------------------------------------------------- remote actions

REMOTE_COMPOSITE = '''\
name: remote greet
inputs:
  who:
    default: remote-world
outputs:
  said:
    value: ${{ steps.s.outputs.said }}
runs:
  using: composite
  steps:
    - id: s
      shell: bash
      run: |
        echo "remote {version}: hi ${{ inputs.who }} repo=$GITHUB_ACTION_REPOSITORY ref=$GITHUB_ACTION_REF"
        echo "said=hi ${{ inputs.who }}" >> "$GITHUB_OUTPUT"
        bash "${{ github.action_path }}/helper.sh"
        [ ! -e "$GITHUB_ACTION_PATH/.git" ] && echo "no .git in the action"
'''

NODE_ACTION = '''\
name: node thing
inputs:
  my name:
    default: nobody
  count:
    required: true
outputs:
  result:
    description: twice the count
runs:
  using: node20
  main: dist/index.js
  post: dist/post.js
'''

NODE_MAIN = '''\
const fs = require('fs');
console.log(`node: name=${process.env['INPUT_MY_NAME']} count=${process.env.INPUT_COUNT} ` +
            `cwd_is_ws=${process.cwd() === process.env.GITHUB_WORKSPACE} ` +
            `argv1=${require('path').basename(process.argv[1])}`);
fs.appendFileSync(process.env.GITHUB_OUTPUT, `result=${Number(process.env.INPUT_COUNT) * 2}\\n`);
fs.appendFileSync(process.env.GITHUB_ENV, 'FROM_NODE=yes\\n');
console.log('::add-mask::node-secret');
console.log('node says node-secret');
'''

OLD_NODE = '''\
runs:
  using: node16
  main: main.js
'''

REMOTE_WF = '''\
on: push
jobs:
  first:
    runs-on: linux
    steps:
      - id: r
        uses: octo/greet@v1
        with:
          who: kiln
      - id: n
        uses: octo/tools/node@v2
        with:
          count: 21
      - uses: octo/tools/old@v2
      - run: |
          echo "r=${{ steps.r.outputs.said }} n=${{ steps.n.outputs.result }} FROM_NODE=$FROM_NODE"
          echo "later node-secret"
  second:
    runs-on: linux
    steps:
      - uses: octo/greet@v1
  pinned:
    runs-on: linux
    steps:
      - uses: octo/greet@{sha}
  missing:
    runs-on: linux
    steps:
      - uses: octo/nothing@v1
  badref:
    runs-on: linux
    steps:
      - uses: octo/greet@no-such-tag
'''


def make_sources():
    """Bare repositories octo/greet.git and octo/tools.git under a fresh directory; returns
    (source dir, greet work repo, sha of greet@v1)."""
    src = kiln.tempdir('kiln-action-src-')
    greet, sha = kiln.make_repo({'action.yml': REMOTE_COMPOSITE.replace('{version}', 'v1'),
                                 'helper.sh': 'echo "helper ran"\n'})
    kiln.git(greet, 'tag', 'v1')
    tools, _ = kiln.make_repo({'node/action.yml': NODE_ACTION,
                               'node/dist/index.js': NODE_MAIN,
                               'old/action.yml': OLD_NODE,
                               'old/main.js': 'console.log("old node action ran")\n'})
    kiln.git(tools, 'tag', 'v2')
    os.makedirs(os.path.join(src, 'octo'))
    for name, path in (('greet', greet), ('tools', tools)):
        kiln.git(src, 'clone', '-q', '--bare', path, os.path.join(src, 'octo', name + '.git'))
    return src, greet, sha


def test_remote_kiln_run():
    src, _, sha = make_sources()
    repo, _ = kiln.make_repo({'.github/workflows/ci.yml': REMOTE_WF.replace('{sha}', sha)})
    r = local(repo, expect=1, env={'KILN_ACTION_SOURCE': 'file://' + src + '/{owner}/{repo}.git'})
    assert results(r.stdout) == {'first': 'success', 'second': 'success', 'pinned': 'success',
                                 'missing': 'failure', 'badref': 'failure'}, r.stdout
    first = log_lines(r.stdout, 'first')
    assert 'remote v1: hi kiln repo=octo/greet ref=v1' in first, r.stdout
    assert 'helper ran' in first and 'no .git in the action' in first, r.stdout
    assert 'node: name=nobody count=21 cwd_is_ws=true argv1=index.js' in first, r.stdout
    assert 'node says ***' in first and 'later ***' in first, r.stdout
    assert 'node-secret' not in r.stdout, r.stdout
    assert 'r=hi kiln n=42 FROM_NODE=yes' in first, r.stdout
    assert any(l.startswith("==> Warning: kiln does not run the 'post' script of "
                            "octo/tools/node@v2") for l in first), r.stdout
    assert any('octo/tools/old@v2 runs on node16' in l for l in first), r.stdout
    assert 'old node action ran' in first, r.stdout
    assert 'remote v1: hi remote-world repo=octo/greet ref=v1' in log_lines(r.stdout, 'second')
    pinned = log_lines(r.stdout, 'pinned')
    assert 'remote v1: hi remote-world repo=octo/greet ref=%s' % sha in pinned, r.stdout
    missing = [l for l in log_lines(r.stdout, 'missing') if l.startswith('==> Error: ')]
    assert len(missing) == 1 and missing[0].startswith(
        '==> Error: cannot get the action octo/nothing@v1: '), r.stdout
    badref = [l for l in log_lines(r.stdout, 'badref') if l.startswith('==> Error: ')]
    assert badref == ["==> Error: cannot get the action octo/greet@no-such-tag: file://%s/octo/"
                      "greet.git has no branch, tag or commit 'no-such-tag'" % src], r.stdout


CACHE_WF = '''\
on: push
jobs:
  use:
    runs-on: linux
    steps:
      - run: echo "before"
      - id: g
        uses: octo/greet@v1
      - uses: octo/tools/node@v2
        with:
          count: 2
      - run: echo "said=${{ steps.g.outputs.said }}"
'''

PAIR_WF = '''\
on: push
jobs:
  one:
    runs-on: linux
    steps:
      - uses: octo/greet@v1
  two:
    runs-on: linux
    steps:
      - uses: octo/greet@v1
'''


def test_remote_cache_agent():
    src, greet, _ = make_sources()
    repo, _ = kiln.make_repo({'.github/workflows/ci.yml': CACHE_WF,
                              '.github/workflows/pair.yml': PAIR_WF})
    coord = kiln.Coordinator().start()
    agent = kiln.Agent(coord.bus, labels='linux', capacity=2,
                       extra=['--action-source', src + '/{owner}/{repo}.git']).start()
    R.watch(coord, agent)
    try:
        coord.wait_agents(1)

        def run(workflow):
            v = coord.submit(repo, workflow=workflow)
            run_id = v['runs'][0]['id']
            done = coord.wait_run_done(run_id)
            return done, [l for l in coord.run_log(run_id)]

        cache = os.path.join(agent.work, '_actions', 'octo', 'greet', 'v1')
        done, lines = run('ci.yml')
        assert done['conclusion'] == 'success', (done, lines)
        texts = [l['text'] for l in lines]
        assert 'Checking out octo/greet@v1' in ' '.join(texts), texts
        st1 = os.stat(cache)
        # a composite step's lines go under the caller's step (index 1, after "before")
        said = [l for l in lines if l['text'].startswith('remote v1: hi remote-world')]
        assert len(said) == 1 and said[0]['step'] == 1, lines
        node = [l for l in lines if l['text'].startswith('node: name=nobody count=2')]
        assert len(node) == 1 and node[0]['step'] == 2, lines
        assert 'said=hi remote-world' in texts, texts

        # the second run reuses the checkout: same directory, "cached" in the log
        done, lines = run('ci.yml')
        assert done['conclusion'] == 'success', (done, lines)
        texts = [l['text'] for l in lines]
        assert any(t.startswith('Using octo/greet@v1 (') and t.endswith(', cached)')
                   for t in texts), texts
        assert not any(t.startswith('Checking out octo/greet') for t in texts), texts
        st2 = os.stat(cache)
        assert (st1.st_ino, st1.st_mtime_ns) == (st2.st_ino, st2.st_mtime_ns), (st1, st2)

        # two jobs at once on the same ref (capacity 2): both run it
        done, lines = run('pair.yml')
        assert done['conclusion'] == 'success', (done, lines)
        assert sum(l['text'].startswith('remote v1: hi remote-world') for l in lines) == 2, lines

        # the tag moves: the next run fetches and checks out the new commit
        kiln.commit(greet, 'v1 again', {'action.yml':
                                        REMOTE_COMPOSITE.replace('{version}', 'v1.1')})
        kiln.git(greet, 'tag', '-f', 'v1')
        kiln.git(greet, 'push', '-q', '--force', os.path.join(src, 'octo', 'greet.git'),
                 'main', 'refs/tags/v1')
        done, lines = run('ci.yml')
        assert done['conclusion'] == 'success', (done, lines)
        texts = [l['text'] for l in lines]
        assert any(t.startswith('remote v1.1: hi remote-world') for t in texts), texts
        assert any(t.startswith('Checking out octo/greet@v1 (') for t in texts), texts
        leftovers = [n for n in os.listdir(os.path.dirname(cache)) if '.tmp' in n or '.old' in n]
        assert leftovers == [], leftovers
        # the agent exits cleanly (under the sanitizers too: no report, no leak)
        assert agent.stop() == 0, agent.log()
        assert 'Sanitizer' not in agent.log(), agent.log()
    finally:
        agent.stop()
        coord.stop()


def main():
    R.run(test_local_composite)
    R.run(test_failures)
    R.run(test_remote_kiln_run)
    R.run(test_remote_cache_agent)
    R.finish()


if __name__ == '__main__':
    main()
