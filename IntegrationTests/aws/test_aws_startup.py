"""Start-up of aws instances: region resolution and the errors that stop the daemon."""
import pytest

from awsmoto import aws_instance, clean_env
from broker import Broker


class FakeMoto:
    url = "http://127.0.0.1:9"


def start_failure(workdir, name, env, **settings):
    b = Broker(workdir / name, instances={"default": aws_instance(FakeMoto(), **settings)})
    b.start(wait=False, env=env)
    code = b.proc.wait(30)
    b.stop()
    return code, b.log_text()


def test_no_region_anywhere_is_a_start_up_error(workdir):
    code, log = start_failure(workdir, "noregion", clean_env(), region=None)
    assert code == 1
    line = log.strip().splitlines()[-1]
    assert line.startswith("keybrokerd: ") and "instances.default.region: no AWS region is configured" in line, log
    assert 'region = "us-east-1"' in line


def test_bad_region_from_the_environment_is_a_start_up_error(workdir):
    code, log = start_failure(workdir, "badregion", clean_env(AWS_REGION="Not A Region"), region=None)
    assert code == 1
    assert 'instances.default.region: region "Not A Region" from AWS_REGION is not a region name' in log


def test_bad_endpoint_from_the_environment_is_a_start_up_error(workdir):
    code, log = start_failure(workdir, "badendpoint", clean_env(AWS_ENDPOINT_URL_KMS="ftp://x"), endpoint_url=None)
    assert code == 1
    assert "instances.default.endpoint_url: ftp://x is not an http:// or https:// URL" in log


def test_region_from_aws_default_region_and_check_mode(workdir):
    b = Broker(workdir / "check", instances={"default": aws_instance(FakeMoto(), region=None)})
    b.start(wait=False, env=clean_env(AWS_DEFAULT_REGION="eu-north-1"), args=["--check"])
    assert b.proc.wait(30) == 0, b.log_text()
    b.stop()
    assert "configuration OK" in b.log_text()


def test_instance_without_master_key_serves_stored_keys_only(workdir):
    import kbproto
    b = Broker(workdir / "nomaster", instances={"default": aws_instance(FakeMoto(), master_key_id=None)})
    b.start(env=clean_env(AWS_ACCESS_KEY_ID="AKIAEXAMPLEEXAMPLE00", AWS_SECRET_ACCESS_KEY="x"))
    try:
        with kbproto.Client(b.socket) as c:
            c.hello()
            r = c.latest(1)
        assert r.status == kbproto.NOT_FOUND
        assert "no master_key_id" in b.log_text()
    finally:
        b.stop()
