-- Every upload of evidence bytes, one row per (bytes, uploader, media type):
-- the same bytes uploaded again with another Content-Type, or by another key,
-- keep their own type and uploader (issue 16). `evidence_objects` still holds
-- one row per stored object (its first upload); `attach_evidence` records on
-- its event the attaching caller's own latest upload of the bytes, else the
-- latest by anyone.
CREATE TABLE evidence_uploads (
    sha256       text        NOT NULL REFERENCES evidence_objects (sha256),
    content_type text        NOT NULL CHECK (length(content_type) BETWEEN 3 AND 127),
    uploaded_by  text        NOT NULL,
    uploaded_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (sha256, uploaded_by, content_type)
);
