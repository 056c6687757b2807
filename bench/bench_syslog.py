"""Throughput of the atna-syslog path: TCP octet-counting client -> listener -> fsync'd spool -> read()
(RFC 5424 parse + ATNA XML parse + mapping) -> events.

One client thread sends N ATNA messages (~1.2 KB XML each, distinct patients) over loopback; the engine
side loop calls ``read()`` until all N events came out. Reported: spooled messages/s (receive + fsync) and
end-to-end events/s (first byte sent to last event parsed).

    .venv/bin/python bench/bench_syslog.py [--messages 50000] [--batch 5000] [--no-fsync]
"""

from __future__ import annotations

import argparse
import logging
import socket
import tempfile
import threading
import time

from connectors.atna_syslog import AtnaSyslogConnector


def message(n: int) -> bytes:
    xml = (f'<?xml version="1.0" encoding="UTF-8"?><AuditMessage><EventIdentification EventActionCode="R" '
           f'EventDateTime="2024-03-01T12:{(n // 60) % 60:02d}:{n % 60:02d}.{n % 1000:03d}Z" '
           f'EventOutcomeIndicator="0"><EventID csd-code="110110" codeSystemName="DCM" originalText="Patient Record"/>'
           f'<EventTypeCode csd-code="ITI-8" codeSystemName="IHE Transactions" originalText="Patient Identity Feed"/>'
           f'</EventIdentification><ActiveParticipant UserID="user{n % 500}" AlternativeUserID="{n % 500}" '
           f'UserIsRequestor="true" NetworkAccessPointID="10.1.{n % 250}.{n % 200}" NetworkAccessPointTypeCode="2">'
           f'<RoleIDCode csd-code="110153" codeSystemName="DCM" originalText="Source Role ID"/></ActiveParticipant>'
           f'<ActiveParticipant UserID="root|dest" UserIsRequestor="false" NetworkAccessPointID="127.0.0.1" '
           f'NetworkAccessPointTypeCode="2"><RoleIDCode csd-code="110152" codeSystemName="DCM" '
           f'originalText="Destination Role ID"/></ActiveParticipant><AuditSourceIdentification '
           f'AuditEnterpriseSiteID="HOSP" AuditSourceID="EHR"><AuditSourceTypeCode csd-code="9"/>'
           f'</AuditSourceIdentification><ParticipantObjectIdentification ParticipantObjectID="{n}^^^HOSP&amp;'
           f'1.2.3.4&amp;ISO^PI" ParticipantObjectTypeCode="1" ParticipantObjectTypeCodeRole="1">'
           f'<ParticipantObjectIDTypeCode csd-code="2" codeSystemName="RFC-3881" originalText="Patient Number"/>'
           f'</ParticipantObjectIdentification></AuditMessage>')
    msg = b"<110>1 2024-03-01T12:00:00.000Z ehr-host ehr 4711 IHE+RFC-3881 - \xef\xbb\xbf" + xml.encode()
    return b"%d %s" % (len(msg), msg)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=50000)
    parser.add_argument("--batch", type=int, default=5000, help="max_events per read()")
    parser.add_argument("--no-fsync", action="store_true")
    args = parser.parse_args()
    logging.disable(logging.INFO)
    frames = [message(n) for n in range(args.messages)]
    with tempfile.TemporaryDirectory() as spool_dir:
        conn = AtnaSyslogConnector("bench", {"spool_dir": spool_dir, "listen": [{"protocol": "tcp", "port": 0}],
                                             "fsync": not args.no_fsync})
        conn.start()
        port = conn.addresses[0][2]

        def client() -> None:
            with socket.create_connection(("127.0.0.1", port)) as sock:
                for i in range(0, len(frames), 200):
                    sock.sendall(b"".join(frames[i : i + 200]))

        start = time.perf_counter()
        sender = threading.Thread(target=client)
        sender.start()
        cursor, events, dead = None, 0, 0
        while events + dead < args.messages:
            batch = conn.read(cursor, args.batch)
            events += len(batch.events)
            dead += len(batch.dead_letters)
            cursor = batch.cursor
            conn.acknowledge(cursor)
            if batch.exhausted and not batch.events:
                time.sleep(0.001)
        elapsed = time.perf_counter() - start
        sender.join()
        spooled = conn.spool.records_written
        conn.close()
    print(f"messages={args.messages} events={events} dead_letters={dead} spooled={spooled} "
          f"fsync={not args.no_fsync} bytes/msg={len(frames[0])}")
    print(f"end-to-end: {elapsed:.2f} s, {events / elapsed:,.0f} events/s (TCP -> fsync'd spool -> parsed events)")


if __name__ == "__main__":
    main()
