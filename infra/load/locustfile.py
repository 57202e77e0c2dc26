"""Send + verify pairs against a twofa deployment (Locust; run by infra/scripts/load.sh).

Each simulated user loops: POST /2fa/send to one of the account's test numbers, then
POST /2fa/verify of that requestID with the number's fixed code (a test number receives nothing
and verifies with its fixed code, so the code is known without reading any message). With
TWOFA_LOAD_WRONG_PERCENT, that share of pairs first tries a wrong code (answered 474), as users
mistype, then the right one.

Why test numbers and a service per user (README, "Load (make load)"):
- test numbers are exempt from the default limit (one send a minute per destination, 453), the
  pumping guard and geo permissions, and cost no SMS;
- only one OTP per account, service and destination is current: users sharing a number with one
  service would supersede each other's OTPs (473 at verify), so each user sends as a service of
  its own (`{prefix}-{worker}-{user}`).

Configuration (environment, set by load.sh): TWOFA_LOAD_SID, TWOFA_LOAD_TOKEN,
TWOFA_LOAD_NUMBERS (comma-separated `to:code`, or `to` with TWOFA_LOAD_CODE),
TWOFA_LOAD_SERVICE (prefix), TWOFA_LOAD_FROM, TWOFA_LOAD_WRONG_PERCENT, TWOFA_LOAD_PROCESSES,
TWOFA_LOAD_REPORT (a JSON copy of the report).

The report (printed when Locust quits, also as JSON): pairs verified and pairs per second (over
the run, and over the seconds after every user was started), send and verify p50/p99 (Locust's
histogram: whole milliseconds below 100 ms, two significant digits above), and every answer
counted by operation, HTTP status and the API's `code`.
"""

import base64
import itertools
import json
import os
import random
import sys
import time
from collections import Counter

from locust import FastHttpUser, constant, events, task
from locust.runners import WorkerRunner


def _numbers():
    default_code = os.environ.get("TWOFA_LOAD_CODE", "")
    out = []
    for item in os.environ.get("TWOFA_LOAD_NUMBERS", "").split(","):
        item = item.strip()
        if not item:
            continue
        to, _, code = item.partition(":")
        code = code or default_code
        if not code.isdigit():
            sys.exit(f"load: test number {to} has no code (give to:code, or TWOFA_LOAD_CODE)")
        out.append((to, code))
    return out


NUMBERS = _numbers()
SID = os.environ.get("TWOFA_LOAD_SID", "")
TOKEN = os.environ.get("TWOFA_LOAD_TOKEN", "")
SERVICE = os.environ.get("TWOFA_LOAD_SERVICE", "load")
FROM = os.environ.get("TWOFA_LOAD_FROM", "Twofa")
WRONG_PERCENT = float(os.environ.get("TWOFA_LOAD_WRONG_PERCENT", "0"))
PROCESSES = max(1, int(os.environ.get("TWOFA_LOAD_PROCESSES", "1") or 1))
REPORT = os.environ.get("TWOFA_LOAD_REPORT", "")
AUTH = "Basic " + base64.b64encode(f"{SID}:{TOKEN}".encode()).decode()

# This process's tallies; a worker hands them to the master with each stats report and starts
# again from zero (report_to_master below), so the master's sums are the run's.
answers = Counter()  # "op status code" -> count
wrong_tried = 0
pairs_by_second = Counter()  # whole epoch second -> pairs verified in it
_user_ids = itertools.count()

# Master or single process only: when the run started, when every user was running, ended.
clock = {"start": None, "full": None, "stop": None, "users": 0}


def _api_code(resp):
    """The API's `code` from a JSON answer; None when there is none (a gateway's own 429/5xx)."""
    try:
        body = json.loads(resp.text or "")
    except (ValueError, TypeError):
        return None
    return body.get("code") if isinstance(body, dict) else None


class PairUser(FastHttpUser):
    # Closed loop: a user starts its next pair as soon as the last one is answered.
    wait_time = constant(float(os.environ.get("TWOFA_LOAD_WAIT", "0")))

    def on_start(self):
        if not NUMBERS:
            raise RuntimeError("no test numbers (TWOFA_LOAD_NUMBERS)")
        runner = self.environment.runner
        worker = getattr(runner, "worker_index", 0) if isinstance(runner, WorkerRunner) else 0
        n = next(_user_ids)
        # Users spread over the numbers round-robin across processes, so the first 20 users
        # each have a destination of their own.
        self.to, self.code = NUMBERS[(n * PROCESSES + worker) % len(NUMBERS)]
        self.service = f"{SERVICE}-{worker}-{n}"
        self.headers = {"Authorization": AUTH}

    def _post(self, op, path, body):
        """POST and tally the answer; returns (ok, body)."""
        with self.client.post(path, json=body, headers=self.headers, name=op, catch_response=True) as r:
            code = _api_code(r)
            answers[f"{op} {r.status_code} {code if code is not None else '-'}"] += 1
            if r.status_code == 200 and code == 200:
                r.success()
                return True, r
            r.failure(f"HTTP {r.status_code} code {code}")
            return False, r

    @task
    def pair(self):
        global wrong_tried
        ok, r = self._post(
            "send",
            "/2fa/send",
            {"service": self.service, "from": FROM, "to": self.to, "body": "Your code is {code}"},
        )
        if not ok:
            return
        sid = json.loads(r.text)["requestID"]
        if WRONG_PERCENT and random.random() * 100 < WRONG_PERCENT:
            # A code of another length is simply wrong (api.md), and never the right one.
            wrong_tried += 1
            self._post("verify", "/2fa/verify", {"service": self.service, "requestId": sid, "code": self.code + "0"})
        ok, _ = self._post("verify", "/2fa/verify", {"service": self.service, "requestId": sid, "code": self.code})
        if ok:
            pairs_by_second[int(time.time())] += 1


@events.report_to_master.add_listener
def _to_master(client_id, data):
    global wrong_tried
    data["twofa"] = {"answers": dict(answers), "wrong": wrong_tried, "pairs": dict(pairs_by_second)}
    answers.clear()
    pairs_by_second.clear()
    wrong_tried = 0


@events.worker_report.add_listener
def _from_worker(client_id, data):
    global wrong_tried
    part = data.get("twofa")
    if not part:
        return
    answers.update(part["answers"])
    wrong_tried += part["wrong"]
    # Message keys may arrive as strings.
    pairs_by_second.update({int(k): v for k, v in part["pairs"].items()})


@events.test_start.add_listener
def _started(environment, **_):
    clock["start"] = time.time()


@events.spawning_complete.add_listener
def _full(user_count, **_):
    if clock["full"] is None:
        clock["full"] = time.time()
        clock["users"] = user_count


@events.test_stop.add_listener
def _stopped(environment, **_):
    clock["stop"] = time.time()


def build_report(environment):
    start, stop = clock["start"], clock["stop"] or time.time()
    run_s = max(stop - start, 1e-9) if start else 0.0
    pairs = sum(pairs_by_second.values())
    # At full users: whole seconds after the last user started, the partial last second left out.
    steady = None
    if clock["full"] and stop - clock["full"] >= 3:
        first, last = int(clock["full"]) + 1, int(stop) - 1
        if last > first:
            n = sum(v for s, v in pairs_by_second.items() if first <= s < last)
            steady = {"seconds": last - first, "pairs": n, "pairsPerSecond": round(n / (last - first), 1)}
    latency = {}
    for op in ("send", "verify"):
        e = environment.stats.get(op, "POST")
        latency[op] = {
            "requests": e.num_requests,
            "p50Ms": e.get_response_time_percentile(0.5) if e.num_requests else None,
            "p99Ms": e.get_response_time_percentile(0.99) if e.num_requests else None,
        }
    rows = []
    for key, count in sorted(answers.items()):
        op, status, code = key.split(" ")
        rows.append({"op": op, "status": int(status), "code": None if code == "-" else int(code), "count": count})
    return {
        "host": environment.host,
        "users": clock["users"],
        "testNumbers": len(NUMBERS),
        "runSeconds": round(run_s, 1),
        "pairsVerified": pairs,
        "pairsPerSecond": round(pairs / run_s, 1) if run_s else 0.0,
        "atFullUsers": steady,
        "latency": latency,
        "answers": rows,
        "wrongCodesTried": wrong_tried,
    }


def print_report(rep):
    out = [
        "",
        f"twofa load report: {rep['host']}, {rep['users']} users over {rep['testNumbers']} test numbers, {rep['runSeconds']} s",
        f"  pairs verified: {rep['pairsVerified']} ({rep['pairsPerSecond']}/s over the run"
        + (
            f"; {rep['atFullUsers']['pairsPerSecond']}/s at full users, {rep['atFullUsers']['seconds']} s)"
            if rep["atFullUsers"]
            else ")"
        ),
    ]
    for op in ("send", "verify"):
        lat = rep["latency"][op]
        out.append(f"  {op:<7} {lat['requests']:>8} requests   p50 {lat['p50Ms']} ms   p99 {lat['p99Ms']} ms")
    out.append("  answers (operation, HTTP status, API code: count):")
    for row in rep["answers"]:
        code = row["code"] if row["code"] is not None else "-"
        out.append(f"    {row['op']:<7} {row['status']:>3}  {code!s:>4}: {row['count']}")
    if rep["wrongCodesTried"]:
        out.append(f"  wrong codes tried on purpose: {rep['wrongCodesTried']} (each should answer 401, code 474)")
    print("\n".join(out), flush=True)


_final = {}


@events.quitting.add_listener
def _quitting(environment, **_):
    if isinstance(environment.runner, WorkerRunner):
        return
    rep = _final["report"] = build_report(environment)
    if REPORT:
        with open(REPORT, "w") as f:
            json.dump(rep, f, indent=2)
    # Locust's own rule (any failure exits 1) would fail a run on a single expected 474 or
    # gateway 429: the run fails only when no pair was verified; the report tells the rest.
    environment.process_exit_code = 0 if rep["pairsVerified"] else 1


@events.quit.add_listener
def _quit(exit_code, **_):
    # After Locust's own tables, so the report is the last thing on the screen.
    if "report" in _final:
        print_report(_final["report"])
