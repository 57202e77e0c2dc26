"""Lambda init time: process start -> first poll of the Runtime API, with a fake Runtime API
(and a fake AWS endpoint that counts every call the function makes before that poll).

usage: init_time.py RUNS BINARY [BINARY...]   prints one line per binary:
  <binary> median_ms=<ms> p90_ms=<ms> calls=<network calls before the first poll>
       init_time.py --parts BINARY   runs BINARY (init-parts) once in the same environment and
  prints what it prints
"""
import http.server
import os
import statistics
import subprocess
import sys
import threading
import time

state = {"first_poll": None, "calls": 0, "event": threading.Event()}


class Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        if self.path.endswith("/runtime/invocation/next"):
            if state["first_poll"] is None:
                state["first_poll"] = time.perf_counter()
                state["event"].set()
            time.sleep(30)  # never answered: the process is ended first
            return
        self.send_response(404)
        self.end_headers()

    def do_POST(self):
        # Any AWS call (AWS_ENDPOINT_URL points here): Secrets Manager's GetSecretValue.
        state["calls"] += 1
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        body = b'{"ARN":"arn:aws:secretsmanager:us-east-1:1:secret:twofa","Name":"twofa","SecretString":"' + b"k" * 64 + b'"}'
        self.send_response(200)
        self.send_header("Content-Type", "application/x-amz-json-1.1")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def main():
    runs = 0 if sys.argv[1] == "--parts" else int(sys.argv[1])
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    addr = f"127.0.0.1:{server.server_address[1]}"
    env = {
        "PATH": os.environ.get("PATH", ""),
        "AWS_LAMBDA_RUNTIME_API": addr,
        "AWS_LAMBDA_FUNCTION_NAME": "bench",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "256",
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_LOG_STREAM_NAME": "bench",
        "AWS_LAMBDA_LOG_GROUP_NAME": "bench",
        "AWS_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_ENDPOINT_URL": f"http://{addr}",
        "TWOFA_TABLE": "twofa",
        "TWOFA_SECRET_ARN": "arn:aws:secretsmanager:us-east-1:1:secret:twofa",
        # The callbacks worker's queues (named, never called before the first poll).
        "TWOFA_CALLBACK_RETRY_QUEUE_URL": f"http://{addr}/1/twofa-callback-retry",
        "TWOFA_CALLBACK_DEAD_LETTER_QUEUE_URL": f"http://{addr}/1/twofa-callback-dead-letters",
        "RUST_LOG": "info",
    }
    if sys.argv[1] == "--parts":
        sys.stdout.write(subprocess.run([sys.argv[2]], env=env, capture_output=True, text=True, check=True).stdout)
        return
    for binary in sys.argv[2:]:
        times, calls = [], []
        for _ in range(runs):
            state.update(first_poll=None, calls=0)
            state["event"] = threading.Event()
            t0 = time.perf_counter()
            p = subprocess.Popen([binary], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            ok = state["event"].wait(float(os.environ.get("INIT_WAIT_S", "10")))
            p.kill()
            p.wait()
            if not ok:
                sys.exit(f"{binary}: no Runtime API poll within 10 s")
            times.append((state["first_poll"] - t0) * 1000)
            calls.append(state["calls"])
        times.sort()
        print(
            f"{os.path.basename(binary)} median_ms={statistics.median(times):.2f} "
            f"p90_ms={times[int(len(times) * 0.9) - 1]:.2f} calls={max(calls)}"
        )


main()
