# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""renew_before_minutes against the longest job, on a synthetic day without interruptions."""

from ansible_collections.parkingspot.ec2.bench import ci_sim
from ansible_collections.parkingspot.ec2.bench import ci_sim_renew_sweep as renew

# One day, 60-minute blocks, jobs of up to 30 minutes (median 20), spot always there.
OPTIONS = [
    "--synthetic",
    "--days",
    "1",
    "--block-minutes",
    "60",
    "--job-median-minutes",
    "20",
    "--job-max-minutes",
    "30",
]


def rows(margins):
    config = ci_sim.config_from_args(ci_sim.parse_args(OPTIONS))
    return {r["renew_before_minutes"]: r for r in renew.sweep(config, margins, [1, 2])}


def test_a_margin_of_at_least_the_longest_job_cuts_no_job_at_a_lease_end():
    out = rows([5, 30, 40])
    assert out[5]["jobs_cut_by_lease"] > 0
    assert out[30]["jobs_cut_by_lease"] == 0 and out[40]["jobs_cut_by_lease"] == 0
    assert out[30]["jobs_lost"] == 0


def test_bad_margins_are_refused_with_the_option_name(capsys):
    assert renew.main(["--renew", "x"]) == 2
    assert "--renew" in capsys.readouterr().err
