//! vidar-models (under construction).
