//! Alignment verdicts (in progress).
