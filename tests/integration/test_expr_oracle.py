#!/usr/bin/env python3
"""Differential test: kiln's expression engine against GitHub's own.

GitHub's evaluator, @actions/expressions (pinned in tests/oracle/package.json,
installed by scripts/deps.sh), is driven by tests/oracle/eval-batch.mjs. The
same cases go to `kiln expr --jsonl` and to the oracle; every case must agree:
both succeed with the same value (compared as JSON, key order included) and
the same string form, or both fail.

Cases: a fixed corpus of hand-written tricky ones, plus random expressions
generated afresh from a seed over rich contexts. The seed is printed; set
KILN_EXPR_SEED to reproduce a run and KILN_EXPR_CASES for more cases.

One deliberate difference is not compared but checked on its own: in a string
literal kiln reads every '' as ', as GitHub's runner does, where the oracle
replaces only the first (docs/expressions.md).

Also checked: hashFiles() over a directory against the runner's algorithm,
and the command line's exit codes.
"""

import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import unicodedata

SRC = os.environ.get("KILN_SRC") or os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BIN = os.environ.get("KILN_BIN") or os.path.join(SRC, "build", "bin")
KILN = os.path.join(BIN, "kiln")
ORACLE_DIR = os.path.join(SRC, "tests", "oracle")
N_RANDOM = int(os.environ.get("KILN_EXPR_CASES", "10000"))
N_FOCUSED = N_RANDOM // 2

failures = []


def fail(msg):
    failures.append(msg)
    print("FAIL: " + msg, flush=True)


# ---- contexts ------------------------------------------------------------------------------

RICH = {
    "github": {
        "ref": "refs/heads/main",
        "ref_name": "main",
        "event_name": "push",
        "sha": "0123abcd",
        "run_number": 42,
        "repository": "Octo-Org/Hello-World",
        "actor": "monalisa",
        "event": {
            "commits": [
                {"id": "a1", "message": "fix: Bug", "author": {"name": "Mona", "email": "m@x.io"}, "added": ["a.txt", "B.md"]},
                {"id": "b2", "message": "", "author": {"name": "Hubot"}, "added": []},
                {"id": "c3", "message": "[skip ci] docs", "author": {"name": "mona"}, "added": ["docs/x.md"]},
            ],
            "head_commit": None,
            "forced": False,
            "pull_request": {"labels": [{"name": "bug"}, {"name": "CI"}, {"name": "Bug"}], "number": 7, "draft": True, "title": "Add ß support"},
            "inputs": {},
        },
        "empty_obj": {},
        "empty_arr": [],
    },
    "env": {
        "CI": "true", "NUM": "007", "EXP": "1e3", "SPACE": " 12 ", "HEX": "0x10", "EMPTY": "",
        "ZERO": "0", "NEG": "-1.5", "Mixed": "MiXeD", "mixed": "other", "uni": "straße",
        "Greek": "ΣΊΣΥΦΟΣ", "TURK": "İstanbul", "dotless": "ı", "nul": "a\u0000b", "inf": "Infinity",
        "nan": "NaN", "bin": "0b101", "oct": "0o17", "ws": "\u00a0\t7\u2028", "dot": ".5", "exp2": "1.e2",
        "neghex": "-0x10", "under": "1_000", "big": "123456789012345678901234567890", "emoji": "😀 ok",
        "json": "{\"a\": [1, 2, {\"b\": null}], \"A\": 3}",
    },
    "vars": {
        "flag": True, "off": False, "none": None, "n": 0, "f": 0.1, "big": 1e21, "tiny": 5e-7,
        "neg0": -0.0, "maxint": 9007199254740993, "third": 1 / 3, "half": 0.5, "pi": 3.141592653589793,
        "arr": [1, "1", True, None, [], {}, "ONE", 0.1], "nums": [3, 1, 2], "strs": ["a", "B", "c"],
        "obj": {"a": 1, "A": 2, "b": {"c": [1, 2, 3]}}, "2": "two", "10": "ten", "1": "one", "01": "zero-one",
        "odd": {"constructor": "c", "__proto__": "p", "toString": "t", "valueOf": "v", "Constructor": "C"},
        "nested": [[1, [2, [3]]], {"x": [{"y": 1}, {"y": 2}, {"z": 3}]}],
    },
    "matrix": {"os": "ubuntu-latest", "node": [18, 20], "include": [{"os": "windows", "x": 1}, {"os": "macos"}]},
    "steps": {
        "build": {"outputs": {"result": "success", "json": "{\"a\": [1, 2, {\"b\": null}]}", "num": "3.0"}, "conclusion": "success", "outcome": "failure"},
        "test": {"outputs": {}, "conclusion": "skipped", "outcome": "skipped"},
    },
    "needs": {"a": {"result": "success", "outputs": {"x": "1"}}, "b": {"result": "failure", "outputs": {"x": "2"}}},
    "inputs": {"name": "World", "count": 3, "debug": False, "list": "[\"a\",\"b\"]", "weird": "{0}}{{", "quote": "it's", "fmt": "{0}-{1}"},
    "job": {"status": "success", "container": {"id": ""}, "services": {}},
    "runner": {"os": "Linux", "arch": "X64", "temp": "/tmp"},
    "secrets": {"GITHUB_TOKEN": "***", "token": "abc"},
    "strategy": {"fail-fast": True, "job-index": 0, "job-total": 2, "max-parallel": 2},
    "jobs": {"build": {"result": "success", "outputs": {}}},
}

KEY_POOL = ["a", "A", "b", "B", "x", "X", "name", "Name", "NAME", "0", "1", "2", "10", "01", "-1", "1.5",
            "4294967294", "4294967295", "", " ", "σ", "Σ", "ς", "straße", "STRASSE", "İ", "i̇", "ı", "I",
            "k-1", "k_2", "😀", "constructor", "valueOf", "e\u0301", "é"]
STR_POOL = ["", " ", "a", "A", "abc", "ABC", "MiXeD", "mixed", "straße", "STRASSE", "Straße", "ΣΊΣΥΦΟΣ",
            "σίσυφος", "σίσυφοσ", "ΑΣ", "ας", "ασ", "İstanbul", "i̇stanbul", "istanbul", "ı", "I", "i", "ﬀ", "FF",
            "0", "007", "1e3", " 12 ", "0x10", "-0", "1.0", "true", "false", "null", "NaN", "Infinity", "-Infinity",
            "{0}", "{{0}}", "{0} {1}", "[1,2]", "{\"a\":1}", "😀", "\u00a0", "\t", "\n", "a\u0000b",
            "refs/heads/main", "REFS/HEADS/", "main", "Ǆ", "ǆ", "ǅ", "ŉ", "ΐ", "ﬃ", "\ud7ff", "\ue000", "\U00010400", "\U00010428"]


def random_json(rng, depth=0):
    r = rng.random()
    if depth > 3 or r < 0.45:
        return rng.choice([None, True, False, 0, 1, -1, 0.5, 1e21, -0.0, 2.5e-7, 7, 123456789,
                           rng.choice(STR_POOL), rng.choice(STR_POOL), rng.randint(-5, 100)])
    if r < 0.7:
        return [random_json(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    obj = {}
    for _ in range(rng.randint(0, 5)):
        obj[rng.choice(KEY_POOL)] = random_json(rng, depth + 1)
    return obj


def random_context(rng):
    ctx = {}
    for name in rng.sample(["github", "env", "vars", "matrix", "inputs", "steps", "needs", "Ctx", "x-y"], rng.randint(1, 4)):
        ctx[name] = random_json(rng, 1) if rng.random() < 0.3 else {k: random_json(rng, 2) for k in rng.sample(KEY_POOL, rng.randint(0, 8))}
    return ctx


# ---- random expressions ------------------------------------------------------------------

NUMBERS = ["0", "1", "-1", "2", "1.5", ".5", "-.5", "1.", "1e3", "1E-3", "0x1F", "0xff", "0b101", "0o17",
           "NaN", "Infinity", "-Infinity", "+1", "007", "1e21", "1e+21", "0.1", "123456789012345678901",
           "1.7976931348623157e308", "5e-324", "-0", "0.000001", "1e-7", "2e-7", "0.30000000000000004",
           "9007199254740993", "1.005", "4.35", "0.0000152587890625", "1e300", "-1e-300", "100", "3.0"]
FUNCS = ["contains", "startsWith", "endsWith", "format", "join", "toJSON", "fromJSON", "case",
         "success", "failure", "cancelled", "always", "CONTAINS", "Format", "tojson", "fromjson"]
OPS = ["==", "!=", "<", "<=", ">", ">=", "&&", "||"]


def str_lit(rng):
    s = rng.choice(STR_POOL + ["it's", "'", "a'b"])
    # at most one '' per literal: the oracle mishandles more (see the module's docstring)
    if s.count("'") > 1:
        s = s.replace("'", "", s.count("'") - 1)
    return "'" + s.replace("'", "''") + "'"


class Gen:
    def __init__(self, rng, ctx):
        self.rng = rng
        self.ctx = ctx
        self.names = list(ctx.keys())

    def keys_of(self, v):
        if isinstance(v, dict):
            return list(v.keys())
        return []

    def path(self, budget):
        rng = self.rng
        name = rng.choice(self.names) if self.names else "github"
        v = self.ctx.get(name)
        if rng.random() < 0.2:
            name = name.upper() if rng.random() < 0.5 else name.capitalize()
        out = name
        for _ in range(rng.randint(0, 4)):
            r = rng.random()
            keys = self.keys_of(v)
            if r < 0.45 and keys:
                k = rng.choice(keys)
                v = v[k] if isinstance(v, dict) else None
                if rng.random() < 0.15:
                    k = k.swapcase()
                if k and all(c.isascii() and (c.isalnum() or c in "_-") for c in k) and (k[0].isalpha() or k[0] == "_"):
                    out += "." + k
                else:
                    out += "[" + "'" + k.replace("'", "''") + "']"
            elif r < 0.6:
                out += rng.choice([".*", "[*]"])
                v = None
            elif r < 0.75:
                out += "[" + rng.choice(["0", "1", "2", "-1", "1.7", "'1'", "' 1 '", "null", "true", "'0x1'", "'x'"]) + "]"
                v = v[0] if isinstance(v, list) and v else None
            elif r < 0.85 and budget > 0:
                out += "[" + self.expr(budget - 1) + "]"
                v = None
            else:
                out += "." + rng.choice(["x", "name", "NAME", "outputs", "result", "a", "b", "os", "length", "true", "null", "NaN"])
                v = None
        return out

    def call(self, budget):
        rng = self.rng
        f = rng.choice(FUNCS)
        lf = f.lower()
        b = budget - 1
        if lf in ("success", "failure", "cancelled", "always"):
            args = []
        elif lf == "format":
            fmt = rng.choice(["'{0}'", "'{0} {1}'", "'{1}{0}'", "'x{0}y'", "'{{0}}'", "'{0'", "'0}'", "'{0}}'",
                              "'{{{0}}}'", "'{}'", "'{a}'", "'{0abc}'", "'{2}'", "'}}{{'", "'{ 0}'", "'{00}'",
                              "'{0}{0}{0}'", "'{1}'", "'plain'", "''"])
            if rng.random() < 0.2:
                fmt = self.expr(b)
            args = [fmt] + [self.expr(b) for _ in range(rng.randint(0, 3))]
        elif lf == "join":
            args = [self.expr(b)] + ([self.expr(b)] if rng.random() < 0.5 else [])
        elif lf in ("tojson", "fromjson"):
            if lf == "fromjson" and rng.random() < 0.5:
                src = rng.choice(["'[1,2,3]'", "'{\"a\":1,\"A\":2,\"2\":0,\"1\":1}'", "'  true '", "'null'", "''", "' '",
                                  "'1e3'", "'-0'", "'\"x\"'", "'[1,'", "'{}'", "'[]'", "'01'", "'1.'", "'{\"a\":{\"b\":[{\"c\":1}]}}'",
                                  "'\"\\u00e9\\u0000\"'", "'123456789012345678901234567890'", "'[1, [2, [3, [4]]]]'",
                                  "'{\"constructor\":1,\"x\":2}'", "'tru'", "'NaN'", "'\"a\" \"b\"'", "' [\\n1\\n] '"])
                args = [src]
            else:
                args = [self.expr(b)]
        elif lf == "case":
            n = rng.choice([3, 3, 5, 2, 4])
            args = [rng.choice(["true", "false", self.expr(b)]) if i % 2 == 0 and i < n - 1 else self.expr(b) for i in range(n)]
        else:
            args = [self.expr(b), self.expr(b)]
            if rng.random() < 0.05:
                args.append(self.expr(b))
        s = f + "(" + ", ".join(args) + ")"
        if rng.random() < 0.15:
            s += rng.choice(["[0]", ".a", "[*]", ".*", "['a']", "[1]"])
        return s

    def expr(self, budget=4):
        rng = self.rng
        r = rng.random()
        if budget <= 0 or r < 0.2:
            return rng.choice([lambda: rng.choice(["null", "true", "false"]), lambda: rng.choice(NUMBERS),
                               lambda: str_lit(rng), lambda: self.path(0), lambda: self.path(0)])()
        if r < 0.4:
            return self.path(budget)
        if r < 0.6:
            return self.call(budget)
        if r < 0.8:
            return self.expr(budget - 1) + " " + rng.choice(OPS) + " " + self.expr(budget - 1)
        if r < 0.9:
            return "!" + self.expr(budget - 1)
        s = "(" + self.expr(budget - 1) + ")"
        if rng.random() < 0.3:
            s += rng.choice(["[0]", ".a", "[*]", ".*.name", "['x']"])
        return s


NOISE = list("'()[].,!=&|<>*-+ 0129aZ_$%{}\\#\"") + ["\u00a0", "\t", "\n", "\v", "é", "&&", "||", "==", "''"]


def mutate(rng, s):
    for _ in range(rng.randint(1, 2)):
        if not s:
            return rng.choice(NOISE)
        i = rng.randrange(len(s) + 1)
        r = rng.random()
        if r < 0.4:
            s = s[:i] + rng.choice(NOISE) + s[i:]
        elif r < 0.7:
            s = s[:i] + s[i + 1:]
        else:
            s = s[:i] + rng.choice(NOISE) + s[i + 1:]
    return s


SOUP = ["(", ")", "[", "]", ",", ".", "!", "!=", "==", "<", "<=", ">", ">=", "&&", "||", "*", "1", "0.5", "-1",
        "'a'", "''", "true", "null", "NaN", "github", "env", "vars", "ref", "contains", "format", "join", "case",
        "success", "toJSON", "fromJSON", "x", "*", ".*", "[*]", "()", "('{0}'", "'[1]'"]


def token_soup(rng, names):
    """Tokens in random order: mostly syntax errors, which must be the same ones."""
    toks = [rng.choice(SOUP + names) for _ in range(rng.randint(1, 10))]
    return "".join(t + rng.choice(["", "", " "]) for t in toks)


def many_escapes(expr):
    """True when a string literal has two or more '' escapes (the oracle's known bug)."""
    i, n = 0, len(expr)
    while i < n:
        if expr[i] == "'":
            i += 1
            escapes = 0
            while i < n and (expr[i] != "'" or (i + 1 < n and expr[i + 1] == "'")):
                if expr[i] == "'":
                    escapes += 1
                    i += 1
                i += 1
            if escapes > 1:
                return True
        i += 1
    return False


# ---- the fixed corpus --------------------------------------------------------------------

def corpus():
    c = []

    def add(expr, ctx=None, status=None):
        case = {"expr": expr, "ctx": RICH if ctx is None else ctx}
        if status:
            case["status"] = status
        c.append(case)

    for e in [
        # literals and numbers
        "null", "true", "false", "0", "-0", "+0", "1", "-1", "1.5", ".5", "-.5", "1.", "1e3", "1E3", "1e-3", "1e+3",
        "0x1F", "0XFF", "0xff", "-0x10", "0b101", "0B11", "0o17", "0O7", "0x", "0b2", "0o8", "1_000", "1e", "1e+",
        "NaN", "-NaN", "Infinity", "-Infinity", "+Infinity", "infinity", "007", "0.1", "0.30000000000000004",
        "1e21", "1e20", "123456789012345678901", "999999999999999999999", "1e-6", "1e-7", "0.000001", "0.0000001",
        "1.7976931348623157e308", "1.8e308", "5e-324", "2e-324", "9007199254740993", "0.1e1", "1.005", "4.35",
        "0.0000152587890625", "-0.0000152587890625", "1.0000000000000002", "123.456", "1e-15", "1.5e-15", "4e-16",
        "5e-16", "6e-16", "0.000000000000000499", "100000000000000000000", "1e300", "2.5", "-2.5", "1.23e5",
        "12345678.9", "0.1.2", "1..2", "1.e5", ".e5", "1-2", "1+2", "--1", "- 1", "1 2",
        # strings
        "''", "'a'", "'it''s'", "'\"'", "'\\n'", "'unterminated", "'a' 'b'", "'ß'", "'😀'", "'{0}'",
        # operators and coercion
        "1 == 1", "1 == '1'", "1 == ' 1 '", "'abc' == 'ABC'", "'straße' == 'STRASSE'", "'ß' == 'SS'", "'ı' == 'I'",
        "'ı' == 'i'", "'i' == 'I'", "'İ' == 'i̇'", "'ǅ' == 'Ǆ'", "'ǆ' == 'ǅ'", "'ﬀ' == 'FF'", "'ΐ' == 'Ϊ́'",
        "null == 0", "null == ''", "null == false", "null == null", "null == 'null'", "true == 1", "true == '1'",
        "true == 'true'", "false == ''", "false == '0'", "'' == 0", "' ' == 0", "'0x10' == 16", "'1e3' == 1000",
        "NaN == NaN", "NaN != NaN", "'NaN' == NaN", "Infinity == 'Infinity'", "-0 == 0", "0 == -0",
        "github == github", "github == GITHUB", "github.event == github.event", "vars.arr == vars.arr",
        "vars.arr.* == vars.arr.*", "fromJSON('[]') == fromJSON('[]')", "(github) == github",
        "github.empty_obj == github.empty_obj", "vars.obj == 'Object'", "vars.arr == 'Array'", "github == 1",
        "1 < 2", "2 < 1", "'a' < 'b'", "'B' > 'a'", "'a' < 'B'", "'ä' > 'z'", "'😀' > '\ue000'", "'\ue000' > '😀'",
        "'\U00010400' < '\U00010428'", "'abc' < 'abd'", "'ab' < 'abc'", "null < 1", "true > false", "false < true",
        "true > 0", "'2' > 10", "'x' > 1", "'x' < 1", "1 < 2 < 3", "3 > 2 > 1", "1 < 2 == true", "1 == 1 == true",
        "2 == 2 == 2", "1 <= 1", "'a' <= 'A'", "'a' >= 'A'", "null <= null", "null >= 0", "NaN <= NaN", "github < github",
        "github <= github", "vars.arr >= vars.arr", "1 != '1'", "!0", "!1", "!''", "!'a'", "!null", "!NaN",
        "!github", "!vars.empty", "!!'x'", "!!!true", "! true", "!=1", "1 !", "a == = b",
        "1 && 2", "0 && 2", "'' || 'x'", "null || 0", "0 || null", "1 || x", "true && github", "false || github.event",
        "github.event && 'x'", "1 & 2", "1 | 2", "1 &&", "|| 1", "(1)", "((1))", "(1", "1)", "()", "(,)", "[1]",
        # property access
        "github.ref", "GITHUB.REF", "github.REF", "github['ref']", "github['REF']", "github[\"ref\"]",
        "github.event.commits[0].message", "github.event.commits[5]", "github.event.commits[-1]",
        "github.event.commits['0'].id", "github.event.commits[' 1 '].id", "github.event.commits[1.9].id",
        "github.event.commits[true].id", "github.event.commits[null].id", "github.event.commits['0x1'].id",
        "github.event.commits[''].id", "github.event.commits['a'].id", "github.event.commits[fromJSON('[1]')].id",
        "github.event.commits.*.id", "github.event.commits[*].author.name", "github.event.commits.*.added.*",
        "github.event.commits.*.added[0]", "github.event.commits.*.added[1]", "github.event.commits.*.*",
        "github.event.*", "github.*.*", "github.event.commits.*.author.*", "github.event.pull_request.labels.*.name",
        "github.ref.*", "github.ref[*]", "github.ref[0]", "github.ref.length", "github.run_number.x", "github.nope",
        "github.nope.deeper", "github.nope.*", "github.nope[*]", "github.empty_arr[0]", "github.empty_arr.*",
        "github.empty_obj.*", "vars.obj.a", "vars.obj.A", "vars.obj['a']", "vars.obj.*", "vars['2']", "vars[2]",
        "vars[10]", "vars[1]", "vars['01']", "vars[1.0]", "vars['1.0']", "vars", "vars.odd", "vars.odd.constructor",
        "vars.odd.__proto__", "vars.odd.tostring", "vars.odd.toString", "vars.odd.valueof", "vars.odd['constructor']",
        "vars.odd.*", "vars.nested.*.*", "vars.nested[1].x.*.y", "vars.nested[1].x[*].y", "vars.nested.*[1]",
        "vars.nested.*.x", "vars.nested.*.x.*.y", "vars.nested[*][*][*]", "env.Mixed", "env.MIXED", "env.mixed",
        "env['Mixed']", "env.*", "env", "matrix.node[1]", "matrix.include.*.os", "matrix.include.*.x",
        "steps.build.outputs.result", "needs.*.result", "needs.*.outputs.x", "(github).ref", "(github.event).commits[0].id",
        "(vars.arr)[0]", "(vars.arr.*)[0]", "(vars.nested.*).x", "vars.arr.*[0]", "github.event.commits.*[0]",
        "github.", "github.[0]", "github..ref", "github.'ref'", "github.1", "github.*.", "github[", "github[0",
        "github[]", "github[*", "github.ref.", "a.b", "unknown", "GitHub.Ref", "github.true", "github.null",
        "github.NaN", "github.event.commits[0]['message']", "github['event']['commits'][0]['id']", "'abc'[0]",
        "'abc'.length", "1.5.x", "true.x", "null.x", "(1).x", "(null)[0]", "('abc')[0]", "(vars.f).x",
        "github.x-y", "github.run_number[0]", "github.event.forced.x",
        # functions
        "contains('abc', 'B')", "contains('abc', '')", "contains('', '')", "contains('ΑΣ', 'σ')", "contains('ΑΣ', 'ς')",
        "contains('ΑΣΑ', 'σ')", "contains('İ', 'i')", "contains('straße', 'SS')", "contains('STRASSE', 'ß')",
        "contains(vars.arr, 1)", "contains(vars.arr, '1')", "contains(vars.arr, 'one')", "contains(vars.arr, null)",
        "contains(vars.arr, vars.arr)", "contains(vars.arr, 0.1)", "contains(vars.arr, '0.1')", "contains(vars.strs, 'b')",
        "contains(github.event.pull_request.labels.*.name, 'BUG')", "contains(github.event.commits.*.author, github.event.commits[0].author)",
        "contains(github, 'ref')", "contains('Object', github)", "contains(1.5, '.5')", "contains(true, 'ru')",
        "contains(null, '')", "contains(fromJSON('[]'), 1)", "contains(vars.nums, '3')", "contains(vars.arr, fromJSON('[]'))",
        "startsWith('abc', 'AB')", "startsWith('abc', '')", "startsWith('', 'a')", "startsWith(github.ref, 'refs/heads/')",
        "startsWith('ßa', 'SS')", "startsWith('ssa', 'ß')", "startsWith(vars.arr, 'A')", "startsWith('Array', vars.arr)",
        "startsWith(1.5, 1)", "startsWith(null, '')", "startsWith('ıa', 'I')", "startsWith('ia', 'ı')",
        "endsWith('abc', 'BC')", "endsWith('abc', 'abcd')", "endsWith(github.ref, 'MAIN')", "endsWith(10, 0)",
        "endsWith(true, 'E')", "endsWith('x', vars.obj)",
        "format('{0}', 1)", "format('{0} {1}', 'a', 'b')", "format('{1}{0}', 'a', 'b')", "format('{{0}}', 1)",
        "format('{{{0}}}', 1)", "format('{0', 1)", "format('0}', 1)", "format('{0}}', 1)", "format('}}{{', 1)",
        "format('{}', 1)", "format('{a}', 1)", "format('{0abc}', 1)", "format('{0{1}', 1, 2)", "format('{ 0}', 1)",
        "format('{00}', 1)", "format('{01}', 1, 2)", "format('{1}', 1)", "format('{2}', 1, 2)", "format('plain')",
        "format('')", "format('{0}')", "format('{0}{0}{0}', 'x')", "format('{0}', null)", "format('{0}', true)",
        "format('{0}', 1e21)", "format('{0}', 0.1)", "format('{0}', 1/3)", "format('{0}', vars.third)",
        "format('{0}', vars.pi)", "format('{0}', vars.tiny)", "format('{0}', vars.big)", "format('{0}', vars.neg0)",
        "format('{0}', vars.maxint)", "format('{0}', vars.arr)", "format('{0}', vars.obj)", "format('{0}', NaN)",
        "format('{0}', -Infinity)", "format('{0} {1} {2}', 1.005, 4.35, 0.000001)", "format(github.ref)",
        "format(1, 2)", "format(null)", "format(vars.arr, 1)", "format('{0}', github.event.commits.*.id)",
        "format('{99999999999999999999}', 1)", "format('{4294967296}', 1)", "format('{0}', 123456789012345680000)",
        "format('{0}', 1.7976931348623157e308)", "format('{0}', 5e-324)", "format('{0}', 0.0000001)",
        "format('{0}', 1e-7)", "format('{0}', 1.23456789012345678)", "format('{0}', 0.1e-5)", "format('x{0}y{1}z', 'é', '😀')",
        "format(inputs.weird, 1)", "format(inputs.fmt, 'a', 'b')", "format('{0}', format('{{'))",
        "join(vars.strs)", "join(vars.strs, '-')", "join(vars.strs, '')", "join(vars.arr)", "join(vars.arr, null)",
        "join(vars.arr, vars.arr)", "join(vars.nums, 1.5)", "join('abc')", "join(1)", "join(null)", "join(github)",
        "join(fromJSON('[]'))", "join(github.event.commits.*.id, ', ')", "join(github.event.commits.*.added)",
        "join(vars.nested, '|')", "join(vars.strs, true)",
        "toJSON(null)", "toJSON(1)", "toJSON(-0)", "toJSON(1e21)", "toJSON(0.1)", "toJSON(NaN)", "toJSON(Infinity)",
        "toJSON('a\"b')", "toJSON('\u0001\u001f\u007f\u2028é😀/\\\\')", "toJSON(true)", "toJSON(github)",
        "toJSON(vars)", "toJSON(vars.arr)", "toJSON(vars.obj)", "toJSON(vars.odd)", "toJSON(vars.nested)",
        "toJSON(env)", "toJSON(github.event.commits.*.author)", "toJSON(github.empty_obj)", "toJSON(github.empty_arr)",
        "toJSON(fromJSON('{\"b\":1,\"a\":2,\"10\":3,\"9\":4,\"B\":5}'))", "toJSON(fromJSON('[[],{},[[]],{\"a\":{}}]'))",
        "toJSON(vars.maxint)", "toJSON(vars.third)", "toJSON(vars.tiny)", "toJSON(1e-7)", "toJSON(123e-20)",
        "toJSON(fromJSON(env.json))", "toJSON(env.nul)",
        "fromJSON('1')", "fromJSON('-0')", "fromJSON('1e308')", "fromJSON('[1,2,3]')", "fromJSON('{\"a\":1}')",
        "fromJSON('{\"a\":1,\"a\":2}')", "fromJSON('{\"a\":1,\"A\":2}')", "fromJSON('{\"a\":1}').A",
        "fromJSON('{\"ΑΣ\":1}')['ας']", "fromJSON('{\"ΑΣ\":1}')['ασ']", "fromJSON('{\"straße\":1}').STRASSE",
        "fromJSON('\"x\"')", "fromJSON('null')", "fromJSON('true')", "fromJSON(' [1] ')", "fromJSON('')",
        "fromJSON(' ')", "fromJSON('\u00a0')", "fromJSON('\u00a01')", "fromJSON('[1,]')", "fromJSON('{a:1}')",
        "fromJSON(\"'x'\")", "fromJSON('01')", "fromJSON('1.')", "fromJSON('.5')", "fromJSON('+1')", "fromJSON('NaN')",
        "fromJSON('1 2')", "fromJSON('\"\\u0000\"')", "fromJSON('\"\\ud83d\\ude00\"')", "fromJSON(1)",
        "fromJSON(true)", "fromJSON(null)", "fromJSON(vars.arr)", "fromJSON(github)", "fromJSON(1e21)",
        "fromJSON(steps.build.outputs.json).a[2].b", "fromJSON(steps.build.outputs.json).a.*", "fromJSON(inputs.list)[1]",
        "fromJSON('123456789012345678901234567890')", "fromJSON('[\"a\",\"b\"]')[1]", "fromJSON('{\"x\":[{\"y\":1}]}').x.*.y",
        "fromJSON('[1]') == fromJSON('[1]')", "fromJSON(env.json).a", "fromJSON(env.json).A", "fromJSON('\"\\t\"')",
        "fromJSON('\\t[1]\\n')", "fromJSON('[1,2]')[1]", "fromJSON('{\"__proto__\":1,\"x\":2}')", "fromJSON('{\"\":1}')['']",
        "case(true, 1, 2)", "case(false, 1, 2)", "case(false, 1, true, 2, 3)", "case(1, 2, 3)", "case('true', 1, 2)",
        "case(true, 1)", "case(true, 1, false, 2)", "case(1 == 1, 'a', 'b')", "case(false, 1, github)",
        "case(true, vars.arr, 1) == vars.arr", "case(true, vars.arr.*, 1)[0]", "case(null, 1, 2)",
        "success()", "failure()", "cancelled()", "always()", "SUCCESS()", "Always()", "success(1)", "always(true)",
        "success() && failure()", "hashFiles()", "unknown()", "contains('a')", "contains('a', 'b', 'c')",
        "startsWith()", "join()", "join(1, 2, 3)", "toJSON()", "toJSON(1, 2)", "fromJSON()", "format()",
        "contains(,)", "contains('a',)", "format('{0}', 1,)", "contains('a' 'b')", "toJSON(1", "github(1)",
        "Contains('ABC', 'b')", "ToJson(1)", "FROMJSON('1')", "fromJson('[1]')[0]",
        # lexer corner cases
        " 1 ", "\t1\t", "\n1\n", "\r1", "\u00a01", "1\u00a0", "\v1", "\f1", "1\u2028", "é", "$", "#", "a'b'",
        "github.ref == 'refs/heads/main' && github.event_name == 'push'", "github.ref=='refs/heads/main'",
        "!github.event.forced&&true", "1==1", "1!=1", "1<=2", "'a'=='A'", "(1)==(1)", "!(1)", "!(!(1))",
        "github.event.commits[0].author.name == 'mona'", "contains(github.event.commits.*.message, '[skip ci]')",
        "github.event_name == 'push' || github.event_name == 'pull_request'",
        "steps.build.outcome == 'failure' && steps.build.conclusion == 'success'",
        "needs.a.result == 'success' && needs.b.result != 'success'", "matrix.os == 'ubuntu-latest'",
        "inputs.count > 2", "inputs.count >= '3'", "inputs.debug == false", "inputs.debug == 'false'",
        "env.NUM == 7", "env.EXP == 1000", "env.SPACE == 12", "env.HEX == 16", "env.EMPTY == 0", "env.EMPTY == null",
        "env.EMPTY == false", "env.ZERO == false", "env.NEG < -1", "env.inf == Infinity", "env.nan == NaN",
        "env.bin == 5", "env.oct == 15", "env.ws == 7", "env.dot == 0.5", "env.exp2 == 100", "env.neghex == -16",
        "env.under == 1000", "env.big == 123456789012345678901234567890", "env.big > 1e29", "env.CI == true",
        "env.CI == 'TRUE'", "vars.f == 0.1", "vars.f == '0.1'", "vars.neg0 == 0", "vars.maxint == 9007199254740992",
        "vars.n == false", "vars.none == 0", "vars.flag == 1", "vars.flag == 'true'", "env.nul == 'A\u0000B'",
        "env.Greek == 'σίσυφος'", "env.Greek == 'ΣΊΣΥΦΟΣ'", "env.TURK == 'i̇stanbul'", "env.dotless == 'I'",
        "env.uni == 'STRASSE'", "env.emoji == '😀 OK'", "env.Greek > 'A'", "env.uni < 'strasse'",
    ]:
        add(e)

    # depth: GitHub allows 50 levels
    for k in (45, 47, 48, 49, 50, 51, 52, 60):
        add("!" * k + "true")
        add("(" * k + "1" + ")" * k)
        add("github" + ".x" * k)
        add("github" + "['x']" * k)
        add("format(" * k + "'a'" + ")" * k)
        add("(" * (k // 2) + "1 || " * 3 + "1" + ")" * (k // 2))
        add("[" * 0 + "vars.nested" + "[0]" * k)
        add(" && ".join(["(" * (k // 3) + "1" + ")" * (k // 3)] * 3))
    for k in (10, 20, 50, 51):  # each toJSON doubles the backslashes: keep the results small
        add("toJSON(" * k + "1" + ")" * k)
    add("1 == " * 400 + "1")
    add("1 < " * 300 + "2")
    add(" || ".join(["false"] * 500) + " || 'last'")
    add(" && ".join(["1"] * 500))
    # length: GitHub allows 21000 UTF-16 code units
    add("'" + "x" * 20998 + "'")
    add("'" + "x" * 20999 + "'")
    add("'" + "😀" * 10499 + "'")
    add("'" + "😀" * 10500 + "'")
    add("'" + "é" * 20998 + "'")
    add("format('" + "{0}" * 1000 + "', 'abc')")
    add("format('{0}', " + ", ".join(["1"] * 254) + ")")
    add("format('{0}', " + ", ".join(["1"] * 255) + ")")
    add("case(" + ", ".join(["false, 1"] * 300) + ", 'd')")
    add("join(fromJSON('[" + ",".join(['"ab"'] * 500) + "]'), '" + "-" * 10 + "')")
    add("toJSON(fromJSON('" + "[" * 40 + "]" * 40 + "'))")

    # status functions
    for st in ("success", "failure", "cancelled"):
        for e in ("success()", "failure()", "cancelled()", "always()", "!cancelled()", "success() || failure()",
                  "failure() && github.ref == 'refs/heads/main'", "cancelled() || 'x'"):
            add(e, status=st)

    # contexts of every shape, and names that differ in case
    add("CTX.a", {"ctx": {"a": 1}})
    add("ctx.a", {"CTX": {"a": 1}})
    add("x-y.z", {"x-y": {"z": 2}})
    add("toJSON(a)", {"a": {"b": 1, "2": 3, "B": 4, "1": 5, "-1": 6, "4294967295": 7, "4294967294": 8, "01": 9}})
    add("a.*", {"a": {"x": 1, "X": 2, "y": [2], "z": {}}})
    add("a", {"a": {"Σ": 1, "σ": 2, "ς": 3}})
    add("a['ΑΣ']", {"a": {"ας": 1}})
    add("a['ΑΣ']", {"a": {"ασ": 1}})
    add("a['İ']", {"a": {"i̇": 1}})
    add("a['ß']", {"a": {"SS": 1, "ss": 2}})
    add("a['STRASSE']", {"a": {"straße": 1}})
    add("a.I", {"a": {"ı": 1}})
    add("a['ǅ']", {"a": {"ǆ": 1}})
    add("a", {"a": {"K": 1, "k": 2, "\u212a": 3}})
    add("a['\u212a']", {"a": {"k": 1}})
    add("a", {"a": [], "A": {}})
    add("A", {"a": [1], "A": {}})
    add("a == A", {"a": [1], "A": {}})
    add("a", {"a": 1, "b": 2})
    add("1", {})
    add("github", {})
    add("contains(a, b)", {"a": [{"x": 1}], "b": {"x": 1}})
    add("contains(a.*, a.k)", {"a": {"k": {"x": 1}}})
    add("a.* == a.*", {"a": {"k": 1}})
    add("a.k == a.K", {"a": {"k": {}}})
    add("toJSON(a)", {"a": {"": 1, " ": 2, "\t": 3, "\n": 4}})
    add("a['']", {"a": {"": "empty"}})
    add("a[null]", {"a": {"": "empty"}})
    add("a[null]", {"a": ["zero"]})
    add("a[vars]", {"a": {"Object": 1}, "vars": {}})
    add("a['Object']", {"a": {"object": 1}})
    add("a[1e21]", {"a": {"1e+21": 1}})
    add("a[0.1]", {"a": {"0.1": 1}})
    add("a[-0]", {"a": {"0": "z"}})
    add("a[1/0]", {"a": {}})
    add("a[Infinity]", {"a": {"Infinity": 1}})
    add("a[NaN]", {"a": {"NaN": 1}})
    add("a[true]", {"a": {"true": 1}})
    add("a[4294967295]", {"a": [1]})
    add("a[1e300]", {"a": [1]})
    return c


# ---- focused random cases: numbers and Unicode ----------------------------------------------

CASED_RANGES = [(0x41, 0x24f), (0x370, 0x3ff), (0x400, 0x52f), (0x531, 0x587), (0x10a0, 0x10ff), (0x13a0, 0x13fd),
                (0x1c80, 0x1c8a), (0x1e00, 0x1fff), (0x2126, 0x2184), (0x24b6, 0x24e9), (0x2c00, 0x2d2d),
                (0xa640, 0xa7ff), (0xab70, 0xabbf), (0xfb00, 0xfb17), (0xff21, 0xff5a), (0x10400, 0x1044f),
                (0x104b0, 0x104fb), (0x10c80, 0x10cf2), (0x118a0, 0x118df), (0x1e900, 0x1e943), (0x300, 0x36f),
                (0x20, 0x7e), (0x2bc, 0x2bc), (0x345, 0x345), (0x3a3, 0x3a3), (0x3a3, 0x3a3), (0x130, 0x131),
                (0xad, 0xad), (0x2019, 0x2019), (0x1f600, 0x1f64f), (0xe000, 0xe0ff), (0xfff0, 0xffff)]


def random_text(rng, n):
    out = []
    for _ in range(n):
        lo, hi = rng.choice(CASED_RANGES)
        c = chr(rng.randint(lo, hi))
        # only characters that Unicode 14 already had: their case mappings are the same in the
        # ICU of any node that may run the oracle
        if unicodedata.category(c) in ("Cn", "Cs"):
            c = "A"
        out.append(c)
    return "".join(out)


def variant(rng, s):
    r = rng.random()
    if r < 0.25:
        return s.upper()
    if r < 0.5:
        return s.lower()
    if r < 0.6:
        return s.casefold()
    if r < 0.7:
        return s.swapcase()
    if r < 0.85 and s:
        i = rng.randrange(len(s))
        return s[i:i + rng.randint(0, 4)]
    return random_text(rng, rng.randint(0, 4))


def random_double(rng):
    r = rng.random()
    if r < 0.3:
        import struct
        while True:
            d = struct.unpack("<d", struct.pack("<Q", rng.getrandbits(64)))[0]
            if d == d and d not in (float("inf"), float("-inf")):
                return d
    if r < 0.5:
        return rng.choice([1, -1]) * 2.0 ** rng.randint(-1074, 1023)
    if r < 0.7:
        return round(rng.uniform(-1e6, 1e6), rng.randint(0, 17))
    if r < 0.85:
        return rng.choice([1, -1]) * rng.random() * 10.0 ** rng.randint(-25, 25)
    return float(rng.choice(["1e21", "9.999999999999999e20", "1e-7", "1e-6", "0.1", "0.2", "0.3", "1.005",
                             "123456789012345680000", "4.35", "5e-324", "1.7976931348623157e308", "2.5e-16"]))


def numeric_text(rng):
    parts = ["", "-", "+", " ", "\u00a0", "\t", "0", "00", "1", "9", "12", "007", ".", ".5", "5.", "e", "E", "e+", "e-",
             "e5", "x", "0x", "0X", "0o", "0b", "ff", "F", "17", "101", "_", "Infinity", "NaN", "inf", "1e400",
             "\u2028", "\ufeff", "\u180e", "\u200b"]
    s = "".join(rng.choice(parts) for _ in range(rng.randint(1, 5)))
    return s


def focused_cases(rng, n):
    cases = []
    for _ in range(n):
        r = rng.random()
        if r < 0.35:
            d = random_double(rng)
            expr = rng.choice(["format('{0}', vars.x)", "toJSON(vars.x)", "join(vars.xs, ' ')", "vars.x == vars.y",
                               "vars.x < vars.y", "format('{0}', vars.x) == vars.x", "toJSON(vars.xs)"])
            cases.append({"expr": expr, "ctx": {"vars": {"x": d, "y": random_double(rng), "xs": [d, -d, d / 3, d * 7]}}})
        elif r < 0.6:
            t = numeric_text(rng)
            try:
                near = float(t.strip())
            except ValueError:
                near = rng.choice([0.0, 1.0, 16.0, 5.0])
            expr = rng.choice(["env.s == vars.n", "env.s < vars.n", "env.s > vars.n", "env.s == 0", "!env.s",
                               "vars.a[env.s]", "env.s == NaN", "env.s >= Infinity", "env.s <= -Infinity"])
            cases.append({"expr": expr, "ctx": {"env": {"s": t}, "vars": {"n": near, "a": [0, 1, 2, 3, 4, 5]}}})
        else:
            a = random_text(rng, rng.randint(0, 8))
            b = variant(rng, a)
            expr = rng.choice(["env.a == env.b", "env.a != env.b", "env.a < env.b", "env.a > env.b", "env.a <= env.b",
                               "contains(env.a, env.b)", "startsWith(env.a, env.b)", "endsWith(env.a, env.b)",
                               "vars.o[env.b]", "toJSON(vars.o)", "vars.o.*", "contains(vars.l, env.b)",
                               "vars.o[env.a]", "contains(env.b, env.a)", "format('{0}{1}', env.a, env.b)"])
            obj = {a: 1, b: 2, variant(rng, a): 3, random_text(rng, 2): 4}
            cases.append({"expr": expr, "ctx": {"env": {"a": a, "b": b}, "vars": {"o": obj, "l": [a, variant(rng, b)]}}})
    return cases


# ---- running both --------------------------------------------------------------------------

def run_lines(cmd, cases, cwd):
    data = "".join(json.dumps(c, ensure_ascii=True) + "\n" for c in cases)
    p = subprocess.run(cmd, input=data.encode(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=cwd, timeout=240)
    if p.returncode != 0:
        raise RuntimeError("%s exited %d: %s" % (cmd[0], p.returncode, p.stderr.decode(errors="replace")[-2000:]))
    out = [json.loads(l, object_pairs_hook=lambda pairs: ("object", pairs)) for l in p.stdout.decode().split("\n") if l]
    if len(out) != len(cases):
        raise RuntimeError("%s answered %d lines for %d cases" % (cmd[0], len(out), len(cases)))
    return out


def plain(v):
    if isinstance(v, tuple) and len(v) == 2 and v[0] == "object":
        return {k: plain(x) for k, x in v[1]}
    if isinstance(v, list):
        return [plain(x) for x in v]
    return v


def same_json(a, b):
    if isinstance(a, tuple) or isinstance(b, tuple):
        if not (isinstance(a, tuple) and isinstance(b, tuple)):
            return False
        pa, pb = a[1], b[1]
        return len(pa) == len(pb) and all(ka == kb and same_json(va, vb) for (ka, va), (kb, vb) in zip(pa, pb))
    if isinstance(a, list) or isinstance(b, list):
        return isinstance(a, list) and isinstance(b, list) and len(a) == len(b) and all(same_json(x, y) for x, y in zip(a, b))
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return float(a) == float(b)
    return type(a) is type(b) and a == b


def field(answer, name):
    return dict(answer[1]).get(name) if isinstance(answer, tuple) else None


def agree(k, o):
    if field(k, "ok") is not True or field(o, "ok") is not True:
        return field(k, "ok") is False and field(o, "ok") is False
    return same_json(field(k, "value"), field(o, "value")) and field(k, "str") == field(o, "str")


def describe(case, k, o):
    expr = case["expr"]
    if len(expr) > 300:
        expr = expr[:300] + "..."
    ctx = json.dumps(case["ctx"], ensure_ascii=False)
    if len(ctx) > 300:
        ctx = ctx[:300] + "..."
    kk = json.dumps(plain(k), ensure_ascii=False)[:400]
    oo = json.dumps(plain(o), ensure_ascii=False)[:400]
    return "expr: %s\n    ctx: %s%s\n    kiln:   %s\n    oracle: %s" % (
        expr, ctx, "  status: " + case["status"] if "status" in case else "", kk, oo)


def check_oracle_setup():
    node = shutil.which("node")
    if not node:
        print("node is missing: run scripts/deps.sh", flush=True)
        sys.exit(1)
    if not os.path.isdir(os.path.join(ORACLE_DIR, "node_modules", "@actions", "expressions")):
        print("tests/oracle/node_modules is missing: run scripts/deps.sh", flush=True)
        sys.exit(1)
    if not os.access(KILN, os.X_OK):
        print("no kiln binary at %s" % KILN, flush=True)
        sys.exit(1)
    return node


def differential(node, seed):
    rng = random.Random(seed)
    cases = corpus()
    n_fixed = len(cases)
    rich_names = list(RICH.keys())
    for i in range(N_RANDOM):
        ctx = RICH if rng.random() < 0.7 else random_context(rng)
        if ctx is RICH and rng.random() < 0.5:
            ctx = {k: RICH[k] for k in rng.sample(rich_names, rng.randint(3, len(rich_names)))}
        if rng.random() < 0.1:
            expr = token_soup(rng, list(ctx.keys()))
        else:
            expr = Gen(rng, ctx).expr(rng.randint(1, 5))
            if rng.random() < 0.15:
                expr = mutate(rng, expr)
        case = {"expr": expr, "ctx": ctx}
        if rng.random() < 0.1:
            case["status"] = rng.choice(["success", "failure", "cancelled"])
        cases.append(case)
    cases += focused_cases(rng, N_FOCUSED)

    skipped = [i for i, c in enumerate(cases) if many_escapes(c["expr"])]
    compared = [c for i, c in enumerate(cases) if i not in set(skipped)]
    workdir = tempfile.mkdtemp(prefix="kiln-expr-")
    try:
        t0 = time.monotonic()
        kiln = run_lines([KILN, "expr", "--jsonl"], compared, workdir)
        t1 = time.monotonic()
        oracle = run_lines([node, os.path.join(ORACLE_DIR, "eval-batch.mjs")], compared, ORACLE_DIR)
        t2 = time.monotonic()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    bad = [i for i, (k, o) in enumerate(zip(kiln, oracle)) if not agree(k, o)]
    oks = sum(1 for o in oracle if field(o, "ok") is True)
    print("cases: %d fixed + %d random + %d on numbers and Unicode (seed %d); %d compared (%d evaluate, "
          "%d are errors), %d skipped" % (n_fixed, N_RANDOM, N_FOCUSED, seed, len(compared), oks, len(compared) - oks,
                                          len(skipped)))
    print("agreement: %d/%d = %.4f%%   (kiln %.2fs, oracle %.2fs)"
          % (len(compared) - len(bad), len(compared), 100.0 * (len(compared) - len(bad)) / len(compared), t1 - t0, t2 - t1))
    for i in bad[:10]:
        fail("disagreement #%d\n    %s" % (i, describe(compared[i], kiln[i], oracle[i])))
    if len(bad) > 10:
        fail("... and %d more disagreements" % (len(bad) - 10))


def deliberate_differences(node):
    """The differences from the oracle that docs/expressions.md lists, checked on both sides so
    that a change of either is noticed."""
    err = ("error",)
    cases = [
        # every '' in a literal is a quote for kiln, as for GitHub's runner; the oracle's lexer
        # replaces only the first
        ("'a''b''c'", {}, "a'b'c", "a'b''c"),
        ("format('it''s {0}''s', 'x')", {}, "it's x's", "it's x''s"),
        ("''''''", {}, "''", "'''"),
        # what jansson cannot hold: numbers beyond the doubles, lone surrogates, NUL in keys
        ("fromJSON('1e400')", {}, err, None),
        ("fromJSON('-1e400')", {}, err, None),
        ("fromJSON('\"\\ud800\"')", {}, err, "\ud800"),
        ("toJSON(fromJSON('{\"\\u0000\":1}'))", {}, err, '{\n  "\\u0000": 1\n}'),
    ]
    batch = [{"expr": e, "ctx": c} for e, c, _, _ in cases]
    workdir = tempfile.mkdtemp(prefix="kiln-expr-")
    try:
        kiln = run_lines([KILN, "expr", "--jsonl"], batch, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    oracle = run_lines([node, os.path.join(ORACLE_DIR, "eval-batch.mjs")], batch, ORACLE_DIR)
    for (e, _, want, theirs), k, o in zip(cases, kiln, oracle):
        got = err if field(k, "ok") is False else field(k, "value")
        if got != want:
            fail("deliberate difference: %s gave %r, want %r" % (e, plain(k), want))
        seen = err if field(o, "ok") is False else field(o, "value")
        if seen != theirs:
            print("note: the oracle now gives %r for %s (was %r): the difference may be gone"
                  % (plain(o), e, theirs))


# ---- hashFiles ---------------------------------------------------------------------------

def runner_hash(root, files):
    total = hashlib.sha256()
    for f in files:
        with open(os.path.join(root, f), "rb") as fh:
            total.update(hashlib.sha256(fh.read()).digest())
    return total.hexdigest() if files else ""


def check_hash_files():
    root = tempfile.mkdtemp(prefix="kiln-hash-")
    try:
        tree = {"a.txt": b"a\n", "z.txt": b"z", "b/c.txt": b"c", "b/d.md": b"# d", ".hidden/e.txt": b"e",
                "b/deep/f.txt": b"f" * 100000, "B.txt": b"upper", "src/x.c": b"int x;", "src/y.h": b""}
        for rel, data in tree.items():
            os.makedirs(os.path.join(root, os.path.dirname(rel)), exist_ok=True)
            with open(os.path.join(root, rel), "wb") as fh:
                fh.write(data)
        # (patterns, files in the order the runner hashes them: per search path, depth first, by bytes)
        checks = [
            (["**/*.txt"], [".hidden/e.txt", "B.txt", "a.txt", "b/c.txt", "b/deep/f.txt", "z.txt"]),
            (["*.txt"], ["B.txt", "a.txt", "z.txt"]),
            (["b/**"], ["b/c.txt", "b/d.md", "b/deep/f.txt"]),
            (["b"], ["b/c.txt", "b/d.md", "b/deep/f.txt"]),
            (["src", "b/*.md"], ["src/x.c", "src/y.h", "b/d.md"]),
            (["b/*.md", "src"], ["b/d.md", "src/x.c", "src/y.h"]),
            (["**/*.txt", "!b/**"], [".hidden/e.txt", "B.txt", "a.txt", "z.txt"]),
            (["**/*.txt\n!**/deep/**\n# a comment\n"], [".hidden/e.txt", "B.txt", "a.txt", "b/c.txt", "z.txt"]),
            (["a.txt"], ["a.txt"]),
            (["./a.txt"], ["a.txt"]),
            (["nothing-*.xyz"], []),
            (["missing/dir/**"], []),
        ]
        print("hashFiles: %d pattern sets against the runner's algorithm" % len(checks))
        for patterns, files in checks:
            expr = "hashFiles(" + ", ".join("'" + p.replace("'", "''") + "'" for p in patterns) + ")"
            p = subprocess.run([KILN, "expr", expr], cwd=root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
            got = p.stdout.decode().strip()
            want = json.dumps(runner_hash(root, files))
            if p.returncode != 0 or got != want:
                fail("%s in a test tree: got %s (exit %d, %s), want %s (%s)"
                     % (expr, got, p.returncode, p.stderr.decode().strip(), want, files))
    finally:
        shutil.rmtree(root, ignore_errors=True)


def check_cli():
    tmp = tempfile.mkdtemp(prefix="kiln-expr-")
    try:
        ctxfile = os.path.join(tmp, "ctx.json")
        with open(ctxfile, "w") as fh:
            json.dump({"github": {"ref": "refs/heads/main"}, "vars": {"n": 0.5}}, fh)
        runs = [
            (["expr", "--context", ctxfile, "github.ref"], 0, '"refs/heads/main"\n'),
            (["expr", "--context", ctxfile, "vars.n + 1"], 2, None),
            (["expr", "--context", ctxfile, "fromJSON('[1, 0.1, 1e21, -0]')"], 0, "[1,0.1,1e+21,0]\n"),
            (["expr", "--status", "failure", "failure()"], 0, "true\n"),
            (["expr", "nope.x"], 2, None),
            (["expr"], 2, None),
            (["expr", "--context", os.path.join(tmp, "missing.json"), "1"], 2, None),
        ]
        print("command line: %d runs" % len(runs))
        for args, code, out in runs:
            p = subprocess.run([KILN] + args, cwd=tmp, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
            if p.returncode != code or (out is not None and p.stdout.decode() != out):
                fail("kiln %s: exit %d, stdout %r, stderr %r; want exit %d, stdout %r"
                     % (" ".join(args), p.returncode, p.stdout.decode(), p.stderr.decode(), code, out))
            if code == 2 and not p.stderr.decode().startswith("kiln: error: ") and args != ["expr"]:
                fail("kiln %s: stderr %r does not start with 'kiln: error: '" % (" ".join(args), p.stderr.decode()))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main():
    node = check_oracle_setup()
    seed = int(os.environ["KILN_EXPR_SEED"]) if os.environ.get("KILN_EXPR_SEED") else random.SystemRandom().randrange(1 << 31)
    print("seed: %d (KILN_EXPR_SEED=%d to reproduce)" % (seed, seed), flush=True)
    differential(node, seed)
    deliberate_differences(node)
    check_hash_files()
    check_cli()
    if failures:
        print("%d failure(s); seed %d" % (len(failures), seed))
        return 1
    print("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
