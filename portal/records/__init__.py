"""Record versions (học bạ số): immutable snapshots, their XML/JSON forms, the PDF, bulk generation."""
