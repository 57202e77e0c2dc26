"""moto's server with one request at a time.

moto's TransactWriteItems takes no lock, and a canceled transaction restores a copy of the
table taken when it started, wiping out concurrent writes. DynamoDB itself serialises
conflicting transactions; serialising requests here restores that guarantee, so the
concurrency tests (N sends against max M admit exactly M) test our code, not moto's races.
Usage: python moto_serial_server.py HOST PORT
"""
import sys
import threading

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import run_simple

app = DomainDispatcherApplication(create_backend_app)
lock = threading.Lock()


def serialized(environ, start_response):
    with lock:
        return list(app(environ, start_response))


if __name__ == "__main__":
    run_simple(sys.argv[1], int(sys.argv[2]), serialized, threaded=True)
