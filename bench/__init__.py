"""framecast's benchmark harness: ``python -m bench`` (or ``framecast bench``).

Modules, one job each:

* ``__main__``: the command; runs the parts, writes ``bench/results/*.json`` and the report.
* ``single``: part 1, fan-out strategies inside one gateway process (``server`` + ``client``).
* ``topology``: part 2, Redis -> gateways -> nginx -> clients (``framecast.local.up``).
* ``predictors``: part 3, the producer's predictors.
* ``filters``: part 7, subscription filters (events-only, capped) beside full subscribers on a real
  gateway; ``report_filters`` draws its section and plot.
* ``server``: the bench gateway, its fan-out strategy chosen by a flag (``strategies``).
* ``client``: the load client (raw sockets, one epoll per process); ``load`` runs several.
* ``probe``: the 1 ms event-loop lag probe; ``machine``: /proc readings and versions;
  ``stats``: summaries; ``payload``: the ~300 B result; ``procs``: child processes;
  ``report``: ``docs/performance.md`` and its plots.
"""
