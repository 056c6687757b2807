"""Everything after evaluation: the alert record, episodes, cases, pseudonymisation and the sinks.

Kept together (STYLE: one package per stage of the data flow) so the evaluator only hands alerts over and
never knows how they are grouped, scored or delivered.
"""
