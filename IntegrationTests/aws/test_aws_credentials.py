"""Every credential source of the chain, each proven by KMS calls that moto (auth enforced) accepted:
a new key is created (GenerateDataKeyWithoutPlaintext + Decrypt) with the credentials it yields."""
import json
import os
import stat
import urllib.parse
import urllib.request

import kbproto
from awsmoto import Responder, aws_instance, clean_env, moto_fixture
from broker import Broker


moto = moto_fixture(11)


COUNTER = {"n": 0}


def proves(workdir, moto, env, expect_source, settings=None):
    """Starts a broker with `env`, creates a key through moto, returns the broker's log."""
    COUNTER["n"] += 1
    b = Broker(workdir / f"cred{COUNTER['n']}", instances={"default": aws_instance(moto, **(settings or {}))})
    b.start(env=env)
    try:
        with kbproto.Client(b.socket) as c:
            c.hello()
            r = c.latest(1)
            assert r.status == kbproto.OK, (r, b.log_text())
        log = b.log_text()
        assert f"AWS credentials from {expect_source}" in log, log
        return log
    finally:
        b.stop()


def write_private(path, text):
    path.write_text(text)
    os.chmod(path, 0o600)
    return path


def test_environment(workdir, moto):
    a = moto.account
    proves(workdir, moto, a.env(), "environment")


def test_environment_with_session_token(workdir, moto):
    c = moto.account.assume_role()
    proves(workdir, moto, clean_env(AWS_ACCESS_KEY_ID=c["AccessKeyId"], AWS_SECRET_ACCESS_KEY=c["SecretAccessKey"],
                                    AWS_SESSION_TOKEN=c["SessionToken"]), "environment")


def test_systemd_credential_comes_right_after_the_environment(workdir, moto, tmp_path):
    a = moto.account
    creddir = tmp_path / "creds"
    creddir.mkdir()
    write_private(creddir / "aws-credentials", f"[default]\naws_access_key_id = {a.key_id}\naws_secret_access_key = {a.secret}\n")
    # A shared credentials file with wrong keys must lose to the systemd credential.
    shared = write_private(tmp_path / "shared", "[default]\naws_access_key_id = AKIAWRONGWRONGWRONG0\naws_secret_access_key = wrong\n")
    log = proves(workdir, moto, clean_env(CREDENTIALS_DIRECTORY=creddir, AWS_SHARED_CREDENTIALS_FILE=shared),
                 "profile default (systemd credential aws-credentials)")
    assert a.secret not in log


def test_systemd_credential_region_and_named_profile(workdir, moto, tmp_path):
    a = moto.account
    creddir = tmp_path / "creds"
    creddir.mkdir()
    write_private(creddir / "aws-credentials",
                  f"# from LoadCredential=\n[mariadb]\naws_access_key_id={a.key_id}\naws_secret_access_key={a.secret}\nregion = us-east-1\n")
    proves(workdir, moto, clean_env(CREDENTIALS_DIRECTORY=creddir), "profile mariadb (systemd credential aws-credentials)",
           settings={"profile": "mariadb", "region": None})


def test_shared_credentials_file_with_profile_setting_and_region_from_config(workdir, moto, tmp_path):
    a = moto.account
    shared = write_private(tmp_path / "credentials",
                           f"[default]\naws_access_key_id = AKIAWRONGWRONGWRONG0\naws_secret_access_key = wrong\n\n"
                           f"[keybroker]  \naws_access_key_id = {a.key_id}\naws_secret_access_key = {a.secret}   # inline comment\n")
    config = write_private(tmp_path / "config", "[profile keybroker]\nregion = us-east-1\ns3 =\n  max_concurrent_requests = 20\n")
    log = proves(workdir, moto, clean_env(AWS_SHARED_CREDENTIALS_FILE=shared, AWS_CONFIG_FILE=config),
                 "profile keybroker (shared files)", settings={"profile": "keybroker", "region": None})
    assert "AWS KMS in us-east-1" in log


# Each of the three variables alone (HOME points nowhere), as the SDKs, the CLI and MariaDB's guide
# for aws_key_management name them (issue 16 item 5).
def test_aws_shared_credentials_file_alone(workdir, moto, tmp_path):
    a = moto.account
    shared = write_private(tmp_path / "shared", f"[default]\naws_access_key_id = {a.key_id}\naws_secret_access_key = {a.secret}\n")
    proves(workdir, moto, clean_env(AWS_SHARED_CREDENTIALS_FILE=shared), "profile default (shared files)")


def test_aws_config_file_alone(workdir, moto, tmp_path):
    a = moto.account
    config = write_private(tmp_path / "config", f"[default]\nregion = us-east-1\naws_access_key_id = {a.key_id}\n"
                                                 f"aws_secret_access_key = {a.secret}\n")
    proves(workdir, moto, clean_env(AWS_CONFIG_FILE=config), "profile default (shared files)", settings={"region": None})


def test_aws_credential_profiles_file_alone(workdir, moto, tmp_path):
    a = moto.account
    legacy = write_private(tmp_path / "legacy", f"[default]\naws_access_key_id = {a.key_id}\naws_secret_access_key = {a.secret}\n")
    proves(workdir, moto, clean_env(AWS_CREDENTIAL_PROFILES_FILE=legacy), "profile default (shared files)")


def test_aws_shared_credentials_file_wins_over_the_older_name(workdir, moto, tmp_path):
    a = moto.account
    shared = write_private(tmp_path / "shared", f"[default]\naws_access_key_id = {a.key_id}\naws_secret_access_key = {a.secret}\n")
    wrong = write_private(tmp_path / "legacy", "[default]\naws_access_key_id = AKIAWRONGWRONGWRONG0\naws_secret_access_key = nope\n")
    proves(workdir, moto, clean_env(AWS_SHARED_CREDENTIALS_FILE=shared, AWS_CREDENTIAL_PROFILES_FILE=wrong), "profile default (shared files)")


def test_aws_credential_profiles_file_with_wrong_keys_is_refused_by_moto(workdir, moto, tmp_path):
    """The file really is what the broker signs with: moto (signature checks on) refuses other keys."""
    wrong = write_private(tmp_path / "legacy", "[default]\naws_access_key_id = AKIAWRONGWRONGWRONG0\naws_secret_access_key = nope\n")
    b = Broker(workdir / "cred-wrong-legacy", instances={"default": aws_instance(moto)})
    b.start(env=clean_env(AWS_CREDENTIAL_PROFILES_FILE=wrong))
    try:
        with kbproto.Client(b.socket) as c:
            c.hello()
            assert c.latest(1).status != kbproto.OK
        assert "AWS credentials from profile default (shared files)" in b.log_text()
    finally:
        b.stop()


def test_aws_profile_variable_and_home_directory(workdir, moto, tmp_path):
    a = moto.account
    home = tmp_path / "home"
    (home / ".aws").mkdir(parents=True)
    write_private(home / ".aws" / "credentials", f"[db]\naws_access_key_id = {a.key_id}\naws_secret_access_key = {a.secret}\n")
    env = clean_env(AWS_PROFILE="db")
    env["HOME"] = str(home)
    proves(workdir, moto, env, "profile db (shared files)")


def test_role_arn_with_source_profile_assumes_the_role(workdir, moto, tmp_path):
    a = moto.account
    shared = write_private(tmp_path / "credentials",
                           f"[base]\naws_access_key_id = {a.assumer_key_id}\naws_secret_access_key = {a.assumer_secret}\n")
    config = write_private(tmp_path / "config",
                           f"[profile kms]\nrole_arn = {a.role_arn}\nsource_profile = base\nrole_session_name = keybroker-test\n")
    proves(workdir, moto, clean_env(AWS_SHARED_CREDENTIALS_FILE=shared, AWS_CONFIG_FILE=config, AWS_PROFILE="kms"),
           f"profile kms (shared files), role {a.role_arn}")


def test_credential_process(workdir, moto, tmp_path):
    c = moto.account.assume_role()
    script = tmp_path / "creds.sh"
    doc = {"Version": 1, "AccessKeyId": c["AccessKeyId"], "SecretAccessKey": c["SecretAccessKey"],
           "SessionToken": c["SessionToken"], "Expiration": c["Expiration"].strftime("%Y-%m-%dT%H:%M:%SZ")}
    script.write_text("#!/bin/sh\ncat <<'EOF'\n" + json.dumps(doc, indent=2) + "\nEOF\n")
    script.chmod(0o700)
    config = write_private(tmp_path / "config", f"[default]\ncredential_process = {script} --flag\n")
    proves(workdir, moto, clean_env(AWS_CONFIG_FILE=config), "profile default (shared files), credential_process")


def test_credential_process_failure_is_reported(workdir, moto, tmp_path):
    config = write_private(tmp_path / "config", "[default]\ncredential_process = /bin/false\n")
    b = Broker(workdir / "credfail", instances={"default": aws_instance(moto)})
    b.start(env=clean_env(AWS_CONFIG_FILE=config))
    try:
        with kbproto.Client(b.socket) as c:
            c.hello()
            r = c.latest(1)
        assert r.status == kbproto.UNAVAILABLE
        assert r.message == 'credential_process "/bin/false" of profile default (shared files) exited with status 1'
    finally:
        b.stop()


def web_identity_sts_shim(moto, token):
    """moto cannot take an unsigned AssumeRoleWithWebIdentity while it checks signatures (it looks
    for an Authorization header). Real STS takes it unsigned; this shim checks the token, lets moto
    serve exactly that one call unauthenticated, and forwards everything else untouched."""
    seen = []

    def handler(method, path, headers, body):
        form = urllib.parse.parse_qs(body.decode())
        if form.get("Action") == ["AssumeRoleWithWebIdentity"]:
            seen.append(form)
            if form.get("WebIdentityToken") != [token] or "Authorization" in headers:
                return 400, {}, "<ErrorResponse><Error><Code>InvalidIdentityToken</Code><Message>bad token</Message></Error></ErrorResponse>"
            urllib.request.urlopen(urllib.request.Request(moto.url + "/moto-api/reset-auth", data=b"1", method="POST",
                                                          headers={"Content-Type": "text/plain"})).read()
        return None
    shim = Responder(handler, upstream=moto.url)
    shim.seen = seen
    return shim


def test_web_identity(workdir, moto, tmp_path):
    token = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQ6ZGI6bWFyaWFkYiJ9.c2lnbmF0dXJl"
    token_file = write_private(tmp_path / "token", token + "\n")
    shim = web_identity_sts_shim(moto, token)
    try:
        proves(workdir, moto, clean_env(AWS_WEB_IDENTITY_TOKEN_FILE=token_file, AWS_ROLE_ARN=moto.account.role_arn,
                                        AWS_ROLE_SESSION_NAME="mariadb-pod"),
               f"web identity, role {moto.account.role_arn}", settings={"sts_endpoint_url": shim.url})
        assert shim.seen and shim.seen[0]["RoleSessionName"] == ["mariadb-pod"]
    finally:
        shim.close()


def test_web_identity_through_aws_endpoint_url_sts(workdir, moto, tmp_path):
    token = "token-two"
    token_file = write_private(tmp_path / "token", token)
    shim = web_identity_sts_shim(moto, token)
    try:
        proves(workdir, moto, clean_env(AWS_WEB_IDENTITY_TOKEN_FILE=token_file, AWS_ROLE_ARN=moto.account.role_arn,
                                        AWS_ENDPOINT_URL_STS=shim.url),
               "web identity", settings={"sts_endpoint_url": None})
        assert shim.seen
    finally:
        shim.close()


def test_container_credentials_full_uri_with_token_file(workdir, moto, tmp_path):
    c = moto.account.assume_role()
    token = "container-auth-token-123"
    doc = json.dumps({"AccessKeyId": c["AccessKeyId"], "SecretAccessKey": c["SecretAccessKey"], "Token": c["SessionToken"],
                      "Expiration": c["Expiration"].strftime("%Y-%m-%dT%H:%M:%SZ")})

    def handler(method, path, headers, body):
        if path == "/v2/credentials/abc" and headers.get("Authorization") == token:
            return 200, {"Content-Type": "application/json"}, doc
        return 401, {}, "unauthorized"
    agent = Responder(handler)
    token_file = write_private(tmp_path / "token", token)
    try:
        proves(workdir, moto, clean_env(AWS_CONTAINER_CREDENTIALS_FULL_URI=agent.url + "/v2/credentials/abc",
                                        AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE=token_file), "container credentials")
        assert agent.requests[0][2]["Authorization"] == token
    finally:
        agent.close()


def test_container_credentials_full_uri_with_token_variable(workdir, moto):
    c = moto.account.assume_role()
    doc = json.dumps({"AccessKeyId": c["AccessKeyId"], "SecretAccessKey": c["SecretAccessKey"], "Token": c["SessionToken"],
                      "Expiration": c["Expiration"].strftime("%Y-%m-%dT%H:%M:%S.000Z")})
    agent = Responder(lambda m, p, h, b: (200, {}, doc) if h.get("Authorization") == "Bearer xyz" else (401, {}, "no"))
    try:
        proves(workdir, moto, clean_env(AWS_CONTAINER_CREDENTIALS_FULL_URI=agent.url + "/creds",
                                        AWS_CONTAINER_AUTHORIZATION_TOKEN="Bearer xyz"), "container credentials")
    finally:
        agent.close()


def imds(moto, role="keybroker-role", region="us-east-1"):
    """An EC2 instance metadata service that insists on IMDSv2 tokens."""
    c = moto.account.assume_role()
    doc = json.dumps({"Code": "Success", "Type": "AWS-HMAC", "AccessKeyId": c["AccessKeyId"], "SecretAccessKey": c["SecretAccessKey"],
                      "Token": c["SessionToken"], "Expiration": c["Expiration"].strftime("%Y-%m-%dT%H:%M:%SZ"),
                      "LastUpdated": "2024-01-01T00:00:00Z"})
    session = "imds-session-token"

    def handler(method, path, headers, body):
        if method == "PUT" and path == "/latest/api/token":
            if headers.get("X-aws-ec2-metadata-token-ttl-seconds") != "21600":
                return 400, {}, "missing ttl"
            return 200, {"X-aws-ec2-metadata-token-ttl-seconds": "21600"}, session
        if headers.get("X-aws-ec2-metadata-token") != session:
            return 401, {}, "IMDSv2 token required"
        if path == "/latest/meta-data/iam/security-credentials/":
            return 200, {}, role + "\n"
        if path == f"/latest/meta-data/iam/security-credentials/{role}":
            return 200, {"Content-Type": "text/plain"}, doc
        if path == "/latest/meta-data/placement/region":
            return 200, {}, region
        return 404, {}, "not found"
    return Responder(handler)


def test_ec2_instance_metadata_imdsv2_with_region(workdir, moto):
    service = imds(moto)
    try:
        env = clean_env(AWS_EC2_METADATA_SERVICE_ENDPOINT=service.url)
        del env["AWS_EC2_METADATA_DISABLED"]
        log = proves(workdir, moto, env, "EC2 instance metadata, role keybroker-role", settings={"region": None})
        assert "AWS KMS in us-east-1" in log
        assert all(h.get("X-aws-ec2-metadata-token") == "imds-session-token" for m, p, h, _ in service.requests if m == "GET")
    finally:
        service.close()


def test_environment_wins_over_later_sources(workdir, moto, tmp_path):
    a = moto.account
    config = write_private(tmp_path / "config", "[default]\ncredential_process = /bin/false\n")
    proves(workdir, moto, clean_env(AWS_ACCESS_KEY_ID=a.key_id, AWS_SECRET_ACCESS_KEY=a.secret, AWS_CONFIG_FILE=config), "environment")


def test_no_credentials_at_all_is_reported(workdir, moto):
    b = Broker(workdir / "nocreds", instances={"default": aws_instance(moto)})
    b.start(env=clean_env())
    try:
        with kbproto.Client(b.socket) as c:
            c.hello()
            r = c.latest(1)
        assert r.status == kbproto.REFUSED
        assert r.message.startswith("no AWS credentials found: tried AWS_ACCESS_KEY_ID")
    finally:
        b.stop()


def test_named_profile_that_does_not_exist_is_reported(workdir, moto, tmp_path):
    shared = write_private(tmp_path / "credentials", "[other]\naws_access_key_id = A\naws_secret_access_key = B\n")
    b = Broker(workdir / "noprofile", instances={"default": aws_instance(moto, profile="missing")})
    b.start(env=clean_env(AWS_SHARED_CREDENTIALS_FILE=shared))
    try:
        with kbproto.Client(b.socket) as c:
            c.hello()
            r = c.latest(1)
        assert r.status == kbproto.REFUSED
        assert 'AWS profile "missing" is named' in r.message and str(shared) in r.message
    finally:
        b.stop()
