"""The ``elasticsearch-source`` connector: read Winlogbeat / Elastic Agent indices that already exist.

``connector.py`` is the entry point, ``query.py`` the PIT + ``search_after`` reader and its cursor,
``mapping.py`` the document -> event mapping, ``client.py`` the connection (auth, TLS) built from options.
"""
