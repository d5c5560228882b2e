"""Run every integration target against the local EC2 API in MOTO_URL.

Usage: python tools/run_integration.py TARGETS_DIR [NAME...]

NAME is a target, or python/FILE for one file of tests/integration/python; with no
NAME, every target and then every Python integration test runs.

Each target is a role (tests/integration/targets/<name>/tasks/main.yml). The
API is reset before each target so targets cannot see each other's leftovers.
"""

import os
import subprocess
import sys
import time
import urllib.request


def reset(url):
    request = urllib.request.Request(url + "/moto-api/reset", method="POST", data=b"")
    with urllib.request.urlopen(request, timeout=30) as response:
        response.read()


def main(argv):
    targets_dir = os.path.abspath(argv[0])
    names = argv[1:] or sorted(
        name for name in os.listdir(targets_dir) if os.path.isfile(os.path.join(targets_dir, name, "tasks", "main.yml"))
    )
    url = os.environ["MOTO_URL"]
    playbook = os.path.join(os.path.dirname(targets_dir), "run_target.yml")
    env = dict(os.environ, ANSIBLE_ROLES_PATH=targets_dir)
    failed = []
    python_names = [name for name in names if name.startswith("python/")]
    names = [name for name in names if not name.startswith("python/")]
    for name in names:
        reset(url)
        started = time.monotonic()
        code = subprocess.call(["ansible-playbook", playbook, "-e", "target=%s" % name], env=env)
        outcome = "ok" if code == 0 else "FAILED"
        print("integration target %s: %s in %.1fs" % (name, outcome, time.monotonic() - started))
        if code:
            failed.append(name)
    python_tests = os.path.join(os.path.dirname(targets_dir), "python")
    if python_names:
        python_tests = [os.path.join(os.path.dirname(targets_dir), name) for name in python_names]
    elif argv[1:] or not os.path.isdir(python_tests):
        python_tests = []
    else:
        python_tests = [python_tests]
    if python_tests:
        started = time.monotonic()
        code = subprocess.call([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"] + python_tests, env=env)
        print(
            "integration tests in %s: %s in %.1fs"
            % (python_tests, "ok" if code == 0 else "FAILED", time.monotonic() - started)
        )
        names = names + ["python"]
        if code:
            failed.append("python")
    print(
        "%d passed, %d failed%s" % (len(names) - len(failed), len(failed), (": " + ", ".join(failed)) if failed else "")
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
