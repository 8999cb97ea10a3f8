"""One model for many cameras: the shared inference worker and the producers' side of it.

| module | job |
|---|---|
| :mod:`~producer.inference.protocol` | frames in shared memory, a small control channel over a Unix socket |
| :mod:`~producer.inference.batcher` | when a batch goes, and with which frames (sans I/O) |
| :mod:`~producer.inference.server` | the worker: connections, batches, results back to each camera |
| :mod:`~producer.inference.client` | a producer's side: :class:`SharedWorkers`, reconnecting, state |
| :mod:`~producer.inference.main` | ``framecast inference``: settings, model, socket, signals |
"""
