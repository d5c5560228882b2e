# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Built-in hook: post the notice as JSON to a webhook (Slack-compatible by default).

Run by webhook.sh with the watcher's PARKINGSPOT_* environment; standard library only
(Python 3.8 or later). Settings (environment):

  PS_URL          the webhook URL, or
  PS_URL_FILE     a file holding it (keep secret URLs such as Slack's out of the hook file:
                  point this at a root-only file or at a systemd credential)
  PS_TEMPLATE     JSON body template; "${name}" in any string is replaced (see FIELDS);
                  default: {"text": "${text}", ...every field}
  PS_HEADERS      JSON object of extra headers
  PS_HEADERS_FILE a file of "Name: value" lines (for tokens; kept out of the hook file)
  PS_PROXY        proxy URL (default: the https_proxy / http_proxy environment)
  PS_RETRIES      attempts (default 3)

URLs and header values are never logged. Exit 0 when the webhook answered 2xx.
"""

from __future__ import annotations

import json
import os
import string
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

FIELDS = (
    "instance_id",
    "instance_type",
    "zone",
    "region",
    "private_ip",
    "event",
    "events",
    "action",
    "phase",
    "lifecycle",
    "notice_time",
    "deadline",
    "seconds_left",
    "detected_time",
    "text",
)


def log(message):
    print(f"parkingspot-hook webhook: {message}", file=sys.stderr)


def fields(env):
    """The values a template can use, from the watcher's environment."""
    values = {
        "instance_id": env.get("PARKINGSPOT_INSTANCE_ID", ""),
        "instance_type": env.get("PARKINGSPOT_INSTANCE_TYPE", ""),
        "zone": env.get("PARKINGSPOT_AVAILABILITY_ZONE", ""),
        "region": env.get("PARKINGSPOT_REGION", ""),
        "private_ip": env.get("PARKINGSPOT_PRIVATE_IP", ""),
        "event": env.get("PARKINGSPOT_EVENT", ""),
        "events": env.get("PARKINGSPOT_EVENTS", ""),
        "action": env.get("PARKINGSPOT_ACTION", ""),
        "phase": env.get("PARKINGSPOT_PHASE", ""),
        "lifecycle": env.get("PARKINGSPOT_LIFECYCLE", ""),
        "notice_time": env.get("PARKINGSPOT_NOTICE_TIME", ""),
        "deadline": env.get("PARKINGSPOT_DEADLINE_TIME", ""),
        "seconds_left": env.get("PARKINGSPOT_SECONDS_LEFT", ""),
        "detected_time": env.get("PARKINGSPOT_DETECTED_TIME", ""),
    }
    where = " ".join(v for v in (values["instance_type"], values["zone"], values["private_ip"]) if v)
    if values["lifecycle"] in ("withdrawn", "completed"):
        text = "{instance_id} ({where}): {event} {action} notice {lifecycle}".format(where=where, **values)
    else:
        text = "{instance_id} ({where}): {event} notice, action {action}, deadline {deadline}".format(
            where=where, **values
        )
    values["text"] = text
    return values


def render(template, values):
    """The body: the template parsed as JSON, with ${name} replaced inside strings (so a value can
    never break the JSON)."""
    if not template:
        return dict(values)

    def fill(node):
        if isinstance(node, str):
            return string.Template(node).safe_substitute(values)
        if isinstance(node, list):
            return [fill(item) for item in node]
        if isinstance(node, dict):
            return {fill(key): fill(value) for key, value in node.items()}
        return node

    return fill(json.loads(template))


def read_secret_file(path):
    with open(path) as handle:
        return handle.read().strip()


def headers_from(env):
    headers = {"Content-Type": "application/json", "User-Agent": "parkingspot-webhook"}
    if env.get("PS_HEADERS"):
        extra = json.loads(env["PS_HEADERS"])
        if not isinstance(extra, dict):
            raise ValueError("PS_HEADERS must be a JSON object")
        headers.update({str(k): str(v) for k, v in extra.items()})
    if env.get("PS_HEADERS_FILE"):
        for line in read_secret_file(env["PS_HEADERS_FILE"]).splitlines():
            name, sep, value = line.partition(":")
            if sep and name.strip():
                headers[name.strip()] = value.strip()
    return headers


def opener_for(proxy):
    if proxy:
        return urllib.request.build_opener(urllib.request.ProxyHandler({"http": proxy, "https": proxy}))
    return urllib.request.build_opener()  # proxies from the environment, as urllib does by default


def main(env=None):
    env = dict(os.environ if env is None else env)
    try:
        url = env.get("PS_URL") or (read_secret_file(env["PS_URL_FILE"]) if env.get("PS_URL_FILE") else "")
        if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
            log("no http(s) webhook URL: set PS_URL or PS_URL_FILE")
            return 2
        body = json.dumps(render(env.get("PS_TEMPLATE", ""), fields(env))).encode()
        headers = headers_from(env)
    except (OSError, ValueError, KeyError) as exc:
        log(f"bad settings: {exc}")
        return 2
    host = urllib.parse.urlsplit(url).hostname
    opener = opener_for(env.get("PS_PROXY", ""))
    attempts = max(1, int(env.get("PS_RETRIES") or 3))
    timeout = max(1.0, min(10.0, float(env.get("PARKINGSPOT_HOOK_TIMEOUT") or 10) / attempts))
    for attempt in range(1, attempts + 1):
        request = urllib.request.Request(url, data=body, headers=headers, method="POST")
        try:
            with opener.open(request, timeout=timeout) as response:
                log(f"posted to {host}: HTTP {response.status}")
                return 0
        except urllib.error.HTTPError as exc:
            log(f"attempt {attempt}: {host} answered HTTP {exc.code}")
            if 400 <= exc.code < 500 and exc.code != 429:
                return 1
        except (OSError, ValueError) as exc:
            log(f"attempt {attempt}: {host} failed: {type(exc).__name__}")
        if attempt < attempts:
            time.sleep(min(2 ** (attempt - 1), 4))
    return 1


if __name__ == "__main__":
    sys.exit(main())
