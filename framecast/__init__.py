"""framecast: live camera predictions fanned out to thousands of WebSocket clients.

The ``framecast`` package holds the light code every part shares, and imports neither OpenCV
nor numpy: the wire format (:mod:`framecast.wire`), settings, errors, retry delays and logs.
Two packages sit inside it, each with a job of its own: :mod:`framecast.client`, the Python
client (and ``framecast watch``), and :mod:`framecast.local`, the local operations tool
(``framecast up``: the whole topology on one machine).
"""

__version__ = "0.1.0"
