"""Summarise the tiers of `make test` from their logs, ending on one line that names every skip.

Usage: python tools/test_summary.py LOG_DIR TIER... [--failed TIER]

Each LOG_DIR/<tier>.log is the output of one tier. ``LOG_DIR/<tier>.seconds`` (when there) holds the tier's wall time.
Skips are read from pytest's short summary
(`-rs`: "SKIPPED [N] file:line: reason") and from ansible-test's "Skipping ..." warnings.
Standard library only: it runs before the venv exists when the first tier fails early.
"""

import collections
import os
import re
import sys

PYTEST_SKIP = re.compile(r"^SKIPPED \[(\d+)\] (\S+?):\d+: (.*)$")
ANSIBLE_TEST_SKIP = re.compile(r"^WARNING: (Skipping .*)$")


def skips_of(path):
    """(count, where, reason) for every skip line in one tier's log."""
    found = []
    with open(path, encoding="utf-8", errors="replace") as log:
        for line in log:
            line = re.sub(r"\x1b\[[0-9;]*m", "", line.rstrip("\n"))
            match = PYTEST_SKIP.match(line)
            if match:
                found.append((int(match.group(1)), match.group(2), match.group(3).strip()))
                continue
            match = ANSIBLE_TEST_SKIP.match(line)
            if match:
                found.append((1, "ansible-test", match.group(1).strip()))
    return found


def summary(log_dir, tiers, failed=None):
    """The report's lines; the last one is the verdict with every skip reason and its count."""
    lines = []
    by_reason = collections.OrderedDict()
    ran = []
    for tier in tiers:
        path = os.path.join(log_dir, tier + ".log")
        if not os.path.exists(path):
            continue
        ran.append(tier)
        for count, where, reason in skips_of(path):
            lines.append("  skipped %d in %s (%s): %s" % (count, where, tier, reason))
            key = "%s: %s" % (tier, reason)
            by_reason[key] = by_reason.get(key, 0) + count
    seconds = []
    for tier in ran:
        path = os.path.join(log_dir, tier + ".seconds")
        if os.path.exists(path):
            with open(path, encoding="utf-8") as timing:
                seconds.append("%s %ss" % (tier, timing.read().strip()))
    if seconds:
        lines.append("  seconds per tier: " + ", ".join(seconds))
    total = sum(by_reason.values())
    if total:
        skipped = "%d skipped: %s" % (total, "; ".join("%d × %s" % (n, reason) for reason, n in by_reason.items()))
    else:
        skipped = "nothing skipped"
    if failed:
        verdict = "make test: FAILED in %s (tiers run: %s); %s" % (failed, " ".join(ran), skipped)
    else:
        verdict = "make test: all tiers passed (%s); %s" % (" ".join(ran), skipped)
    return lines + [verdict]


def main(argv):
    failed = None
    if "--failed" in argv:
        at = argv.index("--failed")
        failed = argv[at + 1]
        argv = argv[:at] + argv[at + 2 :]
    log_dir, tiers = argv[0], argv[1:]
    print("\n".join(summary(log_dir, tiers, failed)))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
