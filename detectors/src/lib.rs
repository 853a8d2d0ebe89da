//! vidar-detectors (under construction).
