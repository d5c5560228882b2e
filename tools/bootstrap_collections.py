"""Install the collections ParkingSpot depends on into a project-local path.

There is no Galaxy server here, so the dependency collections are taken from
the ``ansible`` community package on PyPI: its wheel is downloaded once (pip's
cache keeps it) and only the wanted collection folders are extracted.

Usage: python tools/bootstrap_collections.py DEST WHEEL_SPEC NAMESPACE.NAME...
"""

import glob
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile


def main(argv):
    dest, spec, wanted = argv[0], argv[1], argv[2:]
    missing = [w for w in wanted if not os.path.exists(_manifest(dest, w))]
    if not missing:
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--quiet",
                "--no-deps",
                "--only-binary",
                ":all:",
                "-d",
                tmp,
                spec,
            ],
            check=True,
        )
        wheel = glob.glob(os.path.join(tmp, "*.whl"))[0]
        with zipfile.ZipFile(wheel) as archive:
            for name in missing:
                prefix = "ansible_collections/%s/" % name.replace(".", "/")
                target = os.path.join(dest, "ansible_collections", *name.split("."))
                shutil.rmtree(target, ignore_errors=True)
                members = [m for m in archive.namelist() if m.startswith(prefix)]
                if not members:
                    sys.exit("%s does not contain the collection %s" % (spec, name))
                for member in members:
                    archive.extract(member, dest)
                print("installed %s into %s" % (name, target))
    return 0


def _manifest(dest, name):
    return os.path.join(dest, "ansible_collections", *name.split("."), "MANIFEST.json")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
