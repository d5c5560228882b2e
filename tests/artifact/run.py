"""The artifact tier: what users install is what we tested, and nothing else.

Usage: python tests/artifact/run.py DEPS_COLLECTIONS

1. `ansible-galaxy collection build` of this checkout;
2. list the tarball: fail on development files, require the licence and the metadata;
3. install it with `-p` into an empty directory and, from there only (the dependency
   collections beside it from DEPS_COLLECTIONS), render every module's and role's docs with
   ansible-doc and run tests/artifact/smoke.yml and the playbook parkingspot.ec2.admin_spot
   against a local EC2 API (tools/with_moto.py);
4. galaxy-importer (offline; its container-based ansible-test step off) on the tarball: no errors,
   and no warning but amazon.aws modules it cannot resolve (it installs no dependency).
"""

import fnmatch
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.dirname(sys.executable)

# Paths (fnmatch on the tarball's member names) that must never ship.
DEVELOPMENT = [
    "tests",
    "tests/*",
    "bench",
    "bench/*",
    "tools",
    "tools/*",
    ".ci*",
    "Makefile",
    "requirements-dev.txt",
    "ruff.toml",
    "ansible.cfg",
    ".gitignore",
    "execution-environment.yml",
    "changelogs/fragments*",
    "roles/*/molecule*",
    "playbooks/demo.yml",
    "playbooks/tasks/demo_step.yml",
    "playbooks/tasks/reconcile_pool.yml",
    "docs/economics.html",
    "demo-output*",
    ".venv*",
    ".build*",
    "*__pycache__*",
    "*.pyc",
    "*.tar.gz",
]
REQUIRED = ["MANIFEST.json", "FILES.json", "COPYING", "README.md", "meta/runtime.yml", "plugins/modules/spot_pool.py"]
MAX_BYTES = 600 * 1024


class Failure(Exception):
    pass


def run(argv, **kwargs):
    proc = subprocess.run(argv, capture_output=True, text=True, check=False, **kwargs)
    if proc.returncode:
        raise Failure("%s exited %d:\n%s%s" % (" ".join(argv), proc.returncode, proc.stdout, proc.stderr))
    return proc.stdout + proc.stderr


STARTED = time.monotonic()


def say(message):
    print("artifact: %s (%.0f s)" % (message, time.monotonic() - STARTED), flush=True)


def build(work):
    out = run([os.path.join(BIN, "ansible-galaxy"), "collection", "build", ROOT, "--output-path", work])
    tarball = re.search(r"(\S+\.tar\.gz)", out).group(1)
    say("built %s (%d bytes)" % (os.path.basename(tarball), os.path.getsize(tarball)))
    return tarball


def check_files(tarball):
    with tarfile.open(tarball) as tar:
        names = [member.name for member in tar.getmembers()]
    dev = sorted(name for name in names if any(fnmatch.fnmatch(name, pattern) for pattern in DEVELOPMENT))
    missing = [name for name in REQUIRED if name not in names]
    size = os.path.getsize(tarball)
    problems = []
    if dev:
        problems.append("development files in the artifact: %s" % ", ".join(dev))
    if missing:
        problems.append("missing from the artifact: %s" % ", ".join(missing))
    if size > MAX_BYTES:
        problems.append("the artifact has %d bytes, more than %d" % (size, MAX_BYTES))
    if problems:
        raise Failure("\n".join(problems))
    say("%d files, no development file, %s present" % (len(names), ", ".join(REQUIRED)))


def install(tarball, work, deps):
    target = os.path.join(work, "installed")
    os.makedirs(target)
    # Only the empty directory is searched for an existing copy (else "already installed" wins).
    run(
        [os.path.join(BIN, "ansible-galaxy"), "collection", "install", tarball, "-p", target, "--no-deps"],
        env=dict(os.environ, ANSIBLE_COLLECTIONS_PATH=target),
    )
    installed = os.path.join(target, "ansible_collections", "parkingspot", "ec2")
    if not os.path.isfile(os.path.join(installed, "MANIFEST.json")):
        raise Failure("nothing installed at %s" % installed)
    # The dependency collections beside it, and no other copy of parkingspot.ec2.
    beside = os.path.join(work, "deps", "ansible_collections")
    os.makedirs(beside)
    for namespace in os.listdir(os.path.join(deps, "ansible_collections")):
        if namespace != "parkingspot":
            os.symlink(os.path.join(deps, "ansible_collections", namespace), os.path.join(beside, namespace))
    config = os.path.join(work, "ansible.cfg")
    with open(config, "w") as handle:
        handle.write("[defaults]\nstdout_callback = default\ninterpreter_python = %s\n" % sys.executable)
    env = dict(
        os.environ,
        ANSIBLE_COLLECTIONS_PATH="%s:%s" % (target, os.path.dirname(beside)),
        ANSIBLE_CONFIG=config,
        ANSIBLE_ROLES_PATH=os.path.join(work, "no-roles"),
    )
    say("installed into an empty directory: %s" % installed)
    return installed, env


def check_docs(installed, env):
    doc = os.path.join(BIN, "ansible-doc")
    modules = sorted(
        name[:-3]
        for name in os.listdir(os.path.join(installed, "plugins", "modules"))
        if name.endswith(".py") and not name.startswith("_")
    )
    problems = []
    for module in modules:
        fqcn = "parkingspot.ec2." + module
        data = json.loads(run([doc, "--json", "-t", "module", fqcn], env=env, cwd=os.path.dirname(installed)))[fqcn]
        text = run([doc, "-t", "module", fqcn], env=env, cwd=os.path.dirname(installed))
        options = data["doc"].get("options") or {}
        if "region" not in options or "endpoint_url" not in options:
            problems.append("%s: the amazon.aws connection options did not render" % fqcn)
        if not data.get("examples"):
            problems.append("%s: no examples" % fqcn)
        if not data.get("return"):
            problems.append("%s: no return values" % fqcn)
        if "[WARNING]" in text or "ERROR" in text:
            problems.append("%s: ansible-doc complained:\n%s" % (fqcn, text))
    roles = json.loads(run([doc, "--json", "-t", "role", "-l", "parkingspot.ec2"], env=env))
    for role in ("termination_watcher", "cleanup_hooks", "root_pivot"):
        if "parkingspot.ec2." + role not in roles:
            problems.append("role parkingspot.ec2.%s has no argument spec in the artifact" % role)
    if problems:
        raise Failure("\n".join(problems))
    say("ansible-doc renders %d modules (with the amazon.aws options) and %d roles" % (len(modules), len(roles)))


def check_runs(installed, env, work):
    with_moto = [sys.executable, os.path.join(ROOT, "tools", "with_moto.py"), "--"]
    playbook = os.path.join(BIN, "ansible-playbook")
    # One shell under with_moto, so both runs see the same API.
    script = (
        'set -e\n"$1" "$2"\n'
        '"$1" parkingspot.ec2.admin_spot -e parkingspot_endpoint_url="$MOTO_URL" -e parkingspot_region=us-east-1 '
        "-e parkingspot_admin_owner=artifact\n"
    )
    out = run(
        with_moto + ["sh", "-c", script, "sh", playbook, os.path.join(ROOT, "tests", "artifact", "smoke.yml")],
        env=env,
        cwd=work,
    )
    ids = re.search(r"artifact-instances=([\w,-]+)", out)
    if not ids:
        raise Failure("smoke.yml printed no instance ids:\n" + out)
    after = out[ids.end() :]
    missing = [instance for instance in ids.group(1).split(",") if instance not in after]
    if missing:
        raise Failure("parkingspot.ec2.admin_spot from the installed copy did not show %s:\n%s" % (missing, out))
    listed = run([os.path.join(BIN, "ansible-galaxy"), "collection", "list", "parkingspot.ec2"], env=env)
    if os.path.dirname(os.path.dirname(installed)) not in listed or listed.count("parkingspot.ec2") != 1:
        raise Failure("ansible-galaxy does not list the installed copy")
    say("smoke.yml and parkingspot.ec2.admin_spot ran from the installed copy against the local EC2 API")


def check_importer(tarball, work):
    config = os.path.join(work, "galaxy-importer.cfg")
    with open(config, "w") as handle:
        # Offline: no container runtime, no ansible-test image; ansible-doc and ansible-lint run.
        handle.write(
            "[galaxy-importer]\n"
            "run_ansible_test = false\n"
            "ansible_test_local_image = false\n"
            "local_image_docker = false\n"
            "run_ansible_doc = true\n"
            "run_ansible_lint = true\n"
            "offline_ansible_lint = true\n"
            "run_flake8 = false\n"
            "check_required_tags = false\n"
            "tmp_root_dir = %s\n" % os.path.join(work, "importer-tmp")
        )
    os.makedirs(os.path.join(work, "importer-tmp"))
    env = dict(os.environ, GALAXY_IMPORTER_CONFIG=config, PATH=BIN + os.pathsep + os.environ.get("PATH", ""))
    for key in ("ANSIBLE_COLLECTIONS_PATH", "ANSIBLE_CONFIG"):
        env.pop(key, None)
    proc = subprocess.run(
        [sys.executable, "-m", "galaxy_importer.main", tarball, "--print-result"],
        capture_output=True,
        text=True,
        env=env,
        cwd=work,
        check=False,
    )
    log = proc.stdout + proc.stderr
    errors = [line for line in log.splitlines() if re.search(r"\bERROR\b", line)]
    if proc.returncode or errors:
        raise Failure("galaxy-importer failed (exit %d):\n%s" % (proc.returncode, log))
    result = json.loads(log[log.index("{") : log.rindex("}") + 1]) if "{" in log else {}
    # The pages Galaxy shows come from docs_blob: each module needs its options, examples and returns.
    blob = (result.get("docs_blob") or {}).get("contents") or []
    modules = [c for c in blob if c.get("content_type") == "module"]
    undocumented = [
        c["content_name"]
        for c in modules
        if not all((c.get("doc_strings") or {}).get(part) for part in ("doc", "examples", "return"))
    ]
    if not modules or undocumented:
        raise Failure("galaxy-importer found no docs for modules %s:\n%s" % (undocumented or "(none found)", log))
    warnings = [line for line in log.splitlines() if "WARNING" in line]
    # Offline, the importer has no dependency installed: ansible-lint cannot resolve amazon.aws's
    # modules. Any other warning (an internal error of the syntax check included) fails.
    dependency = re.compile(r"syntax-check\[unknown-module\]: couldn't resolve module/action 'amazon\.aws\.")
    unexpected = [line for line in warnings if not dependency.search(line)]
    if unexpected:
        raise Failure("galaxy-importer warned:\n%s" % "\n".join(unexpected))
    say("galaxy-importer: no errors, %d modules documented, %d warnings" % (len(modules), len(warnings)))
    for line in warnings:
        print("  " + line)


def main(argv):
    deps = os.path.abspath(argv[0])
    work = tempfile.mkdtemp(prefix="parkingspot-artifact.")
    try:
        tarball = build(work)
        check_files(tarball)
        installed, env = install(tarball, work, deps)
        check_docs(installed, env)
        check_runs(installed, env, work)
        check_importer(tarball, work)
    except Failure as failure:
        print("artifact: FAILED: %s" % failure, file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print("artifact: 1 passed, 0 failed")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
