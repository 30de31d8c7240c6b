//! Sluice storage.
