//! Sluice broker.
