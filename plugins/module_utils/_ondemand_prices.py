# Copyright: ParkingSpot contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Shipped on-demand price table for common CI instance types.

This is a static table, not a live price source. Values are the public AWS on-demand
list prices for Linux in us-east-1 (USD per instance-hour, shared tenancy), as published
on the EC2 on-demand pricing page and checked in 2024. Other regions are usually 5-30%
more expensive; prices change rarely but they do change. Users can override or extend
the table with the ``on_demand_prices`` option of the modules, and results always say
which source an on-demand figure came from (``table`` or ``user``).
"""

ON_DEMAND_TABLE_SOURCE = "parkingspot shipped table: us-east-1 Linux on-demand list prices (USD/hour), checked 2024"

# instance type -> (vCPUs, memory GiB, architecture, USD per hour)
ON_DEMAND_TABLE = {
    "t3.micro": (2, 1.0, "x86_64", 0.0104),
    "t3.small": (2, 2.0, "x86_64", 0.0208),
    "t3.medium": (2, 4.0, "x86_64", 0.0416),
    "t3.large": (2, 8.0, "x86_64", 0.0832),
    "t3.xlarge": (4, 16.0, "x86_64", 0.1664),
    "t3.2xlarge": (8, 32.0, "x86_64", 0.3328),
    "t4g.medium": (2, 4.0, "arm64", 0.0336),
    "t4g.large": (2, 8.0, "arm64", 0.0672),
    "t4g.xlarge": (4, 16.0, "arm64", 0.1344),
    "m5.large": (2, 8.0, "x86_64", 0.096),
    "m5.xlarge": (4, 16.0, "x86_64", 0.192),
    "m5.2xlarge": (8, 32.0, "x86_64", 0.384),
    "m5.4xlarge": (16, 64.0, "x86_64", 0.768),
    "m5a.large": (2, 8.0, "x86_64", 0.086),
    "m5a.xlarge": (4, 16.0, "x86_64", 0.172),
    "m5a.2xlarge": (8, 32.0, "x86_64", 0.344),
    "m6i.large": (2, 8.0, "x86_64", 0.096),
    "m6i.xlarge": (4, 16.0, "x86_64", 0.192),
    "m6i.2xlarge": (8, 32.0, "x86_64", 0.384),
    "m6i.4xlarge": (16, 64.0, "x86_64", 0.768),
    "m6a.large": (2, 8.0, "x86_64", 0.0864),
    "m6a.xlarge": (4, 16.0, "x86_64", 0.1728),
    "m6a.2xlarge": (8, 32.0, "x86_64", 0.3456),
    "m7i.large": (2, 8.0, "x86_64", 0.1008),
    "m7i.xlarge": (4, 16.0, "x86_64", 0.2016),
    "m7i.2xlarge": (8, 32.0, "x86_64", 0.4032),
    "m6g.large": (2, 8.0, "arm64", 0.077),
    "m6g.xlarge": (4, 16.0, "arm64", 0.154),
    "m6g.2xlarge": (8, 32.0, "arm64", 0.308),
    "m7g.large": (2, 8.0, "arm64", 0.0816),
    "m7g.xlarge": (4, 16.0, "arm64", 0.1632),
    "m7g.2xlarge": (8, 32.0, "arm64", 0.3264),
    "c5.large": (2, 4.0, "x86_64", 0.085),
    "c5.xlarge": (4, 8.0, "x86_64", 0.17),
    "c5.2xlarge": (8, 16.0, "x86_64", 0.34),
    "c5.4xlarge": (16, 32.0, "x86_64", 0.68),
    "c5a.large": (2, 4.0, "x86_64", 0.077),
    "c5a.xlarge": (4, 8.0, "x86_64", 0.154),
    "c5a.2xlarge": (8, 16.0, "x86_64", 0.308),
    "c6i.large": (2, 4.0, "x86_64", 0.085),
    "c6i.xlarge": (4, 8.0, "x86_64", 0.17),
    "c6i.2xlarge": (8, 16.0, "x86_64", 0.34),
    "c6i.4xlarge": (16, 32.0, "x86_64", 0.68),
    "c6a.large": (2, 4.0, "x86_64", 0.0765),
    "c6a.xlarge": (4, 8.0, "x86_64", 0.153),
    "c6a.2xlarge": (8, 16.0, "x86_64", 0.306),
    "c7i.large": (2, 4.0, "x86_64", 0.08925),
    "c7i.xlarge": (4, 8.0, "x86_64", 0.1785),
    "c7i.2xlarge": (8, 16.0, "x86_64", 0.357),
    "c6g.large": (2, 4.0, "arm64", 0.068),
    "c6g.xlarge": (4, 8.0, "arm64", 0.136),
    "c6g.2xlarge": (8, 16.0, "arm64", 0.272),
    "c7g.large": (2, 4.0, "arm64", 0.0725),
    "c7g.xlarge": (4, 8.0, "arm64", 0.145),
    "c7g.2xlarge": (8, 16.0, "arm64", 0.29),
    "r5.large": (2, 16.0, "x86_64", 0.126),
    "r5.xlarge": (4, 32.0, "x86_64", 0.252),
    "r6i.large": (2, 16.0, "x86_64", 0.126),
    "r6i.xlarge": (4, 32.0, "x86_64", 0.252),
    "r6g.large": (2, 16.0, "arm64", 0.1008),
    "r6g.xlarge": (4, 32.0, "arm64", 0.2016),
}


def on_demand_price(instance_type, overrides=None):
    """Return ``(price, source)`` for an instance type; ``(None, None)`` when unknown.

    ``overrides`` (the modules' ``on_demand_prices`` option) wins over the table.
    """
    if overrides and instance_type in overrides:
        return float(overrides[instance_type]), "user"
    row = ON_DEMAND_TABLE.get(instance_type)
    if row is None:
        return None, None
    return row[3], "table"


def table_shape(instance_type):
    """Return ``{"vcpus", "memory_gib", "architecture"}`` from the table, or None."""
    row = ON_DEMAND_TABLE.get(instance_type)
    if row is None:
        return None
    return {"vcpus": row[0], "memory_gib": row[1], "architecture": row[2]}
