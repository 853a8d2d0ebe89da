//! vidar-tracker (under construction).
