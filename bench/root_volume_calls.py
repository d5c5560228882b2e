# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""API calls root_volume makes per run, against moto in-process.

Run from the collection's place in an ``ansible_collections`` tree (``make collection`` builds one):

    python bench/root_volume_calls.py

Prints one Markdown table row per scenario: reads, writes, the write calls and wall time.
"""

import contextlib
import io
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
COLLECTIONS = os.path.abspath(os.path.join(HERE, "..", "..", "..", ".."))
if os.path.basename(os.path.dirname(os.path.dirname(os.path.dirname(HERE)))) == "ansible_collections":
    sys.path.insert(0, COLLECTIONS)

WRITE_PREFIXES = ("Create", "Delete", "Attach", "Detach", "Run", "Terminate", "Stop", "Modify", "Copy")


def main():
    os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION="us-east-1")
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_SESSION_TOKEN"):
        os.environ.pop(name, None)
    import boto3
    import botocore.client
    import moto
    from ansible.module_utils.testing import patch_module_args

    from ansible_collections.parkingspot.ec2.plugins.module_utils import _root_volume
    from ansible_collections.parkingspot.ec2.plugins.modules import root_volume

    _root_volume.POLL_INTERVAL = 0.01
    calls = []
    original = botocore.client.BaseClient._make_api_call

    def recording(self, operation, params):
        calls.append(operation)
        return original(self, operation, params)

    botocore.client.BaseClient._make_api_call = recording

    def run(args):
        full = dict(args, region="us-east-1", _ansible_check_mode=False, _ansible_diff=True)
        out = io.StringIO()
        with patch_module_args(full), contextlib.redirect_stdout(out):
            try:
                root_volume.main()
            except SystemExit:
                pass
        return json.loads(out.getvalue())

    rows = []

    def measure(label, args):
        del calls[:]
        started = time.perf_counter()
        result = run(args)
        elapsed = time.perf_counter() - started
        if result.get("failed"):
            raise SystemExit("%s failed: %s" % (label, result["msg"]))
        writes = [c for c in calls if c.startswith(WRITE_PREFIXES)]
        reads = len(calls) - len(writes)
        rows.append((label, reads, len(writes), ", ".join(writes) or "-", elapsed, result["changed"]))
        return result

    with moto.mock_aws():
        ec2 = boto3.client("ec2", region_name="us-east-1")
        image_id = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]

        def launch(zone):
            placement = {"AvailabilityZone": zone}
            return ec2.run_instances(ImageId=image_id, MinCount=1, MaxCount=1, Placement=placement)["Instances"][0][
                "InstanceId"
            ]

        in_a, in_b = launch("us-east-1a"), launch("us-east-1b")
        base = {"name": "bench-root", "image_id": image_id}
        measure("create from AMI root snapshot", dict(base, zone="us-east-1a"))
        measure("present, nothing to do", dict(base, zone="us-east-1a"))
        measure("attach", dict(base, state="attached", instance_id=in_a))
        measure("attached, nothing to do", dict(base, state="attached", instance_id=in_a))
        ec2.stop_instances(InstanceIds=[in_a])
        migrate = dict(base, state="attached", instance_id=in_b, zone_mismatch="migrate", force_detach=True)
        measure("migrate a -> b and attach", migrate)
        measure("after migration, nothing to do", migrate)
        ec2.stop_instances(InstanceIds=[in_b])
        measure("absent (volume + superseded copy)", dict(base, state="absent", force_detach=True))
        measure("absent, nothing to do", dict(base, state="absent", force_detach=True))

    print("| scenario | read calls | write calls | writes | changed | seconds (moto) |")
    print("|---|---:|---:|---|---|---:|")
    for label, reads, writes, names, elapsed, changed in rows:
        print("| %s | %d | %d | %s | %s | %.2f |" % (label, reads, writes, names, changed, elapsed))
    return 0


if __name__ == "__main__":
    sys.exit(main())
