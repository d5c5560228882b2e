# Copyright: ParkingSpot contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)


class ModuleDocFragment:
    # The run_lock option of spot_pool and spot_pools (plugins/module_utils/_run_lock.py).

    DOCUMENTATION = r"""
options:
  run_lock:
    description:
      - Keeper runs of the same pool on this controller never overlap. A run holds the pool's lock from its read
        until its launches and drain tags are made (the drains themselves run after it let go), so two runs started
        a moment apart, for example by the C(ci_queue) rulebook, cannot both launch what the pool lacks.
      - When a pool's demand carries C(counted_at), the newest counts offered by any run of the pool are planned
        with, so a run started for older counts never undoes a newer one.
      - Every launch is also written to the pool's journal in O(run_lock.dir). For two minutes, an instance of the
        journal that DescribeInstances does not show yet (EC2 reads are eventually consistent) is planned as
        C(pending) rather than launched again.
      - The lock orders runs on one machine only. Runs on several machines (AWX with concurrent jobs of one job
        template) are not ordered by it; keep such job templates to one job at a time.
      - Check mode takes no lock and writes no journal.
    type: dict
    default: {}
    suboptions:
      enabled:
        description: Take the lock. V(false) lets runs of one pool overlap.
        type: bool
        default: true
      dir:
        description:
          - Directory of the lock and journal files (created with mode C(0700)), one pair of files per pool, region,
            endpoint and profile.
          - Defaults to C(parkingspot/keeper) under C($XDG_CACHE_HOME), else C(~/.cache/parkingspot/keeper). When
            the default cannot be created the run goes on without the lock and warns; a given directory that cannot
            be used fails the run before any call.
        type: path
      timeout_seconds:
        description:
          - How long to wait for another run of the pool to let go. A pool whose lock stays taken longer fails
            before any call (the other pools of a M(parkingspot.ec2.spot_pools) run go on).
        type: int
        default: 120
      reuse_read_seconds:
        description:
          - M(parkingspot.ec2.spot_pools) only. A run of a pool whose last read on this controller is younger than
            this plans from that read (with what was launched since) instead of reading the pool again, as long
            as its plan only launches. A plan that would terminate or drain anything is made again from a new
            read, so busy runners and interruptions are always judged on fresh data.
          - Once that read is older than this, the first run to find it so plans its launches from it all the
            same, then reads the pool again after it let go of the lock and keeps the new read for the runs that
            follow (one such read of a pool at a time). Runs meanwhile keep using the old read, never once it is
            twice this age.
          - A read of a pool costs time and CPU in proportion to its instances (seconds for thousands), so
            during a burst of queue events this keeps each keeper run short. What happened since the read (an
            interruption, a runner that shut itself down) is seen at the next read; until then the pool may be
            short of those instances, never over.
          - V(0), the default, reads on every run, as a keeper run by hand or on a schedule should. The C(ci_queue)
            rulebook's runs use 30 (C(parkingspot_ci_run_lock)).
        type: int
        default: 0
"""
