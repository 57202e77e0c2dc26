"""Lambda init time: process start -> first poll of the Runtime API, with a fake Runtime API
(and a fake AWS endpoint that counts every call the function makes before that poll).

usage: init_time.py RUNS BINARY [BINARY...]   prints one line per binary:
  <binary> median_ms=<ms> p90_ms=<ms> calls=<network calls of the cold start: before that answer>
           answer_ms=<ms: process start -> the first invocation's answer (median)>
  The first poll is answered with an API Gateway (HTTP API) event, GET of a path no router
  has (a 404 for the HTTP functions, an error for the event functions, which expect others):
  answer_ms is the cold start a first caller sees, secret included wherever it is read.
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

state = {"first_poll": None, "calls": 0, "calls_at_answer": 0, "answer": None, "event": threading.Event()}

EVENT = (
    b'{"version":"2.0","routeKey":"$default","rawPath":"/2fa/nothing","rawQueryString":"",'
    b'"headers":{"host":"bench"},"requestContext":{"accountId":"1","apiId":"bench","domainName":"bench",'
    b'"domainPrefix":"bench","http":{"method":"GET","path":"/2fa/nothing","protocol":"HTTP/1.1",'
    b'"sourceIp":"127.0.0.1","userAgent":"bench"},"requestId":"r1","routeKey":"$default","stage":"$default",'
    b'"time":"03/Dec/2026:12:00:00 +0000","timeEpoch":1796299200000},"isBase64Encoded":false}'
)


class Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        if self.path.endswith("/runtime/invocation/next"):
            if state["first_poll"] is None:
                state["first_poll"] = time.perf_counter()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Lambda-Runtime-Aws-Request-Id", "r1")
                self.send_header("Lambda-Runtime-Deadline-Ms", str(int(time.time() * 1000) + 30000))
                self.send_header("Lambda-Runtime-Invoked-Function-Arn", "arn:aws:lambda:us-east-1:1:function:bench")
                self.send_header("Content-Length", str(len(EVENT)))
                self.end_headers()
                self.wfile.write(EVENT)
                return
            time.sleep(30)  # never answered: the process is ended first
            return
        self.send_response(404)
        self.end_headers()

    def do_POST(self):
        if "/runtime/invocation/" in self.path:  # the first invocation's answer (or error)
            if state["answer"] is None:
                state["answer"] = time.perf_counter()
                state["calls_at_answer"] = state["calls"]
                state["event"].set()
            self.send_response(202)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
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
    if sys.argv[1] == "--parts":
        server, env = serve()
        sys.stdout.write(subprocess.run([sys.argv[2]], env=env, capture_output=True, text=True, check=True).stdout)
        return
    for binary in sys.argv[2:]:
        times, calls, answers = [], [], []
        for _ in range(runs):
            state.update(first_poll=None, calls=0, calls_at_answer=0, answer=None)
            state["event"] = threading.Event()
            # A server of its own each run: the last process's next poll cannot be taken for
            # this one's first.
            server, env = serve()
            t0 = time.perf_counter()
            p = subprocess.Popen([binary], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            ok = state["event"].wait(float(os.environ.get("INIT_WAIT_S", "10")))
            p.kill()
            p.wait()
            server.shutdown()
            server.server_close()
            if not ok:
                sys.exit(f"{binary}: no answer to its first invocation within 10 s")
            times.append((state["first_poll"] - t0) * 1000)
            answers.append((state["answer"] - t0) * 1000)
            calls.append(state["calls_at_answer"])
        times.sort()
        print(
            f"{os.path.basename(binary)} median_ms={statistics.median(times):.2f} "
            f"p90_ms={times[int(len(times) * 0.9) - 1]:.2f} calls={max(calls)} "
            f"answer_ms={statistics.median(answers):.2f}"
        )


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        pass  # a process ended mid-answer (killed once it has answered): nothing to report


def serve():
    """A fake Runtime API and AWS endpoint on a new port, and the function's environment."""
    server = Server(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    addr = f"127.0.0.1:{server.server_address[1]}"
    return server, {
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

main()
