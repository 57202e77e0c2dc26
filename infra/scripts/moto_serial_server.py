"""moto's server with one request at a time, and DynamoDB's transaction tokens honoured.

moto's TransactWriteItems takes no lock, and a canceled transaction restores a copy of the
table taken when it started, wiping out concurrent writes. DynamoDB itself serialises
conflicting transactions; serialising requests here restores that guarantee, so the
concurrency tests (N sends against max M admit exactly M) test our code, not moto's races.

moto also ignores TransactWriteItems' ClientRequestToken. DynamoDB answers a repeat of a
transaction that succeeded, with the same token and parameters within 10 minutes, as done
again without writing anything; the SDK relies on that when it retries an attempt that timed
out (on a loaded machine moto can take longer than an attempt's timeout) but had in fact been
applied. Without it such a retry fails its own conditions and a test sees a spurious conflict.
Here a successful transaction's token is remembered with a digest of its body for 10 minutes;
a repeat gets the same answer, a different body under the same token gets DynamoDB's
IdempotentParameterMismatchException.
Usage: python moto_serial_server.py HOST PORT
"""
import hashlib
import json
import sys
import threading
import time
from io import BytesIO

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import run_simple

app = DomainDispatcherApplication(create_backend_app)
lock = threading.Lock()

TOKEN_WINDOW_S = 600
# token -> (time, body digest, status, headers, body) of a transaction that succeeded
done_transactions = {}


def transaction_token(environ, body):
    if not environ.get("HTTP_X_AMZ_TARGET", "").endswith(".TransactWriteItems"):
        return None
    try:
        return json.loads(body).get("ClientRequestToken")
    except ValueError:
        return None


def serialized(environ, start_response):
    length = int(environ.get("CONTENT_LENGTH") or 0)
    body = environ["wsgi.input"].read(length) if length else b""
    environ["wsgi.input"] = BytesIO(body)
    with lock:
        token = transaction_token(environ, body)
        if token is None:
            return list(app(environ, start_response))
        now = time.monotonic()
        for t in [t for t, seen in done_transactions.items() if now - seen[0] > TOKEN_WINDOW_S]:
            del done_transactions[t]
        digest = hashlib.sha256(body).hexdigest()
        seen = done_transactions.get(token)
        if seen is not None:
            if seen[1] != digest:
                answer = json.dumps({
                    "__type": "com.amazonaws.dynamodb.v20120810#IdempotentParameterMismatchException",
                    "message": "Request parameters do not match the original request with this token",
                }).encode()
                start_response("400 Bad Request", [
                    ("Content-Type", "application/x-amz-json-1.0"), ("Content-Length", str(len(answer)))])
                return [answer]
            start_response(seen[2], seen[3])
            return [seen[4]]
        answered = {}

        def recording_start_response(status, headers, exc_info=None):
            answered["status"], answered["headers"] = status, headers
            return start_response(status, headers, exc_info)

        chunks = list(app(environ, recording_start_response))
        if answered.get("status", "").startswith("200"):
            done_transactions[token] = (now, digest, answered["status"], answered["headers"], b"".join(chunks))
        return chunks


if __name__ == "__main__":
    run_simple(sys.argv[1], int(sys.argv[2]), serialized, threaded=True)
