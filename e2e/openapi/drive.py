"""A short job lifecycle through the client openapi-python-client generated
from the served OpenAPI document, as it was generated: no patch, no raw
HTTP. Run by tests/hostile/generated_client.rs with the generated package
on PYTHONPATH:

    python drive.py BASE_URL KEYS_JSON

KEYS_JSON names a file of {"agent": KEY, "dispatcher": KEY, "technician":
KEY (bound to tech-py), "auditor": KEY}. Every answer is checked to be the
generated model the document names (never a plain dict); the evidence
upload's sha256 is checked against the file's. Prints one line per step and
"lifecycle ok" at the end; any failure raises.
"""

import datetime
import hashlib
import io
import json
import sys
import uuid

from dispatch_api_client import AuthenticatedClient
from dispatch_api_client.api.default import (
    accept_offer,
    attach_evidence,
    call_tool,
    check_in,
    download_evidence,
    get_job,
    list_job_events,
    list_tool_invocations,
    offer_job,
    open_job,
    record_intake,
    register_technician,
    search_board,
    start_travel,
    triage_job,
    upload_evidence,
)
from dispatch_api_client.models import (
    AcceptOffer,
    AttachEvidence,
    AuditEvent,
    CallToolTool,
    Certification,
    Channel,
    CheckIn,
    CheckInMethod,
    CommandAnswer,
    Contact,
    Door,
    EvidenceInfo,
    EvidenceKind,
    EvidenceRef,
    EvidenceUpload,
    IfmOrder,
    IncidentType,
    JobEvents,
    JobState,
    JobView,
    OfferJob,
    OpenJob,
    RecordIntake,
    RecordIntakeFields,
    RegisterTechnician,
    Shift,
    Site,
    StartTravel,
    TechnicianAnswer,
    ToolAnswer,
    ToolEnvelope,
    ToolEnvelopeArguments,
    ToolInvocation,
    ToolInvocationPage,
    ToolOutcome,
    TriageJob,
    Visit,
)
from dispatch_api_client.types import File, UNSET

RUN = uuid.uuid4().hex[:8]


def key(step: str) -> str:
    """A fresh idempotency key for one step of this run."""
    return f"py-{RUN}-{step}"


def expect(answer, model, step: str):
    """The parsed answer, checked to be `model` (a Problem or None fails)."""
    parsed = answer.parsed
    if not isinstance(parsed, model):
        raise AssertionError(
            f"{step}: HTTP {answer.status_code}, wanted a {model.__name__}, "
            f"got {type(parsed).__name__}: {answer.content[:500]!r}"
        )
    print(f"{step}: {answer.status_code} {model.__name__}", flush=True)
    return parsed


def main() -> None:
    base, keys_file = sys.argv[1], sys.argv[2]
    with open(keys_file, encoding="utf-8") as f:
        keys = json.load(f)

    def client(role: str) -> AuthenticatedClient:
        return AuthenticatedClient(base_url=base, token=keys[role], raise_on_unexpected_status=True)

    agent, dispatcher, tech, auditor = (client(r) for r in ("agent", "dispatcher", "technician", "auditor"))

    answer = register_technician.sync_detailed(
        client=dispatcher,
        idempotency_key=key("tech"),
        body=RegisterTechnician(
            technician_id="tech-py",
            name="Technician Py",
            skills=["automatic_doors"],
            certifications=[Certification(name="AAADM", expires_on=datetime.date(2099, 6, 30))],
            territory="north",
            shift=Shift.AVAILABLE,
            labor_rate_cents=9000,
        ),
    )
    expect(answer, TechnicianAnswer, "register_technician")

    answer = open_job.sync_detailed(
        client=agent,
        idempotency_key=key("open"),
        body=OpenJob(
            incident_type=IncidentType.DOOR_STUCK_OPEN,
            channel=Channel.IFM,
            client_id="retail-co",
            site=Site(id=f"site-{RUN}", name="Retail Store 12", address="12 Market St"),
            contact=Contact(name="Sam Store", phone="+1-555-0100"),
            door=Door(id="entrance-1", location="Main entrance"),
            description="Automatic sliding door stuck open after hours",
            ifm=IfmOrder(work_order_number=f"WO-{RUN}", nte_cents=50000),
        ),
    )
    opened = expect(answer, CommandAnswer, "open_job")
    assert answer.status_code == 201, answer.status_code
    job_id = opened.job_id
    assert opened.state == JobState.INTAKE, opened.state

    intake = RecordIntakeFields.from_dict(
        {
            "access_hours": "24/7 via security desk",
            "anyone_hurt_or_trapped": False,
            "opening_can_be_secured": False,
            "after_hours": True,
            "operator_make_model": "Stanley Dura-Glide",
            "stuck_position": "fully_open",
            "mode_switch_position": "automatic",
            "power_cycled": True,
            "obstruction_visible": False,
        }
    )
    steps = [
        (record_intake, agent, RecordIntake(fields=intake), JobState.INTAKE),
        (triage_job, agent, TriageJob(), JobState.TRIAGED),
    ]
    for module, who, body, state in steps:
        name = module.__name__.rsplit(".", 1)[-1]
        done = expect(
            module.sync_detailed(job_id, client=who, idempotency_key=key(name), body=body),
            CommandAnswer,
            name,
        )
        assert done.state == state, (name, done.state)

    # The board's `state` is a list of JobState: the generated client repeats
    # the parameter, which the service reads as one filter.
    board = search_board.sync_detailed(client=dispatcher, state=[JobState.TRIAGED, JobState.OFFERED])
    assert board.status_code == 200, (board.status_code, board.content[:300])

    expect(
        offer_job.sync_detailed(
            job_id, client=agent, idempotency_key=key("offer"), body=OfferJob(technician_id="tech-py")
        ),
        CommandAnswer,
        "offer_job",
    )
    eta = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=1)
    expect(
        accept_offer.sync_detailed(job_id, client=tech, idempotency_key=key("accept"), body=AcceptOffer(eta=eta)),
        CommandAnswer,
        "accept_offer",
    )
    expect(
        start_travel.sync_detailed(job_id, client=tech, idempotency_key=key("travel"), body=StartTravel()),
        CommandAnswer,
        "start_travel",
    )
    arrived = expect(
        check_in.sync_detailed(
            job_id, client=tech, idempotency_key=key("check-in"), body=CheckIn(method=CheckInMethod.APP)
        ),
        CommandAnswer,
        "check_in",
    )
    assert arrived.state == JobState.ON_SITE, arrived.state

    # Evidence: bytes that are not text (a JPEG's start and every byte
    # value), as the document's multipart body; the answer's sha256 is the
    # file's, and the download gives the bytes back.
    photo = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(range(256)) + RUN.encode()
    wanted = hashlib.sha256(photo).hexdigest()
    stored = expect(
        upload_evidence.sync_detailed(
            client=tech,
            idempotency_key=key("upload"),
            body=EvidenceUpload(file=File(payload=io.BytesIO(photo), file_name="door.jpg", mime_type="image/jpeg")),
        ),
        EvidenceInfo,
        "upload_evidence",
    )
    assert stored.sha256 == wanted, (stored.sha256, wanted)
    assert stored.size == len(photo), (stored.size, len(photo))
    assert stored.content_type == "image/jpeg", stored.content_type
    back = download_evidence.sync_detailed(stored.sha256, client=tech)
    assert isinstance(back.parsed, File), type(back.parsed)
    assert back.parsed.payload.read() == photo, "the download is not the upload"

    expect(
        attach_evidence.sync_detailed(
            job_id,
            client=tech,
            idempotency_key=key("attach"),
            body=AttachEvidence(kind=EvidenceKind.PHOTO_BEFORE, sha256=stored.sha256, note="door as found"),
        ),
        CommandAnswer,
        "attach_evidence",
    )

    # The job, its events and the tool invocations, as typed models.
    job = expect(get_job.sync_detailed(job_id, client=dispatcher), JobView, "get_job")
    assert job.state == JobState.ON_SITE, job.state
    assert job.incident_type == "door_stuck_open", job.incident_type
    assert job.visits and all(isinstance(v, Visit) for v in job.visits), job.visits
    assert job.visits[-1].technician_id == "tech-py"
    assert [type(e) for e in job.evidence] == [EvidenceRef], job.evidence
    assert job.evidence[0].sha256 == wanted
    assert job.invoice.total_cents >= 0 and isinstance(job.invoice.lines, list)

    events = expect(list_job_events.sync_detailed(job_id, client=auditor), JobEvents, "list_job_events")
    assert events.job_id == job_id
    assert events.events and all(isinstance(e, AuditEvent) for e in events.events), events.events
    types = [e.event_type for e in events.events]
    assert types[0] == "JobOpened" and "EvidenceAttached" in types, types
    assert [e.sequence for e in events.events] == list(range(1, len(types) + 1))

    # A tool call, then its retry: the stored answer, `replayed` a boolean.
    envelope = ToolEnvelope(
        idempotency_key=key("tool-note"),
        arguments=ToolEnvelopeArguments.from_dict({"job_id": job_id, "text": "Customer asks to call first"}),
    )
    first = expect(call_tool.sync_detailed(CallToolTool.ADD_NOTE, client=agent, body=envelope), ToolAnswer, "call_tool")
    assert first.outcome == ToolOutcome.OK, first.outcome
    assert first.replayed is UNSET, first.replayed
    again = expect(call_tool.sync_detailed(CallToolTool.ADD_NOTE, client=agent, body=envelope), ToolAnswer, "call_tool (retry)")
    assert again.replayed is True, again.replayed
    assert again.outcome == ToolOutcome.OK, again.outcome

    log = expect(
        list_tool_invocations.sync_detailed(client=auditor, job_id=job_id), ToolInvocationPage, "list_tool_invocations"
    )
    records = log.invocations
    assert records and all(isinstance(r, ToolInvocation) for r in records), records
    tools = [r.tool for r in records]
    for wanted_tool in ("open_job", "check_in", "attach_evidence", "add_note"):
        assert wanted_tool in tools, (wanted_tool, tools)
    print(f"lifecycle ok: job {job_id}, {len(types)} events, {len(records)} invocations", flush=True)


if __name__ == "__main__":
    main()
