# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Make the watcher fixtures available to the tests in this directory."""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

# The fixtures live in watcher_harness (a uniquely named module, so tests can import its helpers
# without depending on which "conftest" module Python already loaded); importing them here is
# what registers them with pytest.
# pylint: disable=unused-import
from watcher_harness import imds  # noqa: E402, F401
from watcher_harness import python  # noqa: E402, F401
from watcher_harness import watcher_factory  # noqa: E402, F401
