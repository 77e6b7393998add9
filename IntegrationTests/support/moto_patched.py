"""moto_server with two fixes for moto 5.2 that the S3 store tests need; run it as
`python3 moto_patched.py -H 127.0.0.1 -p PORT` (the arguments of moto_server).

1. PutObject with `If-None-Match: *` checks for an existing object and then writes, without a
   lock, so two racing creates can both succeed. Real S3 makes the create atomic; so does this
   patch, by serialising PutObject.
2. With signature checking on, moto rebuilds the canonical request from the *decoded* query
   string, so a correctly signed ListObjectsV2 whose prefix contains "/" (sent as %2F, as SigV4
   requires) fails its check (getmoto/moto#5948). The patch hands moto's checker the query as it
   came on the wire.

The workaround lives here, in the test fixture, never in keybrokerd's signer: real S3 must keep
accepting what keybrokerd sends (botocore's signer agrees with ours, see test_store_sigv4.py).
"""
import sys
import threading

from moto.core import authorization
from moto.s3 import responses as s3_responses

_put_lock = threading.Lock()
_original_put_object = s3_responses.S3Response.put_object


def _atomic_put_object(self, *args, **kwargs):
    with _put_lock:
        return _original_put_object(self, *args, **kwargs)


s3_responses.S3Response.put_object = _atomic_put_object

_original_authenticate = authorization.ActionAuthenticatorMixin._authenticate_and_authorize_action


def _authenticate_with_raw_query(self, iam_request_cls, resource="*"):
    raw = None
    try:
        from flask import request as flask_request
        raw = flask_request.environ.get("RAW_URI") or flask_request.environ.get("REQUEST_URI")
        if raw is None:
            qs = flask_request.environ.get("QUERY_STRING", "")
            raw = flask_request.environ.get("PATH_INFO", "") + ("?" + qs if qs else "")
    except Exception:
        raw = None
    if raw is not None and "?" in raw and hasattr(self, "uri"):
        saved = self.uri
        self.uri = raw
        try:
            return _original_authenticate(self, iam_request_cls, resource)
        finally:
            self.uri = saved
    return _original_authenticate(self, iam_request_cls, resource)


authorization.ActionAuthenticatorMixin._authenticate_and_authorize_action = _authenticate_with_raw_query

if __name__ == "__main__":
    from moto.server import main
    sys.exit(main())
