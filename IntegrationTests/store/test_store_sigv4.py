"""SigV4 for S3: the store's requests signed by keybrokerd against botocore's S3 signer (fixed
clock and keys), including the ListObjectsV2 with a "/" in its prefix that moto 5.2 rejects
(getmoto/moto#5948): real S3 and botocore agree with us, so moto is patched in the fixture."""
import hashlib
import json
import subprocess

import pytest
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from broker import BIN_DIR

SIGV4_CHECK = BIN_DIR / "keybroker-sigv4-check"
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEY"
TOKEN = "IQoJb3JpZ2luX2VjEOr//////////wEaCXVzLWVhc3QtMSJHMEUCIQD+token/with+odd=chars"

CASES = [
    dict(operation="GetObject", bucket="keybroker-shared", key="kb/prod/aws-kms-key.1.1",
         endpoint="http://127.0.0.1:5000/", path_style=True, region="us-east-1", token=None, time=1440938160),
    dict(operation="GetObject", bucket="my-bucket", key="keys/prod.db-1/aws-kms-key.4294967295.7",
         endpoint="https://my-bucket.s3.eu-west-1.amazonaws.com/", path_style=False, region="eu-west-1", token=TOKEN, time=1700000000),
    dict(operation="PutObject", bucket="keybroker-shared", key="kb/prod/local-key.5.1", body="KBLK\u0001 wrapped bytes",
         endpoint="http://127.0.0.1:5000/", path_style=True, region="us-east-1", token=None, time=1440938160),
    dict(operation="PutObject", bucket="my.dotted.bucket", key="a_b-c.d/x/aws-kms-key.1.2", body="",
         endpoint="https://s3.us-west-2.amazonaws.com/", path_style=True, region="us-west-2", token=TOKEN, time=946684799),
    dict(operation="ListObjectsV2", bucket="keybroker-shared", prefix="kb/prod/", endpoint="http://127.0.0.1:5000/",
         path_style=True, region="us-east-1", token=None, time=1440938160),
    dict(operation="ListObjectsV2", bucket="keybroker-shared", prefix="kb/prod/aws-kms-key.12.",
         continuation_token="1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=+x", endpoint="https://keybroker-shared.s3.us-east-1.amazonaws.com/",
         path_style=False, region="us-east-1", token=TOKEN, time=1600000000),
]


@pytest.fixture(scope="module")
def signed():
    payload = [dict(case, service="s3", access_key="AKIDEXAMPLE", secret_key=SECRET, session_token=case["token"]) for case in CASES]
    r = subprocess.run([str(SIGV4_CHECK)], input=json.dumps(payload), capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


@pytest.mark.parametrize("index", range(len(CASES)))
def test_s3_signature_matches_botocore(signed, index):
    case, out = CASES[index], signed[index]
    headers = dict(out["headers"])
    authorization = headers.pop("Authorization")
    body = out["body"].encode()
    assert headers["x-amz-content-sha256"] == hashlib.sha256(body).hexdigest()
    assert ("X-Amz-Security-Token" in headers) == (case["token"] is not None)
    if case["operation"] == "PutObject":
        assert out["method"] == "PUT" and headers["If-None-Match"] == "*" and body == case["body"].encode()
    request = AWSRequest(method=out["method"], url=out["url"], data=body, headers=headers)
    request.context["timestamp"] = headers["X-Amz-Date"]
    auth = S3SigV4Auth(Credentials("AKIDEXAMPLE", SECRET, case["token"]), "s3", case["region"])
    canonical = auth.canonical_request(request)
    assert out["canonical_request"] == canonical
    string_to_sign = auth.string_to_sign(request, canonical)
    assert out["string_to_sign"] == string_to_sign
    expected = (f"AWS4-HMAC-SHA256 Credential={auth.scope(request)}, "
                f"SignedHeaders={auth.signed_headers(auth.headers_to_sign(request))}, Signature={auth.signature(string_to_sign, request)}")
    assert authorization == expected


def test_addressing(signed):
    urls = [out["url"] for out in signed]
    assert urls[0] == "http://127.0.0.1:5000/keybroker-shared/kb/prod/aws-kms-key.1.1"
    assert urls[1] == "https://my-bucket.s3.eu-west-1.amazonaws.com/keys/prod.db-1/aws-kms-key.4294967295.7"
    assert urls[4] == "http://127.0.0.1:5000/keybroker-shared?list-type=2&prefix=kb%2Fprod%2F"
