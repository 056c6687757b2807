"""Active Directory / LDAP directory: who a login is, across Windows, VPN and EHR.

The pieces, in data-flow order: :mod:`.ldap_sync` (ldap3 paged search, LDAPS/StartTLS, incremental by
``uSNChanged``/``whenChanged``) or :mod:`.ldif_file` (an ``ldifde``/``ldapsearch -LLL`` export) produce raw
entries; :mod:`.attributes` decodes AD attribute values; :mod:`.model` turns an entry into a
:class:`~.model.DirectoryUser`; :mod:`.snapshot` keeps the whole directory as one private file the
enrichment reads; :mod:`.connector` is the ``ldap-directory`` connector that emits ``directory.user`` events.
"""
