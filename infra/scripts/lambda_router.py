"""The Lambda router: what moto's Step Functions executor calls for a Task's Lambda invoke.

moto runs a state machine's Lambda Task with a boto3 client whose endpoint is
http://localhost:$MOTO_PORT of the moto process's own environment (moto/stepfunctions/parser/
asl/utils/boto_client.py); moto.sh starts moto with MOTO_PORT set to this router's port. The
router then:

  POST /2015-03-31/functions/{name or ARN}/invocations
      goes to `cargo lambda watch` (make test) or `sam local start-lambda` (make local-aws): the
      real step Lambda binary, never a moto Lambda function. The ARN is cut to its function
      name (the binary's name, or the template's logical id for sam), and a function error,
      which cargo lambda answers 500 with {"errorType", "errorMessage"} (sam local already as
      AWS does), is answered as AWS Lambda does: 200 with `X-Amz-Function-Error: Unhandled`,
      so the state machine's Retry/Catch see the Lambda's errorType. No answer from cargo lambda is a 500 ServiceException
      (Lambda.ServiceException for the state machine).
  GET /_router/invocations
      every invoke so far (function, event, answer, status, error type, milliseconds), for the tests.
  POST /_router/faults {"otpSid": ..., "faults": [{"errorType": "Retryable"} |
                        {"awsError": "TooManyRequestsException", "status": 429}, ...]}
      the next invokes for that OTP are answered with these, in order, without calling the
      Lambda: a function error of that type, or a Lambda service error (for the tests of the
      state machine's Retry/Catch; recorded with "injected": true).
  POST / with X-Amz-Target PinpointSMSVoiceV2.SendVoiceMessage
      the voice provider's stand-in (no emulator has SMS Voice v2): recorded, answered with a
      MessageId. GET /_router/calls lists them.
  anything else
      is forwarded unchanged to moto.

Usage: python lambda_router.py HOST PORT MOTO_URL LAMBDA_URL
"""
import http.client
import json
import sys
import threading
import time
import urllib.parse
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

INVOKE_PREFIX = "/2015-03-31/functions/"
INVOKE_SUFFIX = "/invocations"
# A step Lambda has 10 s (template.yaml); the first invoke after a start may compile it.
LAMBDA_TIMEOUT_S = 600
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-connection"}

invocations = []
# otpSid -> faults still to answer, in order.
faults = {}
invocations_lock = threading.Lock()
# SMS Voice v2 SendVoiceMessage requests received (the stand-in of the voice provider).
calls = []


def function_name(raw: str) -> str:
    """`arn:aws:lambda:<region>:<account>:function:<name>[:<qualifier>]`, or a plain name."""
    name = urllib.parse.unquote(raw)
    if name.startswith("arn:"):
        parts = name.split(":")
        if len(parts) >= 7 and parts[5] == "function":
            return parts[6]
    return name


def forward(base: str, method: str, path: str, headers: dict, body: bytes, timeout: float):
    url = urllib.parse.urlsplit(base)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.getheaders(), resp.read()
    finally:
        conn.close()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    moto_url = ""
    lambda_url = ""

    def log_message(self, fmt, *args):
        sys.stderr.write("[router] " + (fmt % args) + "\n")

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _answer(self, status: int, headers, body: bytes, lambda_answer: bool = False):
        self.send_response(status)
        if lambda_answer:
            # AWS Lambda names every answer; moto reads it from a Lambda error's metadata.
            self.send_header("x-amzn-RequestId", str(uuid.uuid4()))
        for k, v in headers:
            if k.lower() not in HOP_BY_HOP and k.lower() != "content-length":
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _handle(self):
        path = urllib.parse.urlsplit(self.path).path
        body = self._body()
        if self.command == "POST" and path.startswith(INVOKE_PREFIX) and path.endswith(INVOKE_SUFFIX):
            return self._invoke(path[len(INVOKE_PREFIX) : -len(INVOKE_SUFFIX)], body)
        if self.command == "POST" and path == "/_router/faults":
            doc = json.loads(body)
            with invocations_lock:
                faults.setdefault(doc["otpSid"], []).extend(doc["faults"])
            return self._answer(204, [], b"")
        # SMS Voice v2 has no emulator: the step Lambda's calls come here (its
        # AWS_ENDPOINT_URL_PINPOINT_SMS_VOICE_V2), are recorded and answered as the service would.
        target = self.headers.get("X-Amz-Target", "")
        if self.command == "POST" and target == "PinpointSMSVoiceV2.SendVoiceMessage":
            message_id = str(uuid.uuid4())
            with invocations_lock:
                calls.append({"request": json.loads(body or b"{}"), "messageId": message_id})
            out = json.dumps({"MessageId": message_id}).encode()
            return self._answer(200, [("Content-Type", "application/x-amz-json-1.0")], out, lambda_answer=True)
        if self.command == "GET" and path == "/_router/calls":
            with invocations_lock:
                out = json.dumps(calls).encode()
            return self._answer(200, [("Content-Type", "application/json")], out)
        if self.command == "GET" and path == "/_router/invocations":
            with invocations_lock:
                out = json.dumps(invocations).encode()
            return self._answer(200, [("Content-Type", "application/json")], out)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
        try:
            status, resp_headers, resp_body = forward(self.moto_url, self.command, self.path, headers, body, 60)
        except OSError as e:
            return self._answer(502, [("Content-Type", "text/plain")], f"moto unreachable: {e}".encode())
        self._answer(status, resp_headers, resp_body)

    def _invoke(self, raw_name: str, payload: bytes):
        name = function_name(raw_name)
        started = time.monotonic()
        record = {"function": name, "payload": payload.decode("utf-8", "replace")}
        fault = _next_fault(payload)
        if fault is not None:
            return self._inject(record, fault)
        try:
            status, lambda_headers, body = forward(
                self.lambda_url,
                "POST",
                f"{INVOKE_PREFIX}{urllib.parse.quote(name, safe='')}{INVOKE_SUFFIX}",
                {"Content-Type": "application/json"},
                payload,
                LAMBDA_TIMEOUT_S,
            )
        except OSError as e:
            status, lambda_headers, body = None, [], str(e).encode()
        record["ms"] = round((time.monotonic() - started) * 1000)
        headers = [("Content-Type", "application/json"), ("X-Amz-Executed-Version", "$LATEST")]
        error_type = None
        # sam local start-lambda answers a function error as AWS Lambda does (200 + the header).
        function_error = any(k.lower() == "x-amz-function-error" for k, _ in lambda_headers)
        if status == 200 and function_error:
            error_type = _error_type(body) or "Unhandled"
            answer = (200, headers + [("X-Amz-Function-Error", "Unhandled")], body)
        elif status == 200:
            answer = (200, headers, body)
        elif status == 500 and _error_type(body):
            error_type = _error_type(body)
            answer = (200, headers + [("X-Amz-Function-Error", "Unhandled")], body)
        elif status == 404:
            error_type = "ResourceNotFoundException"
            answer = _aws_error(404, error_type, body)
        else:
            error_type = "ServiceException"
            answer = _aws_error(500, error_type, body)
        record.update(status=answer[0], errorType=error_type, answer=answer[2].decode("utf-8", "replace"))
        with invocations_lock:
            invocations.append(record)
        self.log_message("invoke %s -> %s %s (%d ms)", name, answer[0], error_type or "", record["ms"])
        self._answer(*answer, lambda_answer=True)

    def _inject(self, record: dict, fault: dict):
        headers = [("Content-Type", "application/json")]
        if "errorType" in fault:
            body = json.dumps({"errorType": fault["errorType"], "errorMessage": "injected by the router"}).encode()
            answer = (200, headers + [("X-Amz-Function-Error", "Unhandled")], body)
            error_type = fault["errorType"]
        else:
            error_type = fault["awsError"]
            answer = _aws_error(int(fault.get("status", 500)), error_type, b"injected by the router")
        record.update(status=answer[0], errorType=error_type, answer=answer[2].decode(), ms=0, injected=True)
        with invocations_lock:
            invocations.append(record)
        self.log_message("invoke %s -> injected %s", record["function"], error_type)
        self._answer(*answer, lambda_answer=True)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _handle


def _next_fault(payload: bytes):
    try:
        otp = json.loads(payload).get("otpSid")
    except (ValueError, AttributeError):
        return None
    with invocations_lock:
        queue = faults.get(otp)
        return queue.pop(0) if queue else None


def _error_type(body: bytes):
    try:
        doc = json.loads(body)
    except ValueError:
        return None
    return doc.get("errorType") if isinstance(doc, dict) else None


def _aws_error(status: int, code: str, detail: bytes):
    message = detail.decode("utf-8", "replace")[:500]
    body = json.dumps({"Type": "Service", "Message": message, "message": message}).encode()
    return status, [("Content-Type", "application/json"), ("x-amzn-ErrorType", code)], body


def main():
    host, port, moto_url, lambda_url = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    Handler.moto_url, Handler.lambda_url = moto_url, lambda_url
    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    sys.stderr.write(f"[router] on {host}:{port}: Lambda invokes -> {lambda_url}, the rest -> {moto_url}\n")
    server.serve_forever()


if __name__ == "__main__":
    main()
