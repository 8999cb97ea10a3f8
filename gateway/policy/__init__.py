"""The fan-out policy, sans I/O: a package of small sub-machines behind one façade, :class:`Policy`.

=================  ==============================================================
``facade``         :class:`Policy`: events in, writes and actions out; wires the rest
``arrival``        a message's arrival: routed once, staleness on arrival, the stale ``gap``
``limits``         :class:`Limits`: every bound, one frozen object built from the settings
``observer``       :class:`Observer`: what the fan-out reports; :class:`Counters`
``state``          kinds and their delivery rules, sinks, actions, per-client state
``membership``     clients and each stream's audiences (per kind, for filtered clients)
``joins``          a joining client's live messages, until its replay is done
``slicing``        big audiences in slices, one message per stream in flight, overload
``writer``         the one write rule (the hot loop, and single writes)
``lag``            lagging clients: conflation, expiry, events kept, ``max_lag``
``recovery``       a lagging client flushed once caught up, or closed
``caps``           rate-capped clients: the newest result held until it is due
``probes``         lag measured end to end: lag probes
``video``          video by group of pictures: chains, the current GOP, joins, lag
=================  ==============================================================
"""

from gateway.policy.facade import Policy
from gateway.policy.limits import Limits
from gateway.policy.observer import Counters, Observer
from gateway.policy.state import (
    DELIVERY,
    EVENT,
    OVER,
    SKIP,
    WRITTEN,
    Action,
    Close,
    Delivery,
    Framer,
    PingFramer,
    Sink,
    Step,
    Timer,
    Wait,
)

__all__ = [
    "DELIVERY",
    "EVENT",
    "OVER",
    "SKIP",
    "WRITTEN",
    "Action",
    "Close",
    "Counters",
    "Delivery",
    "Framer",
    "Limits",
    "Observer",
    "PingFramer",
    "Policy",
    "Sink",
    "Step",
    "Timer",
    "Wait",
]
