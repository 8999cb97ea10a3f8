"""The framecast producer: capture -> predict -> publish (see ``docs/producer.md``).

Run it with ``python -m producer`` or ``framecast producer``; embed it with
:func:`producer.service.run`.
"""
