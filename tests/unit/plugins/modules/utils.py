# Copyright: ParkingSpot contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Drive an Ansible module's ``main()`` in-process and return what it reported.

Works with ansible-core >= 2.19 (``patch_module_args``). Generic: any module of the collection.
"""

import contextlib
import io
import json

from ansible.module_utils.testing import patch_module_args


class ModuleExit(dict):
    """The module's JSON result plus ``exit_code`` (0 for exit_json, 1 for fail_json)."""

    @property
    def failed(self):
        return bool(self.get("failed"))


def run_module(main, args, check_mode=False, diff=False):
    """Run ``main`` with ``args`` (module options) and return a :class:`ModuleExit`."""
    args = dict(args)
    if check_mode:
        args["_ansible_check_mode"] = True
    if diff:
        args["_ansible_diff"] = True
    out = io.StringIO()
    code = None
    with patch_module_args(args), contextlib.redirect_stdout(out):
        try:
            main()
        except SystemExit as exc:
            code = exc.code
    if code is None:
        raise AssertionError("the module returned without calling exit_json or fail_json")
    text = out.getvalue()
    try:
        result = json.loads(text[text.index("{") :])
    except ValueError as exc:
        raise AssertionError(f"module printed no JSON result: {text!r}") from exc
    res = ModuleExit(result)
    res["exit_code"] = code
    return res
