"""Part 4, the capacity model's own inputs: memory per idle connection, Redis messages/s per shard.

The other inputs of ``docs/capacity.md`` (CPU per delivery of a gateway and of
nginx, and how it holds as gateways are added) come from the ``fanout`` and
``topology`` parts. This part measures what they do not:

* **idle memory**: one real gateway (:func:`framecast.local.up.running`, no producer),
  ``idle`` connections opened straight to it by ``processes`` load-client
  processes, then ``nginx_idle`` more through nginx; the RSS growth of the
  gateway, and of nginx's processes, divided by the connections opened. The
  sandbox's hard open-files limit (20000) bounds ``idle``: the gateway needs one
  descriptor per connection, and each load-client process one per connection too.
* **Redis per shard**: one publisher pipelines ``PUBLISH`` of a bench result to
  the stack's valkey, with one subscriber that reads and discards (a gateway's
  part); valkey's CPU seconds per message give messages/s per valkey core (a
  shard is one single-threaded valkey). The publisher, in Python, usually limits
  the achieved rate before valkey does: both are reported.
"""

from __future__ import annotations

import socket
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis

from bench import machine
from bench.load import Load
from bench.payload import Payload
from bench.procs import BenchError, Children, child_env
from bench.topology import STREAM, _Publisher, _wait_subscribed
from framecast import wire

__all__ = ["CapacityOptions", "run"]


@dataclass(frozen=True, kw_only=True)
class CapacityOptions:
    """What the capacity part runs (see ``python -m bench --help``)."""

    idle: int = 10000
    nginx_idle: int = 2000
    processes: int = 2
    settle: float = 2.0
    redis_seconds: float = 3.0
    redis_batch: int = 200


def _rss(pids: list[int]) -> int:
    return machine.usage(pids).rss


def _idle(
    stack: Any, children: Children, options: CapacityOptions, say: Callable[[str], None]
) -> dict[str, Any]:
    gateway = stack.gateways[0]
    assert gateway.process is not None and gateway.port is not None
    nginx = stack.children["nginx"].process
    assert nginx is not None
    gateway_pids, nginx_pids = [gateway.process.pid], machine.tree(nginx.pid)
    publisher = _Publisher(stack.redis_url)
    try:
        publisher.heartbeat_for(0.6)
        out: dict[str, Any] = {}
        for name, url, count in (
            ("direct", f"ws://127.0.0.1:{gateway.port}/ws/{STREAM}", options.idle),
            ("nginx", stack.ws_url(STREAM), options.nginx_idle),
        ):
            if not count:
                continue
            say(f"capacity: {count} idle connections ({name})")
            before_gateway, before_nginx = _rss(gateway_pids), _rss(nginx_pids)
            load = Load(
                children, url=url, connections=count, processes=options.processes, connect_timeout=120
            )
            _wait_subscribed([gateway.port], count, timeout=120)
            # Heartbeats only: every connection has had its handshake, hello and a few status messages.
            publisher.heartbeat_for(options.settle)
            after_gateway, after_nginx = _rss(gateway_pids), _rss(nginx_pids)
            load.finish(stop=True)
            out[name] = {
                "connections": count,
                "gateway_rss_before": before_gateway,
                "gateway_rss_after": after_gateway,
                "gateway_bytes_per_connection": round((after_gateway - before_gateway) / count),
                "nginx_rss_before": before_nginx,
                "nginx_rss_after": after_nginx,
                "nginx_bytes_per_connection": round((after_nginx - before_nginx) / count),
            }
            publisher.heartbeat_for(options.settle)  # let the gateway see the closes before the next step
        return out
    finally:
        publisher.close()


def _drain(sock: socket.socket, stop: threading.Event) -> None:
    """A subscriber that reads and discards: what a prompt gateway asks of valkey."""
    sock.settimeout(0.2)
    while not stop.is_set():
        try:
            if not sock.recv(1 << 20):
                return
        except TimeoutError:
            continue
        except OSError:
            return


def _redis(stack: Any, options: CapacityOptions) -> dict[str, Any]:
    valkey = stack.children["valkey"].process
    assert valkey is not None
    url = urllib.parse.urlsplit(stack.redis_url)
    channel = wire.channel("capacity")
    subscriber = socket.create_connection((url.hostname or "127.0.0.1", url.port or 6379))
    name = channel.encode()
    subscriber.sendall(b"*2\r\n$9\r\nSUBSCRIBE\r\n$%d\r\n%s\r\n" % (len(name), name))
    stop = threading.Event()
    reader = threading.Thread(target=_drain, args=(subscriber, stop), daemon=True)
    reader.start()
    client = redis.Redis.from_url(stack.redis_url)
    payload = Payload(stream="capacity", epoch="capacity")
    try:
        for _ in range(100):  # bounded: the SUBSCRIBE is seen within a few round trips
            if any(int(count) >= 1 for _, count in client.pubsub_numsub(channel)):
                break
            time.sleep(0.05)
        else:
            raise BenchError("capacity: the subscriber never subscribed")
        message = payload.make(1, time.time(), time.time())
        before = machine.usage([valkey.pid])
        start = time.monotonic()
        sent = received = 0
        while time.monotonic() - start < options.redis_seconds:
            pipe = client.pipeline(transaction=False)
            for _ in range(options.redis_batch):
                pipe.publish(channel, message)
            received += sum(int(n) for n in pipe.execute())
            sent += options.redis_batch
        wall = time.monotonic() - start
        cpu = machine.usage([valkey.pid]).cpu - before.cpu
    finally:
        stop.set()
        client.close()
        subscriber.close()
        reader.join(timeout=2)
    return {
        "messages": sent,
        "receivers": received,
        "message_bytes": len(message),
        "seconds": round(wall, 3),
        "messages_per_s": round(sent / wall),
        "valkey_cpu_s": round(cpu, 3),
        "valkey_cpu_us_per_message": round(cpu / sent * 1e6, 3) if sent else None,
        "messages_per_valkey_core_s": round(sent / cpu) if cpu > 0 else None,
    }


def run(options: CapacityOptions, *, say: Callable[[str], None]) -> dict[str, Any]:
    """Run the capacity part; returns its figures (an ``error`` key where a step failed)."""
    from framecast.local.up import running

    machine.raise_fd_limit(options.idle + options.nginx_idle + 256)
    out: dict[str, Any] = {"options": {"idle": options.idle, "nginx_idle": options.nginx_idle}}
    env = child_env({"FRAMECAST_MAX_CONNECTIONS": str(options.idle + options.nginx_idle + 100)})
    try:
        with (
            running(gateways=1, port=0, producer=False, env=env, log_level="WARNING") as stack,
            Children() as children,
        ):
            out["idle"] = _idle(stack, children, options, say)
            say("capacity: Redis PUBLISH throughput, one subscriber")
            out["redis"] = _redis(stack, options)
    except (BenchError, OSError, RuntimeError) as exc:
        say(f"capacity: failed: {exc}")
        out["error"] = str(exc)
    for name, figures in out.get("idle", {}).items():
        say(
            f"  idle ({name}): gateway {figures['gateway_bytes_per_connection'] / 1024:.1f} KiB/connection, "
            f"nginx {figures['nginx_bytes_per_connection'] / 1024:.1f} KiB/connection"
        )
    if "redis" in out:
        figures = out["redis"]
        say(
            f"  redis: {figures['messages_per_s']}/s published, valkey "
            f"{figures['valkey_cpu_us_per_message']} µs/message"
        )
    return out
