#!/usr/bin/env python3
"""moto's server, with every request but SQS serialised.

moto's stock server handles requests on threads, and its backends are not atomic: under concurrent
`UpdateItem` calls on one DynamoDB item, updates are lost (8 threads x 100 conditional `ADD`s on
one item counted 697 of 800 here), which breaks the very guarantees the pipeline's tests check —
a chunk counted once, an S3 conditional write. Real DynamoDB and S3 are atomic per item/object, so
the local stack serialises those requests to behave the same. SQS requests stay concurrent: a
long-polling `ReceiveMessage` must not stall everything else, and SQS gives at-least-once delivery
anyway, which the pipeline is built for.

Usage: moto_server.py -H 127.0.0.1 -p PORT
"""

import argparse
import os
import signal
import sys
import threading

from werkzeug.serving import run_simple
from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)

LOCK = threading.Lock()


def serialised(app):
    def handle(environ, start_response):
        if environ.get("HTTP_X_AMZ_TARGET", "").startswith("AmazonSQS."):
            return app(environ, start_response)
        with LOCK:
            # The response is produced inside the lock: a backend may do its work lazily.
            result = app(environ, start_response)
            try:
                body = b"".join(result)
            finally:
                if hasattr(result, "close"):
                    result.close()
        return [body]

    return handle


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-H", "--host", default="127.0.0.1")
    ap.add_argument("-p", "--port", type=int, required=True)
    args = ap.parse_args()
    os.environ.setdefault("MOTO_PORT", str(args.port))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    app = DomainDispatcherApplication(create_backend_app)
    run_simple(args.host, args.port, serialised(app), threaded=True,
               request_handler=MotoRequestHandler)


if __name__ == "__main__":
    main()
