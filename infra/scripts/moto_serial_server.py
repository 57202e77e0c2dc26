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
Here a successful transaction's token is remembered with a digest of its parameters for 10 minutes;
a repeat gets the same answer, a different body under the same token gets DynamoDB's
IdempotentParameterMismatchException.

moto has no AWS End User Messaging SMS and Voice v2 (pinpoint-sms-voice-v2). A STAND-IN for
its two sends (SendTextMessage for SMS, SendVoiceMessage for calls) answers them here, before
moto sees the request, in the service's wire protocol as the SDK speaks it: awsJson1_0, a POST
with `X-Amz-Target: PinpointSMSVoiceV2.<Operation>` and a JSON body, answered
`{"MessageId": ...}` or the service's error shape (`{"__type": "ThrottlingException", ...}`).
It delivers nothing and checks only what the service requires (a destination, an origination
identity, a body). For tests:
  GET  /_twofa/sms-voice/messages  every call answered so far: {"Messages": [{"Operation",
                                   "MessageId", "Request"}]}, oldest first
  POST /_twofa/sms-voice/fail      {"Error": "ThrottlingException" | "InternalServerException" |
                                   "ValidationException" | "AccessDeniedException" | ...,
                                   "Times": 1, "Status": 400, "Destination": "+1..."}: the next
                                   Times calls (to Destination, if given) answer that
  POST /_twofa/sms-voice/reset     forget the messages and any failure to come

moto has no AWS End User Messaging Social (socialmessaging) either. A STAND-IN for its
SendWhatsAppMessage answers here too, in that service's wire protocol as the SDK speaks it:
restJson1, `POST /v1/whatsapp/send` with a JSON body `{"originationPhoneNumberId",
"metaApiVersion", "message": <base64 of Meta's message JSON>}`, answered `{"messageId": ...}` or
an error (`x-amzn-ErrorType: ValidationException`, `{"message": ...}`, the service's status). It
delivers nothing; it checks the three fields and that the message is Meta JSON with a `to`.
  GET  /_twofa/social/messages     every message answered so far: {"Messages": [{"MessageId",
                                   "OriginationPhoneNumberId", "MetaApiVersion", "Message"
                                   (the decoded JSON)}]}, oldest first
  POST /_twofa/social/fail         {"Error": "ThrottledRequestException" | "ValidationException"
                                   | ..., "Times": 1, "To": "14155550100"}: as sms-voice/fail
  POST /_twofa/social/reset        forget the messages and any failure to come
Usage: python moto_serial_server.py HOST PORT
"""
import base64
import hashlib
import json
import sys
import threading
import time
import uuid
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


SMS_VOICE_TARGET = "PinpointSMSVoiceV2."
# What the stand-in has answered, and the failures it is told to answer next.
class StandIn:
    """What a stand-in was sent and the failures a test asked of it, with the test-facing paths
    `/_twofa/{name}/messages` (GET), `/_twofa/{name}/fail` (POST `{"Error", "Times", ...}`: the
    next matching calls fail) and `/_twofa/{name}/reset` (POST)."""

    def __init__(self, name, default_error):
        self.name, self.default_error = name, default_error
        self.messages, self.failures = [], []

    def take_failure(self, matches):
        """The first failure asked for that `matches` the call, counted down; None if none."""
        fail = next((f for f in self.failures if matches(f)), None)
        if fail is not None:
            fail["Times"] -= 1
            if fail["Times"] <= 0:
                self.failures.remove(fail)
        return fail

    def control(self, environ, body, start_response):
        """The test-facing paths; None for any other request."""
        path, method = environ.get("PATH_INFO", ""), environ.get("REQUEST_METHOD")
        prefix = f"/_twofa/{self.name}/"
        if path == prefix + "messages" and method == "GET":
            return json_answer(start_response, 200, {"Messages": self.messages})
        if path == prefix + "fail" and method == "POST":
            fail = json.loads(body or b"{}")
            fail.setdefault("Error", self.default_error)
            fail["Times"] = int(fail.get("Times", 1))
            self.failures.append(fail)
            return json_answer(start_response, 200, {})
        if path == prefix + "reset" and method == "POST":
            self.messages.clear()
            self.failures.clear()
            return json_answer(start_response, 200, {})
        return None


sms_voice = StandIn("sms-voice", "ThrottlingException")
# The status each error is answered with (the service's: throttling 400, its own fault 500).
SMS_VOICE_ERROR_STATUS = {
    "ThrottlingException": 400, "InternalServerException": 500, "ValidationException": 400,
    "AccessDeniedException": 400, "ConflictException": 400, "ResourceNotFoundException": 400,
    "ServiceQuotaExceededException": 400,
}
STATUS_TEXT = {200: "OK", 400: "Bad Request", 500: "Internal Server Error", 503: "Service Unavailable"}


def json_answer(start_response, status, body, headers=()):
    data = json.dumps(body).encode()
    start_response(f"{status} {STATUS_TEXT.get(status, 'Error')}", [
        ("Content-Type", "application/x-amz-json-1.0"), ("Content-Length", str(len(data))),
        ("x-amzn-RequestId", str(uuid.uuid4())), *headers])
    return [data]


def sms_voice_send(operation, body, start_response):
    try:
        request = json.loads(body or b"{}")
    except ValueError:
        return json_answer(start_response, 400, {"__type": "SerializationException", "message": "not JSON"})
    to = request.get("DestinationPhoneNumber")
    fail = sms_voice.take_failure(lambda f: f.get("Destination") in (None, to))
    if fail is not None:
        error = fail["Error"]
        answer = {"__type": error, "message": fail.get("Message", f"stand-in: {error}")}
        if fail.get("Reason"):
            answer["Reason"] = fail["Reason"]
        status = fail.get("Status") or SMS_VOICE_ERROR_STATUS.get(error, 400)
        return json_answer(start_response, status, answer, [("x-amzn-ErrorType", error)])
    required = {"SendTextMessage": ["DestinationPhoneNumber"],
                "SendVoiceMessage": ["DestinationPhoneNumber", "OriginationIdentity"]}.get(operation)
    if required is None:
        return json_answer(start_response, 400, {"__type": "UnknownOperationException",
                                                 "message": f"the stand-in does not answer {operation}"})
    missing = [field for field in required if not request.get(field)]
    if missing:
        return json_answer(start_response, 400, {"__type": "ValidationException", "Reason": "MISSING_PARAMETER",
                                                 "message": f"{missing[0]} is required"})
    message_id = str(uuid.uuid4())
    sms_voice.messages.append({"Operation": operation, "MessageId": message_id, "Request": request})
    return json_answer(start_response, 200, {"MessageId": message_id})


SOCIAL_SEND_PATH = "/v1/whatsapp/send"
social = StandIn("social", "ThrottledRequestException")
SOCIAL_ERROR_STATUS = {
    "ValidationException": 400, "InvalidParametersException": 400, "AccessDeniedException": 403,
    "ResourceNotFoundException": 404, "ThrottledRequestException": 429, "InternalServiceException": 500,
    "DependencyException": 502,
}


def rest_json_error(start_response, error, message, status=None):
    data = json.dumps({"message": message}).encode()
    status = status or SOCIAL_ERROR_STATUS.get(error, 400)
    start_response(f"{status} {STATUS_TEXT.get(status, 'Error')}", [
        ("Content-Type", "application/json"), ("Content-Length", str(len(data))),
        ("x-amzn-RequestId", str(uuid.uuid4())), ("x-amzn-ErrorType", error)])
    return [data]


def social_send(body, start_response):
    try:
        request = json.loads(body or b"{}")
        message = json.loads(base64.b64decode(request.get("message") or ""))
    except ValueError:
        return rest_json_error(start_response, "ValidationException", "message must be base64 of Meta's message JSON")
    for field in ("originationPhoneNumberId", "metaApiVersion"):
        if not request.get(field):
            return rest_json_error(start_response, "ValidationException", f"{field} is required")
    if message.get("messaging_product") != "whatsapp" or not message.get("to"):
        return rest_json_error(start_response, "InvalidParametersException", "not a WhatsApp message with a `to`")
    to = str(message["to"]).lstrip("+")
    fail = social.take_failure(lambda f: str(f.get("To", to)).lstrip("+") == to)
    if fail is not None:
        return rest_json_error(start_response, fail["Error"], fail.get("Message", f"stand-in: {fail['Error']}"),
                               fail.get("Status"))
    message_id = str(uuid.uuid4())
    social.messages.append({"MessageId": message_id, "OriginationPhoneNumberId": request["originationPhoneNumberId"],
                               "MetaApiVersion": request["metaApiVersion"], "Message": message})
    data = json.dumps({"messageId": message_id}).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(data))),
                              ("x-amzn-RequestId", str(uuid.uuid4()))])
    return [data]


def social_control(environ, body, start_response):
    """The Social stand-in's send and test-facing paths; None for any other request."""
    path, method = environ.get("PATH_INFO", ""), environ.get("REQUEST_METHOD")
    if path == SOCIAL_SEND_PATH and method == "POST":
        return social_send(body, start_response)
    return social.control(environ, body, start_response)


def serialized(environ, start_response):
    length = int(environ.get("CONTENT_LENGTH") or 0)
    body = environ["wsgi.input"].read(length) if length else b""
    environ["wsgi.input"] = BytesIO(body)
    with lock:
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        if target.startswith(SMS_VOICE_TARGET):
            return sms_voice_send(target[len(SMS_VOICE_TARGET):], body, start_response)
        control = sms_voice.control(environ, body, start_response)
        if control is None:
            control = social_control(environ, body, start_response)
        if control is not None:
            return control
        token = transaction_token(environ, body)
        if token is None:
            return list(app(environ, start_response))
        now = time.monotonic()
        for t in [t for t, seen in done_transactions.items() if now - seen[0] > TOKEN_WINDOW_S]:
            del done_transactions[t]
        # The parameters, not their bytes: the SDK writes maps (a key's attributes, expression
        # names and values) in no fixed order, so a repeat's JSON can differ byte for byte.
        digest = hashlib.sha256(json.dumps(json.loads(body), sort_keys=True).encode()).hexdigest()
        seen = done_transactions.get(token)
        if seen is not None:
            if seen[1] != digest:
                return json_answer(start_response, 400, {
                    "__type": "com.amazonaws.dynamodb.v20120810#IdempotentParameterMismatchException",
                    "message": "Request parameters do not match the original request with this token",
                })
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
