//! The scheduler (SPEC A2–A4): comes with the next commit.
