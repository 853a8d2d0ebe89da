//! vidar-scheduler (under construction).
