"""ROTATE of every key when some keys fail (issue 10, broker side): the broker answers PARTIAL (7)
with each key's result, so the keys that were rotated are not reported as an error; an older
client reads PARTIAL as a failure with a message. Real keybrokerd; the failure is real too: the
next version's file name of one key is already taken on disk, so its write fails."""
import kbproto as kb
from broker import me


def test_rotate_all_reports_each_key(broker):
    with kb.Client(broker.socket) as c:
        assert c.hello("default", me()).status == kb.OK
        for k in (1, 2, 3):
            assert c.latest(k).status == kb.OK
        prefix = next(p.name.rsplit(".", 2)[0] for p in broker.instance_dir().iterdir() if p.name.endswith(".1.1"))
        (broker.instance_dir() / f"{prefix}.2.2").mkdir()  # key 2's version 2 cannot be written
        r = c.rotate(kb.ALL_KEYS)
        assert r.status == kb.PARTIAL, r
        rotated, failed = r.partial()
        assert dict(rotated) == {1: 2, 3: 2}
        assert failed == [(2, kb.UNAVAILABLE)]
        assert r.message.startswith("rotated 2 of 3 keys of instance \"default\"; key 2 failed: ")
        # The rotated keys are in use; key 2 stays at version 1.
        assert c.latest(1).key()[0] == 2 and c.latest(3).key()[0] == 2 and c.latest(2).key()[0] == 1
        # One key alone keeps its plain failure.
        r = c.rotate(2)
        assert r.status == kb.UNAVAILABLE and r.message

    out = broker.ctl("rotate", "--all")
    assert out.returncode != 0
    assert "key 1 now at version 3" in out.stdout and "key 2 not rotated: UNAVAILABLE" in out.stdout
    assert "PARTIAL: rotated 2 of 3 keys" in out.stderr
