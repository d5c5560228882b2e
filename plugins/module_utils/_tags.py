# Copyright: ParkingSpot contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""The tags through which ParkingSpot recognises and coordinates its capacity."""

TAG_REQUEST = "parkingspot:request"
TAG_POOL = "parkingspot:pool"
TAG_MARKET = "parkingspot:market"
TAG_STATE = "parkingspot:state"
TAG_DRAIN_DEADLINE = "parkingspot:drain-deadline"
TAG_EXPIRES_AT = "parkingspot:expires-at"
TAG_BUSY = "parkingspot:busy"
TAG_IDLE_SINCE = "parkingspot:idle-since"
TAG_INTERRUPTED = "parkingspot:interrupted"
TAG_REBALANCE = "parkingspot:rebalance"
TAG_LANE = "parkingspot:lane"
TAG_SUPERSEDED_BY = "parkingspot:superseded-by"
TAG_BLOCK = "parkingspot:block"
