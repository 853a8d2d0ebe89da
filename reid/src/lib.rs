//! vidar-reid (under construction).
