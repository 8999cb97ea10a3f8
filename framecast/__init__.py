"""framecast: live camera predictions fanned out to thousands of WebSocket clients.

The ``framecast`` package holds the light code every part shares: the wire
format, settings, the local topology runner and the Python client. It imports
neither OpenCV nor numpy.
"""

__version__ = "0.1.0"
