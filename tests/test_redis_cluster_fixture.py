"""The local Redis Cluster test infrastructure itself works: shape, routing, failover."""

from __future__ import annotations

from collections import Counter

import pytest
import redis
from redis.cluster import RedisCluster as ClusterClient

from tests.redis_cluster import SLOTS, RedisCluster

pytestmark = pytest.mark.real


def test_cluster_has_three_masters_each_with_one_synced_replica(
    redis_cluster: RedisCluster,
) -> None:
    masters, replicas = redis_cluster.masters(), redis_cluster.replicas()
    assert len(masters) == 3 and len(replicas) == 3
    assert all(n.port != 6379 for n in redis_cluster.nodes)
    followed = Counter(int(r.info("replication")["master_port"]) for r in replicas)
    assert followed == Counter(m.port for m in masters)
    assert all(r.info("replication")["master_link_status"] == "up" for r in replicas)
    assert redis_cluster.startup_seconds is not None
    print(f"cluster start-up: {redis_cluster.startup_seconds:.2f}s")


def test_every_node_agrees_on_a_slot_map_covering_all_slots(
    redis_cluster: RedisCluster,
) -> None:
    maps = {redis_cluster.slot_map(n) for n in redis_cluster.nodes}
    assert len(maps) == 1
    (slot_map,) = maps
    expected_first = 0
    for first, last, _ in slot_map:  # contiguous, no gap, no overlap
        assert first == expected_first
        expected_first = last + 1
    assert expected_first == SLOTS
    assert {port for *_, port in slot_map} == {m.port for m in redis_cluster.masters()}
    for node in redis_cluster.nodes:
        assert "cluster_state:ok" in node.command("CLUSTER", "INFO")


def test_url_reaches_the_cluster_and_master_of_locates_keys(redis_cluster: RedisCluster) -> None:
    client = ClusterClient.from_url(redis_cluster.url)
    try:
        for i in range(20):
            client.set(f"fixture:{i}", str(i))
        for i in range(20):
            key = f"fixture:{i}"
            owner = redis_cluster.master_of(client.keyslot(key))
            with owner.client() as direct:  # a plain client: no redirection
                assert direct.get(key) == str(i).encode()
    finally:
        client.close()


def test_killed_master_is_replaced_by_its_replica_which_takes_writes(
    own_redis_cluster: RedisCluster,
) -> None:
    cluster = own_redis_cluster
    client = ClusterClient.from_url(cluster.url)
    try:
        slot = client.keyslot("before")
        old = cluster.master_of(slot)
        client.set("before", "1")
        with old.client() as direct:
            assert direct.execute_command("WAIT", 1, 5000) == 1
        replica_ports = {
            r.port
            for r in cluster.replicas()
            if int(r.info("replication")["master_port"]) == old.port
        }

        cluster.kill(old)
        cluster.wait_failover(old)

        new = cluster.master_of(slot)
        assert new.port in replica_ports
        assert new in cluster.masters() and old not in cluster.masters()
        with new.client() as direct:
            assert direct.get("before") == b"1"
            assert direct.set("before", "2")  # a plain client: the promoted node itself
            assert direct.get("before") == b"2"
        with pytest.raises(redis.ConnectionError):
            old.client().ping()

        cluster.restart(old)  # comes back as a replica of the promoted node
        cluster.wait_ready()
        assert old in cluster.replicas()
        assert int(old.info("replication")["master_port"]) == new.port
    finally:
        client.close()
