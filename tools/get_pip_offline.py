"""Stand-in for the pip bootstrap script that ansible-test downloads.

ansible-test runs ``get_pip_<version>.py [pip options] pip==<version> ...`` in each
fresh virtual environment it creates. Instead of fetching that script from the
network, this file runs pip from the wheel that ``ensurepip`` ships with every
CPython, so sanity and unit tests work with nothing but the package index.
"""

import ensurepip
import glob
import os
import sys

bundled = sorted(glob.glob(os.path.join(os.path.dirname(ensurepip.__file__), "_bundled", "pip-*.whl")))
if not bundled:
    sys.exit("ensurepip carries no pip wheel for this Python")
sys.path.insert(0, bundled[-1])

from pip._internal.cli.main import main  # noqa: E402  pylint: disable=wrong-import-position

# get-pip.py takes install arguments plus two flags of its own.
arguments = [arg for arg in sys.argv[1:] if arg not in ("--no-setuptools", "--no-wheel")]
sys.exit(main(["install", *arguments]))
