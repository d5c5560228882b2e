# Copyright: ParkingSpot contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Keeper runs of one pool on one controller: one at a time, and the newest demand wins.

The ``ci_queue`` rulebook starts a keeper run for every event, and events of one pool come
every debounce window, so runs of a pool overlap whenever a run takes longer than the window.
Two runs that read the pool before either launched would each launch the difference
(different demand, so different client tokens: EC2 cannot fold them). So on one controller:

* **One run of a pool at a time.** A run holds the pool's lock (``flock`` on a file in
  ``run_lock.dir``) from its DescribeInstances until its launches and drain tags are made;
  the drains themselves, which may wait for minutes, run after it let go. A run that cannot
  take the lock within ``run_lock.timeout_seconds`` fails that pool before any call.
* **The newest demand wins.** A run whose ``demand`` carries ``counted_at`` offers it before
  it waits; once it holds the lock it plans with the newest demand offered so far, its own or
  a later run's. A run started for older counts therefore never sizes the pool below what a
  newer event asked for, and the runs that follow find the pool already sized.
* **Launches the API does not show yet still count.** DescribeInstances is eventually
  consistent: the next run may not see what the run before it launched a moment ago. Every
  launch is written to the pool's journal, and for ``GRACE_SECONDS`` an instance of the journal
  that the read did not return is planned as ``pending``.

The lock and the journal are files on the controller: they order runs of one machine only.
Runs on different machines (AWX job templates with concurrent jobs) are not ordered by them.
Check-mode runs write nothing and take no lock.
"""

from __future__ import annotations

import datetime
import errno
import fcntl
import hashlib
import json
import os
import time
from typing import Any
from typing import Dict
from typing import Iterable
from typing import List
from typing import Optional

from ansible_collections.parkingspot.ec2.plugins.module_utils._aws import ParkingSpotError
from ansible_collections.parkingspot.ec2.plugins.module_utils._input import InputError
from ansible_collections.parkingspot.ec2.plugins.module_utils._tags import TAG_MARKET
from ansible_collections.parkingspot.ec2.plugins.module_utils._tags import TAG_POOL
from ansible_collections.parkingspot.ec2.plugins.module_utils._time import format_time
from ansible_collections.parkingspot.ec2.plugins.module_utils._time import parse_time

DEFAULT_DIR = os.path.join("~", ".cache", "parkingspot", "keeper")
DEFAULT_TIMEOUT_SECONDS = 120
DEFAULT_REUSE_READ_SECONDS = 0
# How long a launched instance the read does not return is still planned as pending.
GRACE_SECONDS = 120
RUN_LOCK_ARGUMENT_SPEC = dict(
    type="dict",
    default={},
    options=dict(
        enabled=dict(type="bool", default=True),
        dir=dict(type="path"),
        timeout_seconds=dict(type="int", default=DEFAULT_TIMEOUT_SECONDS),
        reuse_read_seconds=dict(type="int", default=DEFAULT_REUSE_READ_SECONDS),
    ),
)


def _counted_at(demand: Optional[Dict[str, Any]]) -> Optional[datetime.datetime]:
    return parse_time((demand or {}).get("counted_at"))


class RunLocks:
    """The locks and journals of the pools of one module run (see the module doc string)."""

    def __init__(
        self, directory: str, timeout_seconds: int, scope: Iterable[Any], clock=time.time, reuse_read_seconds: int = 0
    ):
        self.dir = directory
        self.timeout = timeout_seconds
        self.reuse = reuse_read_seconds
        self.scope = json.dumps([s or "" for s in scope])
        self.clock = clock
        self.held: Dict[str, int] = {}

    # --- files

    def _path(self, name: str, suffix: str) -> str:
        digest = hashlib.sha256(json.dumps([self.scope, name]).encode("utf-8")).hexdigest()[:32]
        return os.path.join(self.dir, digest + suffix)

    def _open(self, path: str) -> int:
        try:
            return os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as e:
            raise ParkingSpotError(message="run_lock: cannot open %s: %s" % (path, e)) from e

    def _update(self, name: str, change) -> Dict[str, Any]:
        """Read the pool's state, let ``change`` edit it, write it back; under the pool's state lock."""
        fd = self._open(self._path(name, ".state"))
        try:
            return self._change(fd, name, change)
        except OSError as e:
            raise ParkingSpotError(message="run_lock: cannot update the state of pool %s: %s" % (name, e)) from e
        finally:
            os.close(fd)  # closing lets go of the lock

    @staticmethod
    def _change(fd: int, name: str, change) -> Dict[str, Any]:
        fcntl.flock(fd, fcntl.LOCK_EX)
        raw = b""
        while True:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            raw += chunk
        try:
            state = json.loads(raw.decode("utf-8")) if raw else {}
        except ValueError:
            state = {}  # a torn or foreign file: start again rather than fail the pool
        if not isinstance(state, dict):
            state = {}
        state["pool"] = name
        if change(state):
            data = json.dumps(state, sort_keys=True, default=str).encode("utf-8")
            os.lseek(fd, 0, os.SEEK_SET)
            os.ftruncate(fd, 0)
            os.write(fd, data)
        return state

    # --- the lock

    def take(self, name: str, timeout: Optional[float] = None) -> None:
        """Hold the pool's run lock; ``ParkingSpotError`` if another run keeps it past the timeout
        (``run_lock.timeout_seconds`` unless ``timeout`` is given)."""
        if name in self.held:
            return
        fd = self._open(self._path(name, ".lock"))
        timeout = self.timeout if timeout is None else timeout
        deadline = self.clock() + timeout
        pause = 0.01
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as e:
                if e.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                    os.close(fd)
                    raise
            if self.clock() >= deadline:
                os.close(fd)
                raise ParkingSpotError(
                    message=(
                        "run_lock: another keeper run of pool %s on this controller held its lock for more than"
                        " %d seconds (run_lock.timeout_seconds); nothing was done to the pool" % (name, timeout)
                    )
                )
            time.sleep(pause)
            pause = min(0.1, pause * 2)
        self.held[name] = fd

    def release(self, name: str) -> None:
        fd = self.held.pop(name, None)
        if fd is not None:
            os.close(fd)

    def release_all(self) -> None:
        for name in list(self.held):
            self.release(name)

    def enter(self, name: str, demand: Optional[Dict[str, Any]]) -> Optional[Dict[str, Any]]:
        """Start a run of the pool: offer ``demand``, hold the lock, and return the demand to plan
        with (``newest``). ``ParkingSpotError`` if the lock is not free in time."""
        self.offer(name, demand)
        self.take(name)
        return self.newest(name, demand)

    # --- the newest demand

    def offer(self, name: str, demand: Optional[Dict[str, Any]]) -> None:
        """Make ``demand`` the pool's newest if its ``counted_at`` is later than the one offered before."""
        mine = _counted_at(demand)
        if mine is None:
            return

        def change(state):
            offered = _counted_at(state.get("demand"))
            if offered is not None and offered >= mine:
                return False
            state["demand"] = dict(demand)
            return True

        self._update(name, change)

    def newest(self, name: str, demand: Optional[Dict[str, Any]]) -> Optional[Dict[str, Any]]:
        """The demand to plan with: a later one offered by another run, else ``demand`` itself."""
        mine = _counted_at(demand)
        if mine is None:
            return demand
        offered = self._update(name, lambda state: False).get("demand")
        when = _counted_at(offered)
        if when is None or when <= mine or not isinstance(offered, dict):
            return demand
        return offered

    # --- the journal

    def record(self, name: str, launched: List[Dict[str, Any]]) -> None:
        """Journal the instances this run launched, for the next runs' reads."""
        now = self.clock()
        entries = [
            {"at": now, "instance": instance}
            for instance in launched
            if isinstance(instance, dict) and instance.get("instance_id")
        ]

        def change(state):
            kept = [e for e in state.get("launched") or [] if now - float(e.get("at", 0)) < GRACE_SECONDS]
            state["launched"] = kept + entries
            return True

        self._update(name, change)

    def unseen(self, name: str, read_ids: Iterable[str]) -> List[Dict[str, Any]]:
        """Instances launched within ``GRACE_SECONDS`` that the read did not return, as ``pending``."""
        now = self.clock()
        seen = set(read_ids)
        missing = []
        for entry in self._update(name, lambda state: False).get("launched") or []:
            instance = entry.get("instance") or {}
            at = float(entry.get("at", 0))
            if now - at >= GRACE_SECONDS or instance.get("instance_id") in seen:
                continue
            missing += self.pending(name, [instance], at)
        return missing

    def pending(self, name: str, launched: List[Dict[str, Any]], at: Optional[float] = None) -> List[Dict[str, Any]]:
        """Launched instances as a read would show them just after the launch: ``pending``, with the pool's tags."""
        launched_at = datetime.datetime.fromtimestamp(self.clock() if at is None else at, datetime.timezone.utc)
        out = []
        for instance in launched:
            tags = dict(instance.get("tags") or {})
            tags.setdefault(TAG_POOL, name)
            if instance.get("market"):
                tags.setdefault(TAG_MARKET, instance["market"])
            out.append(
                dict(
                    instance,
                    state="pending",
                    launch_time=instance.get("launch_time") or format_time(launched_at),
                    tags=tags,
                )
            )
        return out

    # --- a recent read, reused (spot_pools)

    def view(self, name: str, max_age: Optional[float] = None):
        """``(read_at, instances)`` of the pool's last read if younger than ``max_age`` (default
        ``reuse_read_seconds``), else None. Only the holder of the pool's lock reads or writes it."""
        if not self.reuse or name not in self.held:
            return None
        try:
            with open(self._path(name, ".view"), encoding="utf-8") as handle:
                view = json.load(handle)
            read_at, instances = float(view["read_at"]), view["instances"]
        except (OSError, ValueError, KeyError, TypeError):
            return None
        max_age = self.reuse if max_age is None else max_age
        if not isinstance(instances, list) or not 0 <= self.clock() - read_at < max_age:
            return None
        return read_at, instances

    def begin_refresh(self, name: str) -> Optional[int]:
        """The pool's refresh guard, if no other run is reading the pool again now (else None).

        Held by the one run that reads a pool whose kept read is older than ``reuse_read_seconds``,
        after that run acted; let go with ``end_refresh`` (or when the run's process ends).
        """
        fd = self._open(self._path(name, ".refresh"))
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return None
        return fd

    @staticmethod
    def end_refresh(guard: int) -> None:
        os.close(guard)

    def keep_view(self, name: str, read_at: float, instances: List[Dict[str, Any]]) -> None:
        """Keep the instances a run planned with (and launched), read at ``read_at``, for the next runs."""
        if not self.reuse or name not in self.held:
            return
        path = self._path(name, ".view")
        try:
            fd = os.open(path + ".new", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump({"pool": name, "read_at": read_at, "instances": instances}, handle, default=str)
            os.replace(path + ".new", path)
        except OSError as e:
            raise ParkingSpotError(message="run_lock: cannot keep the read of pool %s: %s" % (name, e)) from e

    def forget_view(self, name: str) -> None:
        try:
            os.unlink(self._path(name, ".view"))
        except FileNotFoundError:
            pass
        except OSError as e:
            raise ParkingSpotError(message="run_lock: cannot forget the read of pool %s: %s" % (name, e)) from e


def default_dir() -> str:
    """``parkingspot/keeper`` under ``$XDG_CACHE_HOME``, else under ``~/.cache``."""
    cache = os.environ.get("XDG_CACHE_HOME")
    return os.path.join(cache, "parkingspot", "keeper") if cache else DEFAULT_DIR


def _seconds(options: Dict[str, Any], key: str, default: int) -> int:
    value = options.get(key)
    value = default if value is None else value
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InputError("run_lock." + key, "must be a whole number of seconds, 0 or more, got %r" % (value,))
    return value


def from_module(module, options: Optional[Dict[str, Any]] = None) -> Optional[RunLocks]:
    """The run's locks from the ``run_lock`` option, or None (check mode, ``enabled: false``).

    An explicit ``run_lock.dir`` that cannot be made or written fails naming the option; when the
    default directory cannot be made the run goes on without the lock, with a warning.
    """
    options = dict(options if options is not None else module.params.get("run_lock") or {})
    timeout = _seconds(options, "timeout_seconds", DEFAULT_TIMEOUT_SECONDS)
    reuse = _seconds(options, "reuse_read_seconds", DEFAULT_REUSE_READ_SECONDS)
    if module.check_mode or options.get("enabled") is False:
        return None
    given = options.get("dir")
    directory = os.path.expanduser(given or default_dir())
    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
        if not os.access(directory, os.W_OK | os.X_OK):
            raise OSError(errno.EACCES, "not writable")
    except OSError as e:
        if given:
            raise InputError("run_lock.dir", "cannot use %s for the keeper's locks: %s" % (directory, e)) from e
        module.warn(
            "run_lock: cannot use %s (%s); this run takes no lock, so an overlapping keeper run of the same pool"
            " may launch again what this one launches" % (directory, e)
        )
        return None
    params = module.params
    scope = (params.get("region") or getattr(module, "region", None), params.get("endpoint_url"), params.get("profile"))
    return RunLocks(directory, timeout, scope, reuse_read_seconds=reuse)
