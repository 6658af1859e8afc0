"""CLUSTER NODES parsing for the node states a live test cannot easily hold still."""

from __future__ import annotations

from tqmon.topology import parse_cluster_nodes

# Lines as Redis 7 prints them: myself, a replica, a failed master, a pfail replica,
# a handshake node and a node without an address (both of the last share ":0").
CLUSTER_NODES = """\
aaaa 10.0.0.1:7000@17000,redis-a myself,master - 0 0 1 connected 0-5460
bbbb 10.0.0.2:7001@17001 slave aaaa 0 1700000000000 1 connected
cccc 10.0.0.3:7002@17002 master,fail - 1700000000000 1700000000000 2 disconnected
dddd 10.0.0.4:7003@17003 slave,fail? cccc 0 1700000000000 2 connected
eeee 10.0.0.9:7009@17009 handshake - 0 0 0 disconnected
ffff :0@0 master,noaddr - 1700000000000 1700000000000 3 disconnected 5461-10922
gggg :0@0 slave,noaddr ffff 1700000000000 1700000000000 3 disconnected
"""


def test_every_node_state_is_kept():
    nodes = parse_cluster_nodes(CLUSTER_NODES, tls=False)
    by_id = {n.cluster_node_id: n for n in nodes}
    assert len(nodes) == 7  # the two noaddr nodes are not merged
    assert (by_id["aaaa"].address, by_id["aaaa"].role) == ("10.0.0.1:7000", "master")
    assert (by_id["bbbb"].role, by_id["bbbb"].master_address) == ("replica", "10.0.0.1:7000")
    assert by_id["cccc"].role == "master" and "fail" in by_id["cccc"].flags
    assert by_id["dddd"].role == "replica" and "fail?" in by_id["dddd"].flags
    assert by_id["dddd"].master_address == "10.0.0.3:7002"
    assert by_id["eeee"].role == "unknown" and by_id["eeee"].address == "10.0.0.9:7009"
    assert by_id["ffff"].address == "noaddr:ffff" and by_id["ffff"].host == ""
    assert by_id["gggg"].address == "noaddr:gggg" and by_id["gggg"].master_address == ""


def test_ipv6_addresses_are_bracketed():
    (node,) = parse_cluster_nodes("abcd ::1:7000@17000 myself,master - 0 0 1 connected\n",
                                  tls=True)
    assert (node.host, node.port, node.address, node.tls) == ("::1", 7000, "[::1]:7000", True)
