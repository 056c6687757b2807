"""A synthetic hospital for ``bench/detection_quality.py``: staff, patients, encounters, a month of EHR
accesses and injected privacy incidents with ground truth. Deterministic for a given seed.

Modules, in data-flow order: ``names`` (surname frequencies, streets), ``population`` (departments, staff,
patients, encounters, VIPs), ``activity`` (ordinary accesses by shift), ``incidents`` (injected incidents and
their ground truth), ``output`` (FHIR AuditEvent NDJSON and the lookup CSVs), ``evaluate`` (config, the
``wardwatch run --once`` call and the scoring).
"""
