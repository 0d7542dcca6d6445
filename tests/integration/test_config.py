"""kiln-coordinator --config: settings from YAML, flags win, bad files are refused
with file:line:col and nothing is started."""
import json
import os
import subprocess
import sys
import tempfile
import time

BIN = os.environ.get("KILN_BIN", os.path.join(os.path.dirname(__file__), "..", "..", "build", "bin"))
passed = failed = 0


def check(cond, what):
    global passed, failed
    if cond:
        passed += 1
    else:
        failed += 1
        print("FAIL:", what, file=sys.stderr)


def wait_file(path, proc, timeout=15):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if os.path.exists(path):
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.02)
    return False


with tempfile.TemporaryDirectory(prefix="kiln-test-config.") as tmp:
    data = os.path.join(tmp, "data")
    other = os.path.join(tmp, "other")
    cfg = os.path.join(tmp, "coordinator.yaml")
    with open(cfg, "w") as f:
        f.write("# settings\nlisten: tcp://127.0.0.1:0\nhttp: 127.0.0.1:0\n"
                f"data: {other}\nagent_lost_after: 5s\nretries: 2\n")
    # --data on the command line wins over the file's data:
    p = subprocess.Popen([f"{BIN}/kiln-coordinator", "--config", cfg, "--data", data],
                         stderr=subprocess.PIPE, text=True)
    try:
        ready = wait_file(os.path.join(data, "endpoints.json"), p)
        check(ready, "coordinator started from the config file")
        if ready:
            ep = json.load(open(os.path.join(data, "endpoints.json")))
            check(ep["bus"].startswith("tcp://127.0.0.1:") and not ep["bus"].endswith(":0"),
                  "bus has a real port")
            check(ep["http"].startswith("http://127.0.0.1:"), "http address")
        check(not os.path.exists(other), "flag --data won over the file")
    finally:
        p.terminate()
        _, err = p.communicate(timeout=15)
    check(p.returncode == 0, f"SIGTERM exits 0 (got {p.returncode})")

    bad = {
        "unknown.yaml": ("listen: tcp://127.0.0.1:0\nagent_lost_afterr: 5s\n", ":2:1:", "agent_lost_afterr"),
        "syntax.yaml": ("listen: [oops\n", ":2:1:", ""),
        "duration.yaml": (f"data: {data}-x\nagent_lost_after: soon\n", "", "soon"),
    }
    for name, (text, pos, word) in bad.items():
        path = os.path.join(tmp, name)
        with open(path, "w") as f:
            f.write(text)
        r = subprocess.run([f"{BIN}/kiln-coordinator", "--config", path], capture_output=True,
                           text=True, timeout=15)
        check(r.returncode == 2, f"{name}: exit 2 (got {r.returncode})")
        check(path + pos in r.stderr if pos else True, f"{name}: position in {r.stderr!r}")
        check(word in r.stderr, f"{name}: names '{word}' in {r.stderr!r}")
        check(not os.path.exists(data + "-x"), f"{name}: nothing created")

    r = subprocess.run([f"{BIN}/kiln-coordinator", "--version"], capture_output=True, text=True)
    check(r.returncode == 0 and r.stdout.startswith("kiln-coordinator "), "--version")
    r = subprocess.run([f"{BIN}/kiln-agent", "--help"], capture_output=True, text=True)
    check(r.returncode == 0 and "--coordinator" in r.stdout, "agent --help")
    r = subprocess.run([f"{BIN}/kiln-agent", "--capacity", "zero"], capture_output=True, text=True)
    check(r.returncode == 2, "agent: bad capacity is a usage error")

print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
