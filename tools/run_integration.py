"""Run every integration target against the local EC2 API in MOTO_URL.

Usage: python tools/run_integration.py TARGETS_DIR [NAME...]

NAME is a target, or python/FILE for one file of tests/integration/python; with no
NAME, every target and then every Python integration test runs.

TARGETS_DIR is tests/integration/targets of a copy of the collection (at
.../ansible_collections/parkingspot/ec2). Each target runs through
`ansible-test integration --local`, as with any AWS account: the copy's
tests/integration/cloud-config-aws.ini is written with the local API's endpoint
(aws_endpoint_url) and throw-away credentials, replacing any there. The API is
reset before each target so targets cannot see each other's leftovers.
"""

import os
import shutil
import subprocess
import sys
import time
import urllib.request

CLOUD_CONFIG = """# Written by tools/run_integration.py: the local EC2 API, not an AWS account.
[default]
aws_access_key = testing
aws_secret_key = testing
aws_region = us-east-1
aws_endpoint_url = %s
"""


def write_cloud_config(collection_root, url):
    """The variables ansible-test passes to every target (its aws cloud plugin reads this file)."""
    with open(os.path.join(collection_root, "tests", "integration", "cloud-config-aws.ini"), "w") as config:
        config.write(CLOUD_CONFIG % url)


def ensure_git_tree(collection_root):
    """ansible-test lists a collection's files with git; a copy inside an ignored folder needs its own tree."""
    if not os.path.exists(os.path.join(collection_root, ".git")):
        subprocess.run(["git", "init", "-q"], cwd=collection_root, check=True)
        subprocess.run(["git", "add", "-A"], cwd=collection_root, check=True)


def reset(url, home=None):
    """Start moto from nothing; with ``home``, drop the keeper's locks and journals kept there too
    (a journal of the last target would have the next plan its instances as not yet visible)."""
    request = urllib.request.Request(url + "/moto-api/reset", method="POST", data=b"")
    with urllib.request.urlopen(request, timeout=30) as response:
        response.read()
    if home:
        shutil.rmtree(os.path.join(home, ".cache", "parkingspot"), ignore_errors=True)


def main(argv):
    targets_dir = os.path.abspath(argv[0])
    names = argv[1:] or sorted(
        name for name in os.listdir(targets_dir) if os.path.isfile(os.path.join(targets_dir, name, "tasks", "main.yml"))
    )
    url = os.environ["MOTO_URL"]
    collection_root = os.path.dirname(os.path.dirname(os.path.dirname(targets_dir)))
    env = dict(os.environ)
    # ansible-test refuses to run AWS targets beside a ~/.aws (real credentials could be used), and
    # nothing here may reach a real account: the targets run with a home of their own.
    target_env = dict(env, HOME=os.path.join(collection_root, "tests", "output", "home"))
    target_env.pop("XDG_CACHE_HOME", None)  # the keeper's locks and journals go under that home
    os.makedirs(target_env["HOME"], exist_ok=True)
    failed = []
    python_names = [name for name in names if name.startswith("python/")]
    names = [name for name in names if not name.startswith("python/")]
    if names:
        ensure_git_tree(collection_root)
        write_cloud_config(collection_root, url)
    ansible_test = os.path.join(os.path.dirname(sys.executable), "ansible-test")
    python = "%d.%d" % sys.version_info[:2]
    for name in names:
        reset(url, target_env["HOME"])
        started = time.monotonic()
        code = subprocess.call(
            [ansible_test, "integration", "--local", "--python", python, "--color", "no", name],
            cwd=collection_root,
            env=target_env,
        )
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
