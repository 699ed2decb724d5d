#!/usr/bin/env python3
"""A hostile agent, written from mapper.proto alone: sends mapper-server what a
broken or malicious agent could, and prints what the server answered as one
JSON object per case. Driven by tests/hostile.rs, which asserts on it.

usage: hostile.py STUBS_DIR ADDRESS CASE
"""

import json
import sys
import time

stubs, address, case = sys.argv[1], sys.argv[2], sys.argv[3]
sys.path.insert(0, stubs)

import grpc  # noqa: E402
from mapper.v1 import mapper_pb2 as pb  # noqa: E402
from mapper.v1 import mapper_pb2_grpc as rpc  # noqa: E402

REPORT = "/mapper.v1.Ingest/Report"
CLIENT_UID = "11111111-0000-0000-0000-000000000003"  # transaction-service in the seed fixture
NOW = int(time.time() * 1000) - 600_000  # before the server loaded its cluster state

channel = grpc.insecure_channel(
    address,
    options=[("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)],
)
ingest = rpc.IngestStub(channel)
raw_report = channel.unary_unary(REPORT, request_serializer=lambda b: b, response_deserializer=lambda b: b)
sequence = [0]


def flow(**kw):
    f = dict(
        direction=pb.DIRECTION_CONNECT,
        protocol=pb.PROTOCOL_TCP,
        src_ip=bytes([10, 244, 1, 2]),
        dst_ip=bytes([203, 0, 113, 9]),
        dst_port=443,
        count=1,
        pod_uid=CLIENT_UID,
        first_seen_ms=NOW,
        last_seen_ms=NOW,
    )
    f.update(kw)
    return pb.Flow(**f)


def report(flows=(), dns=(), **kw):
    sequence[0] += 1
    req = dict(node="node-1", boot_id="hostile", sequence=sequence[0], flows=list(flows), dns=list(dns))
    req.update(kw)
    return call(lambda: ingest.Report(pb.ReportRequest(**req), timeout=60))


def call(f):
    try:
        r = f()
        return {"code": "OK", "message": "", "applied": getattr(r, "flows_applied", None)}
    except grpc.RpcError as e:
        return {"code": e.code().name, "message": e.details()}


out = {}
if case == "timestamps":
    out["year_10000"] = report([flow(), flow(last_seen_ms=253_402_300_800_000)])
    out["negative"] = report([flow(first_seen_ms=-1)])
    out["int64_max"] = report([flow(last_seen_ms=2**63 - 1)])
    out["dns_ts"] = report([], [pb.DnsAnswer(query="a.example.com", ts_ms=-5)])
    out["valid"] = report([flow()])
elif case == "strings":
    out["pod_uid"] = report([flow(pod_uid="u" * 10_000)])
    out["comm"] = report([flow(comm="c" * 65)])
    out["node"] = report([flow()], node="n" * 254)
    out["dns_name"] = report([], [pb.DnsAnswer(query="q" * 254, ts_ms=NOW)])
elif case == "big":
    # 64 MiB of empty flows (field 4, length 0): 33 million of them.
    body = b"\x0a\x06node-1\x12\x07hostile\x18\x01" + b"\x22\x00" * (32 * 1024 * 1024)
    out["minimal_flows_64mib"] = call(lambda: raw_report(body, timeout=120))
    # Over the size limit: refused from the length prefix, before it is read.
    body = b"\x0a\x06node-1\x12\x07hostile\x18\x01" + b"\x22\x00" * (40 * 1024 * 1024)
    out["over_limit_80mib"] = call(lambda: raw_report(body, timeout=120))
elif case == "garbage":
    out["garbage"] = call(lambda: raw_report(b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff", timeout=10))
    out["truncated"] = call(lambda: raw_report(b"\x22\x7f\x01\x02", timeout=10))
    out["then_valid"] = report([flow()])
elif case == "dns_flood":
    # 200 batches of 50 answers for one address, every name new and of the longest valid length.
    for b in range(200):
        answers = []
        for i in range(50):
            name = (f"n{b:03d}-{i:02d}." + "x" * 240)[:240] + ".example.com"
            answers.append(
                pb.DnsAnswer(
                    query=name[:253],
                    answers=[pb.DnsAddress(name=name[:253], ip=bytes([203, 0, 113, 9]), ttl=300)],
                    client_ip=bytes([10, 244, 1, 2]),
                    ts_ms=NOW,
                )
            )
        r = report([flow()], answers)
        if r["code"] != "OK":
            out["flood_refused"] = r
            break
    out["too_long_name"] = report(
        [], [pb.DnsAnswer(query="ok.example.com", answers=[pb.DnsAddress(name="x" * 300, ip=bytes([203, 0, 113, 9]))], ts_ms=NOW)]
    )
    edges = rpc.QueryStub(channel).ListEdges(pb.ListEdgesRequest(include_unresolved=True), timeout=60).edges
    names = [list(e.server.external.dns_names) for e in edges if e.server.WhichOneof("peer") == "external"]
    out["external_edges"] = len(names)
    out["dns_names"] = max((len(n) for n in names), default=0)
    out["longest_name"] = max((len(x) for n in names for x in n), default=0)
else:
    sys.exit(f"unknown case {case}")
print(json.dumps(out))
