"""moto_server with signature checking on, and the AWS fixtures the aws tests share.

moto checks SigV4 signatures and IAM policies once INITIAL_NO_AUTH_ACTION_COUNT requests have
been served. The server starts with the count at 0 (everything checked); set-up switches checking
off through moto's /moto-api/reset-auth, creates the IAM user, its policy and access key and the
master keys, and switches it back on, so every request the broker makes is verified.
"""
import json
import os
import re
import signal
import socket
import subprocess
import time
import urllib.parse
import urllib.request

import boto3
import pytest
from botocore.config import Config

REGION = "us-east-1"

KMS_POLICY = {
    "Version": "2012-10-17",
    "Statement": [{
        "Effect": "Allow",
        "Action": ["kms:Decrypt", "kms:GenerateDataKeyWithoutPlaintext", "kms:DescribeKey", "kms:Encrypt",
                   "kms:ReEncrypt*"],
        "Resource": "*",
    }],
}


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Moto:
    def __init__(self, logdir, port=None):
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.logdir = logdir
        self.proc = None

    def start(self):
        env = dict(os.environ, INITIAL_NO_AUTH_ACTION_COUNT="0", MOTO_PORT=str(self.port))
        for k in list(env):
            if k.startswith("AWS_"):
                del env[k]
        self.log = open(os.path.join(self.logdir, f"moto-{self.port}.log"), "ab")
        self.proc = subprocess.Popen([*self.command(), "-H", "127.0.0.1", "-p", str(self.port)],
                                     stdout=self.log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                urllib.request.urlopen(self.url + "/moto-api/", timeout=1).read()
                return self
            except Exception:
                if self.proc.poll() is not None:
                    raise RuntimeError("moto_server exited")
                time.sleep(0.1)
        raise RuntimeError("moto_server did not start")

    def command(self):
        """What runs the server; the arguments of moto_server follow."""
        return ["moto_server"]

    def stop(self):
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.proc = None
        if hasattr(self, "log"):
            self.log.close()

    def set_auth(self, enforced):
        """Signature and policy checks on (count 0) or off (no limit)."""
        req = urllib.request.Request(self.url + "/moto-api/reset-auth", data=(b"0" if enforced else b"inf"), method="POST",
                                     headers={"Content-Type": "text/plain"})
        urllib.request.urlopen(req, timeout=5).read()

    def client(self, service, key_id="AKIAIOSFODNN7EXAMPLE", secret="wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEY", token=None):
        return boto3.client(service, region_name=REGION, endpoint_url=self.url, aws_access_key_id=key_id,
                            aws_secret_access_key=secret, aws_session_token=token,
                            config=Config(retries={"max_attempts": 1}))


def create_user(iam, name, policy_name, policy):
    """An IAM user with one inline policy and an access key: (access key id, secret)."""
    iam.create_user(UserName=name)
    iam.put_user_policy(UserName=name, PolicyName=policy_name, PolicyDocument=json.dumps(policy))
    key = iam.create_access_key(UserName=name)["AccessKey"]
    return key["AccessKeyId"], key["SecretAccessKey"]


def create_master_key(kms):
    """The master key the instances name as alias/keybroker: its key id."""
    key_id = kms.create_key(Description="keybroker master")["KeyMetadata"]["KeyId"]
    kms.create_alias(AliasName="alias/keybroker", TargetKeyId=key_id)
    return key_id


class AWSAccount:
    """What set-up created: a user with a least-privilege KMS policy and its key, master keys, a role."""

    def __init__(self, moto):
        self.moto = moto
        with unauthenticated(moto):
            iam = moto.client("iam")
            self.key_id, self.secret = create_user(iam, "keybroker", "kms", KMS_POLICY)
            # A second user that may assume the role (STS AssumeRole, GetSessionToken) but not use KMS.
            self.assumer_key_id, self.assumer_secret = create_user(iam, "assumer", "sts", {
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Action": ["sts:AssumeRole", "sts:GetSessionToken"], "Resource": "*"}]})
            trust = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"AWS": "*"},
                                                             "Action": ["sts:AssumeRole", "sts:AssumeRoleWithWebIdentity"]}]}
            role = iam.create_role(RoleName="keybroker-role", AssumeRolePolicyDocument=json.dumps(trust))["Role"]
            self.role_arn = role["Arn"]
            iam.put_role_policy(RoleName="keybroker-role", PolicyName="kms", PolicyDocument=json.dumps(KMS_POLICY))
            kms = moto.client("kms")
            self.master_key = create_master_key(kms)
            self.second_key = kms.create_key(Description="keybroker second master")["KeyMetadata"]["KeyId"]

    def kms(self):
        return self.moto.client("kms", self.key_id, self.secret)

    def env(self, **extra):
        """The daemon's environment with this user's access key (clean_env otherwise)."""
        return clean_env(AWS_ACCESS_KEY_ID=self.key_id, AWS_SECRET_ACCESS_KEY=self.secret, **extra)

    def assume_role(self, session="pytest"):
        sts = self.moto.client("sts", self.assumer_key_id, self.assumer_secret)
        return sts.assume_role(RoleArn=self.role_arn, RoleSessionName=session)["Credentials"]


def clean_env(**extra):
    """The daemon's environment: no AWS settings from the caller, no real metadata service."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_") and k != "CREDENTIALS_DIRECTORY"}
    env["AWS_EC2_METADATA_DISABLED"] = "true"
    env["HOME"] = "/nonexistent"
    env.update({k: str(v) for k, v in extra.items() if v is not None})
    return env


def aws_instance(moto, **settings):
    base = {"provider": "aws", "clients": [__import__("broker").me()], "master_key_id": "alias/keybroker",
            "region": REGION, "endpoint_url": moto.url, "sts_endpoint_url": moto.url,
            "request_timeout_ms": 2000, "max_retries": 2, "key_spec": "AES_256"}
    base.update(settings)
    return {k: v for k, v in base.items() if v is not None}


def seed(moto, value=7):
    req = urllib.request.Request(f"{moto.url}/moto-api/seed?a={value}", data=b"", method="POST",
                                 headers={"Content-Type": "text/plain"})
    urllib.request.urlopen(req, timeout=5).read()


def moto_fixture(seed_value=7, server=Moto, account=AWSAccount):
    """The test module's moto_server, started once for the module: `moto = moto_fixture(31)` at
    a module's top level. Seeded (`seed`) unless `seed_value` is None, so the account's ids repeat;
    `moto.account` is what `account(moto)` set up (AWSAccount here, s3store.StoreAccount there)."""
    @pytest.fixture(scope="module")
    def moto(workdir):
        m = server(str(workdir)).start()
        if seed_value is not None:
            seed(m, seed_value)
        m.account = account(m)
        yield m
        m.stop()
    return moto


def unauthenticated(moto):
    """Context manager: moto's checks off for admin calls the broker's user may not make."""
    import contextlib

    @contextlib.contextmanager
    def manager():
        moto.set_auth(False)
        try:
            yield
        finally:
            moto.set_auth(True)
    return manager()


class Responder:
    """A small threaded HTTP server on loopback; `handler(method, path, headers, body)` returns
    (status, headers, body) or None to pass the request on to `upstream`."""

    def __init__(self, handler, upstream=None):
        import http.server
        import threading
        outer = self
        self.handler = handler
        self.upstream = upstream
        self.requests = []

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # One write per response: headers and body in separate segments meet delayed ACKs (40 ms).
            wbufsize = 1 << 16

            def log_message(self, *args):
                pass

            def _serve(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                headers = {k: v for k, v in self.headers.items()}
                outer.requests.append((self.command, self.path, headers, body))
                answer = outer.handler(self.command, self.path, headers, body)
                if answer is None and outer.upstream:
                    answer = outer.forward(self.command, self.path, headers, body)
                status, out_headers, out_body = answer or (404, {}, b"not found")
                if isinstance(out_body, str):
                    out_body = out_body.encode()
                self.send_response(status)
                for k, v in out_headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(out_body)))
                self.end_headers()
                self.wfile.write(out_body)

            do_GET = do_PUT = do_POST = _serve

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def forward(self, method, path, headers, body):
        import http.client
        host, port = self.upstream.split("//")[1].split(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=10)
        conn.request(method, path, body=body, headers=headers)
        r = conn.getresponse()
        data = r.read()
        conn.close()
        return r.status, {k: v for k, v in r.getheaders() if k.lower() not in ("content-length", "transfer-encoding", "connection")}, data

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def mfa_sts_shim(moto, serial, code):
    """moto's GetSessionToken checks the caller's signature and policy but returns fixed example
    keys that its own auth layer then rejects. This shim forwards the call (so moto verifies it)
    and, when moto accepts it, swaps in real session credentials for the KMS role."""
    calls = []

    def handler(method, path, headers, body):
        form = urllib.parse.parse_qs(body.decode())
        if form.get("Action") != ["GetSessionToken"]:
            return None
        calls.append(form)
        status, out_headers, data = shim.forward(method, path, headers, body)
        if status != 200:
            return status, out_headers, data
        if form.get("SerialNumber") != [serial] or form.get("TokenCode") != [code]:
            return 403, {}, "<ErrorResponse><Error><Code>AccessDenied</Code><Message>MultiFactorAuthentication failed with invalid MFA one time pass code.</Message></Error></ErrorResponse>"
        c = moto.account.assume_role("mfa")
        creds = (f"<AccessKeyId>{c['AccessKeyId']}</AccessKeyId><SecretAccessKey>{c['SecretAccessKey']}</SecretAccessKey>"
                 f"<SessionToken>{c['SessionToken']}</SessionToken><Expiration>{c['Expiration'].strftime('%Y-%m-%dT%H:%M:%SZ')}</Expiration>")
        data = re.sub(rb"<Credentials>.*</Credentials>", b"<Credentials>" + creds.encode() + b"</Credentials>", data, flags=re.S)
        return 200, out_headers, data
    shim = Responder(handler, upstream=moto.url)
    shim.calls = calls
    return shim


def disabled_key_proxy(moto, key_id):
    """moto keeps using a disabled key; real KMS answers DisabledException. This proxy adds that
    answer for calls naming `key_id` once moto's own DescribeKey says the key is disabled."""
    def handler(method, path, headers, body):
        target = headers.get("X-Amz-Target", "")
        if target.endswith((".GenerateDataKeyWithoutPlaintext", ".Decrypt")):
            with unauthenticated(moto):
                state = moto.client("kms").describe_key(KeyId=key_id)["KeyMetadata"]["KeyState"]
            if state == "Disabled" and (key_id in body.decode() or target.endswith(".Decrypt")):
                return 400, {"Content-Type": "application/x-amz-json-1.1"}, json.dumps(
                    {"__type": "DisabledException", "message": f"arn:aws:kms:{REGION}:123456789012:key/{key_id} is disabled."})
        return None
    return Responder(handler, upstream=moto.url)
