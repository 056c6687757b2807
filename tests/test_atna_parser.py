"""ATNA XML (DICOM PS3.15 A.5 and RFC 3881) -> flat events: real IHE samples, safety, fuzzing."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.atna_parser import AtnaParseError, parse_atna, strip_identifier

ATNA_DIR = Path(__file__).resolve().parent.parent.parent / "shared" / "datasets" / "atna-ipf"


def sample(name: str) -> bytes:
    path = ATNA_DIR / name
    if not path.exists():
        pytest.skip(f"sample data not present: {path}")
    return path.read_bytes()


def all_samples() -> list[Path]:
    return sorted(ATNA_DIR.glob("*.xml")) if ATNA_DIR.is_dir() else []


@pytest.mark.skipif(not all_samples(), reason="../shared/datasets/atna-ipf not present")
@pytest.mark.parametrize("path", all_samples(), ids=lambda p: p.name)
def test_every_ipf_sample_parses(path: Path) -> None:
    event = parse_atna(path.read_bytes())
    assert event["event.dataset"] == "ehr.audit" and event["ehr.atna.format"] == "dicom"
    assert event["@timestamp"].endswith("Z") and event["event.code"]
    assert event["event.outcome"] == "success" and event["ehr.action"] in "CRUDE"
    assert event["observer.name"]
    assert event["event.original"] == path.read_text("utf-8")


def test_pdq_query_is_decoded() -> None:
    event = parse_atna(sample("pdq.xml"))
    assert event["event.code"] == "110112" and event["event.action"] == "patient demographics query"
    assert event["ehr.query"].startswith("MSH|^~\\&|MESA_PD_CONSUMER") and "QPD|IHE PDQ Query" in event["ehr.query"]
    assert event["user.id"] == "MESA_DEPARTMENT|MESA_PD_CONSUMER" and event["source.ip"] == "127.0.0.1"
    assert event["ehr.patient.ids"] == ["24", "78246", "27", "78106"]
    assert event["ehr.atna.event_type_codes"] == ["ITI-21"]


def test_pdqm_query_names_the_resource_type() -> None:
    event = parse_atna(sample("pdqm.xml"))
    assert event["ehr.query"] == "http://wdf-lap-1237.icw.int:8087/app-gateway/fhir/Patient?family=xpid"
    assert event["ehr.resource.type"] == "Patient" and event["source.ip"] == "10.205.114.56"


def test_pix_feed_has_patient() -> None:
    event = parse_atna(sample("pixfeed.xml"))
    assert event["event.code"] == "110110" and event["ehr.action"] == "C"
    assert event["ehr.patient.id"] == "7627199"
    assert event["ehr.patient.identifier"] == "7627199^^^HZLN&2.16.840.1.113883.3.37.4.1.1.2.411.1&ISO"
    assert event["event.type"] == ["creation"] and event["ehr.resource.type"] == "Patient"


def test_alternative_user_id_becomes_user_name_and_hostname_is_source_domain() -> None:
    event = parse_atna(sample("xpidsource.xml"))
    assert event["user.id"] == "BLA|IHE_SYS_IHERED" and event["user.name"] == "14756"
    assert event["source.domain"] == "localhost" and "source.ip" not in event


def test_application_start_without_patient() -> None:
    event = parse_atna(sample("start.xml"))
    assert event["event.code"] == "110100" and event["event.action"] == "application start"
    assert "ehr.patient.id" not in event and event["observer.name"] == "app-connect"


RFC3881 = b"""<?xml version="1.0" encoding="UTF-8"?>
<AuditMessage xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
  <EventIdentification EventActionCode="R" EventDateTime="2024-05-01T10:00:00.1234567+02:00"
                       EventOutcomeIndicator="4">
    <EventID code="110110" codeSystemName="DCM" displayName="Patient Record"/>
  </EventIdentification>
  <ActiveParticipant UserID="jdoe" UserName="Jane Doe" UserIsRequestor="true"
                     NetworkAccessPointID="10.1.2.3" NetworkAccessPointTypeCode="2">
    <RoleIDCode code="46255001" displayName="Pharmacist"/>
  </ActiveParticipant>
  <AuditSourceIdentification><AuditSourceID>ehr-01</AuditSourceID></AuditSourceIdentification>
  <ParticipantObjectIdentification ParticipantObjectID="urn:oid:1.2.3|P-77" ParticipantObjectTypeCode="1"
                                   ParticipantObjectTypeCodeRole="1"/>
  <ParticipantObjectIdentification ParticipantObjectID="rep-1" ParticipantObjectTypeCode="2"
                                   ParticipantObjectTypeCodeRole="3"/>
</AuditMessage>"""


def test_rfc3881_dialect() -> None:
    event = parse_atna(RFC3881)
    assert event["ehr.atna.format"] == "rfc3881"
    assert event["@timestamp"] == "2024-05-01T08:00:00.123Z"
    assert event["event.action"] == "patient record" and event["event.outcome"] == "failure"
    assert event["ehr.outcome_code"] == "4"
    assert (event["user.id"], event["user.name"], event["user.full_name"]) == ("jdoe", "jdoe", "Jane Doe")
    assert event["user.roles"] == ["46255001"] and event["source.ip"] == "10.1.2.3"
    assert event["observer.name"] == "ehr-01"
    assert event["ehr.patient.id"] == "P-77" and event["ehr.resource.type"] == "Report"


def test_break_the_glass_by_purpose_and_by_event() -> None:
    btg_purpose = b"""<AuditMessage><EventIdentification EventActionCode="R" EventDateTime="2024-01-01T00:00:00Z"
        EventOutcomeIndicator="0"><EventID csd-code="110110" originalText="Patient Record"/>
        <PurposeOfUse csd-code="BTG" codeSystemName="v3-ActReason"/></EventIdentification></AuditMessage>"""
    event = parse_atna(btg_purpose)
    assert event["ehr.break_the_glass"] is True and event["ehr.purpose_of_use"] == ["BTG"]
    override = btg_purpose.replace(b'csd-code="BTG"', b'csd-code="TREAT"').replace(
        b"</EventID", b"</EventID").replace(b'originalText="Patient Record"/>',
                                            b'originalText="Patient Record"/><EventTypeCode csd-code="110127" '
                                            b'originalText="Emergency Override Started"/>')
    event = parse_atna(override)
    assert event["ehr.break_the_glass"] is True and event["event.action"] == "emergency override started"
    assert parse_atna(sample("pdq.xml"))["ehr.break_the_glass"] is False


BOMB = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>
<AuditMessage>&lol3;</AuditMessage>"""
XXE = b"""<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]><AuditMessage>&x;</AuditMessage>"""


@pytest.mark.parametrize("payload,needle", [
    (BOMB, "DOCTYPE"), (XXE, "DOCTYPE"), (b"<AuditMessage>", "well-formed"), (b"not xml", "well-formed"),
    (b"<Other/>", "root element"), (b"<AuditMessage/>", "EventIdentification"),
    (b'<AuditMessage><EventIdentification EventDateTime="x"><EventID csd-code="1"/></EventIdentification>'
     b"</AuditMessage>", "ISO 8601"),
])
def test_bad_input_gives_clear_errors(payload: bytes, needle: str) -> None:
    with pytest.raises(AtnaParseError, match=needle):
        parse_atna(payload)


def test_size_limit_is_checked_before_parsing() -> None:
    with pytest.raises(AtnaParseError, match="exceeds"):
        parse_atna(b"<AuditMessage>" + b" " * 2000 + b"</AuditMessage>", max_bytes=1000)


def test_strip_identifier() -> None:
    assert strip_identifier("24^^^MPI&1.2&ISO^PI") == "24"
    assert strip_identifier("urn:oid:1.2|X-1") == "X-1"
    assert strip_identifier(" plain ") == "plain"


# --- fuzzing ---------------------------------------------------------------------------------------------
@settings(max_examples=300, deadline=None)
@given(st.one_of(st.binary(max_size=300), st.text(max_size=300)))
def test_parser_is_total_on_arbitrary_input(payload: bytes | str) -> None:
    try:
        event = parse_atna(payload)
    except AtnaParseError:
        return
    assert event["event.dataset"] == "ehr.audit"


attr = st.text(alphabet=st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), max_size=20)


@settings(max_examples=300, deadline=None)
@given(ts=attr, outcome=attr, action=attr, code=attr, requestor=attr, nap=attr, pid=attr, role=attr,
       query=st.one_of(attr, st.binary(max_size=40).map(lambda b: base64.b64encode(b).decode())))
def test_parser_is_total_on_structured_audit_messages(ts: str, outcome: str, action: str, code: str,
                                                      requestor: str, nap: str, pid: str, role: str,
                                                      query: str) -> None:
    from xml.sax.saxutils import escape, quoteattr

    xml = (f"<AuditMessage><EventIdentification EventActionCode={quoteattr(action)} "
           f"EventDateTime={quoteattr(ts)} EventOutcomeIndicator={quoteattr(outcome)}>"
           f"<EventID csd-code={quoteattr(code)}/></EventIdentification>"
           f"<ActiveParticipant UserID={quoteattr(requestor)} UserIsRequestor=\"true\" "
           f"NetworkAccessPointID={quoteattr(nap)} NetworkAccessPointTypeCode=\"2\"/>"
           f"<ParticipantObjectIdentification ParticipantObjectID={quoteattr(pid)} "
           f"ParticipantObjectTypeCodeRole={quoteattr(role)}><ParticipantObjectQuery>{escape(query)}"
           f"</ParticipantObjectQuery></ParticipantObjectIdentification></AuditMessage>")
    try:
        event = parse_atna(xml)
    except AtnaParseError:
        return
    assert event["event.code"] == code and event["@timestamp"].endswith("Z")
