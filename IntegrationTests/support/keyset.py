"""The key set the rewrap, export and import tests move between master keys, instances and
providers: keys 1, 2 and 3, key 2 rotated once, so four versions (IDS)."""
import kbproto

IDS = [(1, 1), (2, 1), (2, 2), (3, 1)]


def make_key_set(broker, instance="default"):
    """Creates IDS on `instance`: LATEST_KEY of 1, 2 and 3, then ROTATE 2."""
    with kbproto.Client(broker.socket) as c:
        assert c.hello(instance).status == kbproto.OK
        for key_id in (1, 2, 3):
            assert c.latest(key_id).status == kbproto.OK
        assert c.rotate(2).status == kbproto.OK


def keys_of(broker, instance="default", ids=IDS):
    """{(key id, version): key bytes} as `instance` serves them; every GET_KEY must answer OK."""
    with kbproto.Client(broker.socket) as c:
        assert c.hello(instance).status == kbproto.OK
        out = {}
        for key_id, version in ids:
            r = c.get(key_id, version)
            assert r.status == kbproto.OK, (instance, key_id, version, r)
            out[(key_id, version)] = r.key_bytes()
        return out
