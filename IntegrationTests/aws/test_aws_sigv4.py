"""SigV4: keybrokerd's signer against botocore's, on a table of KMS requests (fixed clock and keys)."""
import json
import subprocess

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from broker import BIN_DIR

SIGV4_CHECK = BIN_DIR / "keybroker-sigv4-check"

SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEY"
TOKEN = "IQoJb3JpZ2luX2VjEOr//////////wEaCXVzLWVhc3QtMSJHMEUCIQD+token/with+odd=chars"

CASES = [
    # (operation, members, endpoint, region, token, time)
    ("Decrypt", [["CiphertextBlob", "AQIDBAUGBwgJCgsMDQ4PEA=="]], "https://kms.us-east-1.amazonaws.com/", "us-east-1", None, 1440938160),
    ("Decrypt", [["CiphertextBlob", "AQIDBAUGBwgJCgsMDQ4PEA=="]], "https://kms.us-east-1.amazonaws.com/", "us-east-1", TOKEN, 1440938160),
    ("GenerateDataKeyWithoutPlaintext", [["KeyId", "alias/mariadb-encryption"], ["KeySpec", "AES_128"]],
     "https://kms.eu-central-1.amazonaws.com", "eu-central-1", None, 1700000000),
    ("GenerateDataKeyWithoutPlaintext", [["KeyId", "arn:aws:kms:us-west-2:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"],
                                         ["KeySpec", "AES_256"]], "https://kms-fips.us-west-2.amazonaws.com/", "us-west-2", TOKEN, 946684799),
    ("DescribeKey", [["KeyId", 'alias/odd "quoted" \\ back/slash ünïcödé 🔑 \t tab']], "http://127.0.0.1:4566/", "us-east-1", None, 1234567890),
    ("DescribeKey", [["KeyId", "alias/x"]], "http://localhost:8080/some/path", "my_odd.Region-9", TOKEN, 4102444800),
    ("DescribeKey", [["KeyId", "alias/x"]], "https://KMS.Example.COM:443/", "ÜberRegion ☃", None, 1600000000),
    ("ReEncrypt", [["CiphertextBlob", "AQID"], ["DestinationKeyId", "alias/second key with spaces  and   runs"]],
     "https://vpce-0123.kms.us-east-1.vpce.amazonaws.com:8443/", "us-east-1", "token with  double  spaces ", 1440938160),
    ("Decrypt", [], "https://kms.cn-north-1.amazonaws.com.cn/", "cn-north-1", None, 0),
]


def swift_sign(cases):
    payload = [{"operation": op, "members": members, "endpoint": endpoint, "region": region, "access_key": "AKIDEXAMPLE",
                "secret_key": SECRET, "session_token": token, "time": t}
               for op, members, endpoint, region, token, t in cases]
    r = subprocess.run([str(SIGV4_CHECK)], input=json.dumps(payload), capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


SIGNED = None


def signed():
    global SIGNED
    if SIGNED is None:
        SIGNED = swift_sign(CASES)
    return SIGNED


@pytest.mark.parametrize("index", range(len(CASES)))
def test_signature_matches_botocore(index):
    op, members, endpoint, region, token, _ = CASES[index]
    out = signed()[index]
    headers = dict(out["headers"])
    authorization = headers.pop("Authorization")
    assert headers["X-Amz-Target"] == f"TrentService.{op}"
    assert headers["Content-Type"] == "application/x-amz-json-1.1"
    assert ("X-Amz-Security-Token" in headers) == (token is not None)
    # The body is the JSON the client sends; it must decode to the members given.
    assert json.loads(out["body"]) == {k: v for k, v in members}

    request = AWSRequest(method="POST", url=out["url"], data=out["body"].encode(), headers=headers)
    request.context["timestamp"] = headers["X-Amz-Date"]
    auth = SigV4Auth(Credentials("AKIDEXAMPLE", SECRET, token), "kms", region)
    canonical = auth.canonical_request(request)
    assert out["canonical_request"] == canonical
    string_to_sign = auth.string_to_sign(request, canonical)
    assert out["string_to_sign"] == string_to_sign
    signature = auth.signature(string_to_sign, request)
    scope = auth.scope(request)
    expected = (f"AWS4-HMAC-SHA256 Credential={scope}, "
                f"SignedHeaders={auth.signed_headers(auth.headers_to_sign(request))}, Signature={signature}")
    assert authorization == expected


def test_date_is_the_fixed_clock():
    out = signed()[0]
    assert dict(out["headers"])["X-Amz-Date"] == "20150830T123600Z"
    assert dict(signed()[-1]["headers"])["X-Amz-Date"] == "19700101T000000Z"
