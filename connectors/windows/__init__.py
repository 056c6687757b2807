"""Windows and Active Directory sources: one record model, several transports.

``record.py`` is the shared contract: every Windows transport (``evtx`` files, Winlogbeat / Elastic Agent /
NXLog JSON, documents already in Elasticsearch) turns what it reads into a :class:`WindowsRecord` and calls
:func:`normalise_record`, so a 4624 looks the same to a rule whichever way it arrived.
"""
