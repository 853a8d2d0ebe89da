//! Vidar ingest (under construction).
